"""Where a model's training data came from, recorded in the bundle so audits can load it again.

A file source keeps the path and the content hash: a moved or changed file is detected and named.
The demo source keeps the generator's size and seed, which is all it takes to rebuild it exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .data import TextDataset, file_sha256, load_dataset, require_data_file
from .demo import DEFAULT_SEED, DEFAULT_SIZE, demo_dataset
from .errors import PrivauditError


@dataclass(frozen=True)
class DataSource:
    kind: str  # "file" or "demo"
    path: str | None = None
    sha256: str | None = None
    text_col: str = "text"
    label_col: str = "label"
    demo_size: int = DEFAULT_SIZE
    demo_seed: int = DEFAULT_SEED

    def describe(self) -> str:
        if self.kind == "demo":
            return f"built-in demo data set ({self.demo_size} utterances, seed {self.demo_seed})"
        return f"{self.path} (sha256 {(self.sha256 or '')[:12]}…)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSource:
        return cls(**d)


def file_source(path: str | Path, text_col: str = "text", label_col: str = "label") -> DataSource:
    path = require_data_file(path)
    return DataSource("file", str(path.resolve()), file_sha256(path), text_col, label_col)


def demo_source(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> DataSource:
    return DataSource("demo", demo_size=size, demo_seed=seed)


def load_source(source: DataSource) -> TextDataset:
    """The data set a source describes, after checking it is still the same data."""
    if source.kind == "demo":
        return demo_dataset(source.demo_size, source.demo_seed)
    assert source.path is not None  # a file source always has one
    path = Path(source.path)
    if not path.is_file():
        raise PrivauditError(
            f"the training data recorded in the model was {path}, which no longer exists; pass it with --data"
        )
    if file_sha256(path) != source.sha256:
        raise PrivauditError(
            f"the training data file {path} has changed since the model was trained (content hash differs); "
            f"pass the original data with --data"
        )
    return load_dataset(path, source.text_col, source.label_col)
