"""Atomic writes: a crash or Ctrl-C never leaves a half-written file where a result should be."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import PrivauditError


@contextmanager
def atomic_path(path: str | Path, private: bool = False):
    """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds.

    The file gets the permissions the user's umask gives a new file (a CI artifact upload or a web
    server must read a report), or owner-only ones when `private` (the audit manifest: its key and
    fingerprints identify the training members). mkstemp alone would leave every file owner-only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o600 if private else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, private: bool = False) -> None:
    with atomic_path(path, private) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    """The process umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refuse_overwriting(outputs, inputs) -> None:
    """Refuses (exit 2) any output that would replace an input: the same path, or the same file reached
    through a link or another spelling. Checked before any work, so the input is never touched."""
    existing = [Path(i) for i in inputs if i is not None and Path(i).exists()]
    for output in outputs:
        if output is None:
            continue
        out = Path(output)
        for source in existing:
            same = os.path.samefile(out, source) if out.exists() else out.resolve() == source.resolve()
            if same:
                raise PrivauditError(
                    f"{output} is an input of this command ({source}); writing there would destroy "
                    f"it: choose another output path"
                )
