"""The model bundle: one file with everything needed to use and to audit a trained classifier.

Contents: weights, model config, tokenizer, label map, the full training recipe, the number of training
examples (public in DP-SGD's accounting: the sample rate is batch size / N), the DP accounting result,
and training metrics. Nothing that identifies a training example: the members' fingerprints and the
data file's content hash live in the audit manifest beside it (manifest.py), which stays with the data.
(Format version 1 stored them here; such files are refused.)

Integrity: a SHA-256 digest over the metadata and every tensor (name, dtype, shape, bytes) is written
with them and checked at load. A damaged file is refused as damaged, never loaded as a different model
(torch's archive reader does not check its CRCs). Version-2 files have no digest and are refused.

Format: a `torch.save` archive holding only tensors and one JSON string, so it loads with
`torch.load(weights_only=True)`: a file holding arbitrary pickled objects is refused, never executed.
Written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .accounting import PrivacyGuarantee
from .classifier import TextClassifier
from .devices import resolve_device
from .errors import PrivauditError
from .fileio import atomic_path
from .manifest import AuditManifest
from .models import ModelConfig, build_model
from .recipe import TrainingRecipe
from .tokenization import tokenizer_from_json, tokenizer_to_json

if TYPE_CHECKING:
    from .training import NondpBaseline

FORMAT = "privaudit-bundle"
FORMAT_VERSION = 3


@dataclass
class ModelBundle:
    classifier: TextClassifier
    recipe: TrainingRecipe
    training_examples: int | None
    privacy: PrivacyGuarantee | None
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    versions: dict = field(default_factory=dict)
    # Kept in memory only, never written into the model file: save it with api.save_model.
    manifest: AuditManifest | None = field(default=None, repr=False, compare=False)
    # In memory only too: a non-DP model's figures are not covered by the guarantee (--compare-nondp).
    baseline: NondpBaseline | None = field(default=None, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def metadata(self) -> dict:
        return {
            "model_config": self.classifier.config.to_dict(),
            "tokenizer": tokenizer_to_json(self.classifier.tokenizer),
            "labels": self.classifier.labels,
            "recipe": self.recipe.to_dict(),
            "training_examples": self.training_examples,
            "privacy": self.privacy.to_dict() if self.privacy else None,
            "metrics": self.metrics,
            "created": self.created,
            "versions": self.versions,
        }


def save_bundle(bundle: ModelBundle, path: str | Path, private: bool = False) -> None:
    """Written atomically; owner-only when `private` (a shadow model: as sensitive as its training data)."""
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.classifier.model.state_dict().items()}
    metadata = json.dumps(bundle.metadata())
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": metadata,
        "state_dict": state,
        "digest": content_digest(metadata, state),
    }
    with atomic_path(path, private) as tmp:
        torch.save(payload, tmp)


def _digest_matches(payload: dict) -> bool:
    metadata, state, digest = payload.get("metadata"), payload.get("state_dict"), payload.get("digest")
    if not (isinstance(metadata, str) and isinstance(state, dict) and isinstance(digest, str)):
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return False
    return hmac.compare_digest(content_digest(metadata, state), digest)


def content_digest(metadata: str, state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata and every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(metadata.encode("utf-8"))
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# Every metadata field a bundle must carry, and what it must be: checked one by one, so that a bad file
# is refused with the field named (never a KeyError or TypeError from deep inside).
_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "model_config": ((dict,), "a table"),
    "tokenizer": ((str,), "a tokenizer in JSON"),
    "labels": ((list,), "a list of label names"),
    "recipe": ((dict,), "a table"),
    "training_examples": ((int, type(None)), "a whole number or null"),
    "privacy": ((dict, type(None)), "a table or null"),
    "metrics": ((dict,), "a table"),
    "created": ((str,), "a date"),
    "versions": ((dict,), "a table"),
}


def _checked_metadata(path: Path, text: object) -> dict:
    try:
        meta = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise PrivauditError(f"{path}: the bundle's metadata is not a JSON table")
    for name, (types, what) in _FIELDS.items():
        if name not in meta:
            raise PrivauditError(f"{path}: the bundle lacks the field `{name}`")
        if not isinstance(meta[name], types) or isinstance(meta[name], bool):
            raise PrivauditError(f"{path}: bundle field `{name}` must be {what}")
    labels = meta["labels"]
    if not labels or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise PrivauditError(f"{path}: bundle field `labels` must be a non-empty list of distinct label names")
    return meta


def _field(path: Path, name: str, parse, value):
    """`parse(value)`, a bad value refused with the field named."""
    try:
        return parse(value)
    except PrivauditError as exc:
        raise PrivauditError(f"{path}: bundle field `{name}`: {exc}") from None
    except Exception as exc:  # whatever the parser raises on a bad value (tokenizers raise its own kind)
        raise PrivauditError(f"{path}: bundle field `{name}` is not valid ({type(exc).__name__}: {exc})") from None


def load_bundle(path: str | Path, device: str = "cpu") -> ModelBundle:
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
        raise PrivauditError(f"{path}: not a readable model file (corrupt, truncated, or not a torch file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):
            raise PrivauditError(f"{path}: not a readable model file (corrupt or truncated?)") from None
        raise PrivauditError(
            f"{path}: refusing to load: the file contains pickled Python objects other than tensors "
            f"(it may run code when loaded); a privaudit bundle never does"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PrivauditError(f"{path}: not a readable model file (corrupt or truncated?): {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PrivauditError(f"{path}: not a privaudit model bundle (train one with `privaudit train`)")
    if payload.get("format_version") == 1:
        raise PrivauditError(
            f"{path}: a version-1 model file, which stored its members' fingerprints (anyone holding "
            f"it could test membership); retrain it with this privaudit"
        )
    if payload.get("format_version") == 2:
        raise PrivauditError(
            f"{path}: a version-2 model file, which carries no integrity check (a damaged copy would load as a "
            f"different model); retrain it with this privaudit"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise PrivauditError(f"{path}: bundle format version {payload.get('format_version')} is not supported")
    if not _digest_matches(payload):
        raise PrivauditError(f"{path}: damaged model file (its content does not match its integrity digest)")
    meta = _checked_metadata(path, payload["metadata"])
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        model = build_model(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise PrivauditError(f"{path}: bundle field `model_config` is not a model configuration ({exc})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:  # torch lists every mismatching tensor: its first line says enough
        first = str(exc).strip().splitlines()[0]
        raise PrivauditError(f"{path}: the weights do not fit the bundle's model configuration ({first})") from None
    tokenizer = _field(path, "tokenizer", tokenizer_from_json, meta["tokenizer"])
    bundle = ModelBundle(
        classifier=TextClassifier(model.eval(), tokenizer, config, meta["labels"]),
        recipe=_field(path, "recipe", TrainingRecipe.from_dict, meta["recipe"]),
        training_examples=meta["training_examples"],
        privacy=_field(path, "privacy", PrivacyGuarantee.from_dict, meta["privacy"]) if meta["privacy"] else None,
        metrics=meta["metrics"],
        created=meta["created"],
        versions=meta["versions"],
    )
    # Not among the checks above: a bad device name is the caller's error, not a damaged file.
    bundle.classifier.model.to(resolve_device(device))
    return bundle
