"""The audit manifest: what an audit needs to know about a model's training data, kept out of the model.

A model file that ships must not tell who was in its training set. So `privaudit train` writes two files:
the model bundle (weights, tokenizer, labels, recipe, guarantee: see bundle.py) and, beside it, this
manifest (`model.audit.json` for `model.pt`):

- the data source: the file's path and content hash (or the demo generator's seed);
- a random 256-bit key, and the keyed fingerprints HMAC-SHA256(key, example) of the training members and
  of the held-out pool, so audits find them again in the data file;
- the SHA-256 of the model file it belongs to.

The manifest identifies the members: it is as sensitive as the training data and stays with it. Without
its key, the fingerprints in reports (results.json's per-example rows, the most exposed members) cannot
be matched to any text, so a report tells no more than the attacks it shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from .data import TextDataset, file_sha256
from .errors import PrivauditError
from .fileio import write_text_atomic
from .source import DataSource

FORMAT = "privaudit-audit-manifest"
FORMAT_VERSION = 1


def new_key() -> str:
    return secrets.token_hex(32)


def keyed_fingerprints(dataset: TextDataset, key: str) -> list[str]:
    """HMAC-SHA256 of each (label, text) under `key`, 64 bits: unlinkable to the text without the key."""
    secret = bytes.fromhex(key)
    return [
        hmac.new(secret, f"{label}\x1f{text}".encode(), hashlib.sha256).hexdigest()[:16]
        for text, label in zip(dataset.texts, dataset.labels)
    ]


@dataclass
class AuditManifest:
    data_source: DataSource
    key: str
    member_fingerprints: list[str]
    heldout_fingerprints: list[str]
    model_sha256: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data_source"] = self.data_source.to_dict()
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}


def manifest_path(model: str | Path) -> Path:
    """model.pt -> model.audit.json, beside it."""
    model = Path(model)
    return model.with_name(model.stem + ".audit.json")


def save_manifest(manifest: AuditManifest, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(manifest.to_dict()), private=True)  # it names the members


def load_manifest(path: str | Path, model: str | Path | None = None) -> AuditManifest:
    """Read a manifest; with `model`, also check that it belongs to that model file."""
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(
            f"no audit manifest {path}: `privaudit train` writes it beside the model; give it with --manifest, "
            f"or name the members with --members and --nonmembers"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ValueError("not an audit manifest")
        manifest = AuditManifest(
            DataSource.from_dict(doc["data_source"]),
            doc["key"],
            list(doc["member_fingerprints"]),
            list(doc["heldout_fingerprints"]),
            doc.get("model_sha256"),
        )
        bytes.fromhex(manifest.key)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PrivauditError(f"{path}: not a readable audit manifest ({exc})") from None
    if model is not None and manifest.model_sha256 is not None and file_sha256(model) != manifest.model_sha256:
        raise PrivauditError(f"{path} belongs to another model than {model} (the model file's hash differs)")
    return manifest
