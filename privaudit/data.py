"""Labelled text data: loading CSV/TSV/JSONL files, fingerprints, and the member / held-out split.

A fingerprint is a short hash of one (text, label) example. Bundles record the fingerprints of the
training members and of the held-out pool, so audits can find the members again in the data file
without the bundle ever storing raw text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PrivauditError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class TextDataset:
    """Parallel lists of texts and string labels."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        """The distinct labels, sorted: the label map every model built on this data uses."""
        return sorted(set(self.labels))

    def subset(self, indices) -> TextDataset:
        return TextDataset([self.texts[i] for i in indices], [self.labels[i] for i in indices])

    def fingerprints(self) -> list[str]:
        return [fingerprint(t, y) for t, y in zip(self.texts, self.labels)]

    def __add__(self, other: TextDataset) -> TextDataset:
        return TextDataset(self.texts + other.texts, self.labels + other.labels)


def fingerprint(text: str, label: str) -> str:
    """64-bit hex digest of one example: enough to tell 10^9 examples apart, useless to read the text back."""
    return hashlib.sha256(f"{label}\x1f{text}".encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_data_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise PrivauditError(f"{path} is a folder: give the data file itself")
    if not path.is_file():
        raise PrivauditError(f"data file not found: {path}")
    return path


def load_dataset(path: str | Path, text_col: str = "text", label_col: str = "label") -> TextDataset:
    """Read a CSV, TSV or JSONL file of labelled texts, with clear errors for every way it can be wrong."""
    path, rows = _read_rows(path)
    texts, labels = [], []
    for line_no, row in rows:
        for column in (text_col, label_col):
            _require_column(path, row, column, "choose others with --text-col / --label-col")
        text, label = row[text_col], row[label_col]
        text = "" if text is None else str(text).strip()
        label = "" if label is None else str(label).strip()
        if not text:
            raise PrivauditError(f"{path}:{line_no}: empty text")
        if not label:
            raise PrivauditError(f"{path}:{line_no}: empty label")
        texts.append(text)
        labels.append(label)
    dataset = TextDataset(texts, labels)
    if len(dataset.label_names) < 2:
        raise PrivauditError(f"{path}: only one class ({dataset.label_names[0]!r}); a classifier needs at least two")
    return dataset


def load_column(path: str | Path, column: str) -> list[str]:
    """One more column of a data file, row for row as `load_dataset` reads the examples (e.g. a group tag
    for `privaudit sweep --group-col`); an empty cell reads as "(none)"."""
    path, rows = _read_rows(path)
    values = []
    for _, row in rows:
        _require_column(path, row, column, "choose another with --group-col")
        value = "" if row[column] is None else str(row[column]).strip()
        values.append(value or "(none)")
    return values


def _read_rows(path: str | Path) -> tuple[Path, list[tuple[int, dict]]]:
    path = require_data_file(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise PrivauditError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrivauditError(f"{path}: not valid UTF-8 text (byte {exc.start}): re-encode the file as UTF-8") from None
    if not content.strip():
        raise PrivauditError(f"{path}: the file is empty")
    rows = _read_jsonl(path, content) if path.suffix.lower() == ".jsonl" else _read_delimited(path, content)
    if not rows:
        raise PrivauditError(f"{path}: the file has a header but no examples")
    return path, rows


def _require_column(path: Path, row: dict, column: str, hint: str) -> None:
    if column not in row:
        raise PrivauditError(f"{path}: no column {column!r} (columns: {', '.join(map(str, row))}); {hint}")


def _read_delimited(path: Path, content: str) -> list[tuple[int, dict]]:
    """Rows by the csv module reading the text itself (newline=""): a quoted field keeps its line breaks,
    and only \n and \r end a record (str.splitlines also split at U+2028 and other separators)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    kind = path.suffix[1:].upper()
    # strict: a quote that is never closed is an error, not a field that swallows the rest of the file
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    rows = []
    record_start = 2  # the line the next record starts on
    try:
        for row in reader:
            extra = row.get(None) or []  # DictReader's place for fields beyond the header
            missing = [name for name, value in row.items() if name is not None and value is None]
            if extra or missing:
                # An unquoted delimiter inside a text would otherwise move the rest into the label.
                fields = len(reader.fieldnames or []) + len(extra) - len(missing)
                raise PrivauditError(
                    f"{path}:{reader.line_num}: {fields} fields where the header has {len(reader.fieldnames or [])}"
                    f" (a text holding the delimiter {delimiter!r} must be quoted)"
                )
            rows.append((reader.line_num, row))
            record_start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise PrivauditError(f"{path}:{record_start}: a quote opened in this record is never closed") from None
        raise PrivauditError(f"{path}:{reader.line_num}: malformed {kind} ({exc})") from None
    return rows


def _read_jsonl(path: Path, content: str) -> list[tuple[int, dict]]:
    rows = []
    # JSON Lines are separated by \n alone: U+2028 and its kin are valid inside a JSON string.
    for line_no, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrivauditError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PrivauditError(f"{path}:{line_no}: each line must be a JSON object")
        rows.append((line_no, row))
    return rows


def member_split(n: int, heldout_fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Random split of range(n) into training members and the held-out (non-member) pool (seed None:
    from operating-system entropy)."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise PrivauditError(f"held-out fraction must be in [0, 1), got {heldout_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_heldout = int(round(n * heldout_fraction))
    return np.sort(order[n_heldout:]), np.sort(order[:n_heldout])
