"""Atomic writes: a crash or Ctrl-C never leaves a half-written file where a result should be."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
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


# A destination with less free space than this is refused before the work: the largest outputs (a model
# file, a results.json with every per-example score) are a few MB.
MIN_FREE_BYTES = 16 * 2**20


def check_outputs(outputs, inputs) -> None:
    """Checked before any work (exit 2, naming the path), so that minutes of training never end in an
    output that cannot be written: no output may replace an input (the same path, or the same file
    reached through a link or another spelling), and every output's folder must take a new file and
    have MIN_FREE_BYTES free (a read-only or full destination)."""
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
        _check_writable(out)


def _check_writable(path: Path) -> None:
    """The nearest existing folder of `path` takes a new file (a probe, removed at once) and has room."""
    folder = path.parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".privaudit-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise PrivauditError(f"cannot write {path}: {folder} does not take new files ({exc.strerror})") from None
    if free < MIN_FREE_BYTES:
        raise PrivauditError(f"cannot write {path}: {folder} has {free / 2**20:.1f} MB free (needs 16 MB)")


def write_texts_together(files: dict[Path, str]) -> None:
    """Writes every file or none: one `atomic_path` each, all held open until every text is written, so
    the renames come only then (a full disk midway leaves the old files, or no files)."""
    path = None
    try:
        with ExitStack() as stack:
            for path, text in files.items():
                stack.enter_context(atomic_path(path)).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PrivauditError(f"could not write {path} ({exc.strerror}); nothing was written") from None
