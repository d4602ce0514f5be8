"""Bring your own model and trainer: audit a classifier that your own code trained.

Two functions of yours, named by import path ("package.module:function"):

- a **loader**, `load_model(path)` (or `load_model()` when no model path is given), returning your model:
  any object with
    - `labels`: the class names, in the order of the logits' columns;
    - `logits(texts: list[str])`: an (N, C) array or tensor, one row per text (black-box: enough for every
      membership-inference attack);
    - optionally `privacy`: a dict with at least `epsilon` and `delta` for a DP-trained model (e.g. read from
      Opacus's accountant), shown next to the empirical bound; `noise_multiplier`, `sample_rate`, `steps`,
      `max_grad_norm` and `accountant` when known;
    - optionally, for white-box canary extraction (ModIvA), all three of `encode(texts) -> (input_ids,
      attention_mask)` (two (N, T) tensors), `input_embeddings() -> (V, D)` (the token embedding matrix) and
      `forward_embeds(embeds, attention_mask) -> (N, C)` (the logits from input embeddings, in eval mode),
      with `special_token_ids` (never guessed as a secret) and `unknown_token_id` where the model has them;
      without them ModIvA is reported as not applicable;
- a **trainer**, `train(texts: list[str], labels: list[str], seed: int)`, returning a model of the same
  kind, trained exactly as you trained the target: privaudit calls it for every shadow model, and for the
  canary audit's models (`privaudit canary --trainer`: the data with the canaries planted, and reference
  models without them).

Configured in privaudit.toml (`[tool.privaudit.target] loader = "mypkg.audit:load_model"`, `trainer =
"mypkg.audit:train"`), on the command line (`privaudit mia --loader ... --trainer ...`) or passed to
`privaudit.api.mia`. Modules are found on the Python path and in the folder of the config file (or the
current folder). An exception in your code is reported as yours: exit 2 with your traceback, never taken
for a privaudit bug or a damaged file. Shadow models of your trainer are cached by the trainer's import path
and the content of its source file: editing the file retrains them.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .accounting import PrivacyGuarantee
from .classifier import label_indices
from .data import TextDataset
from .errors import PrivauditError


class UserCodeError(PrivauditError):
    """An exception raised by the user's own loader, trainer or model (its traceback in the message)."""


@dataclass(frozen=True)
class CodeRef:
    """A function of the user's, "package.module:function", importable from `folder` or the Python path."""

    spec: str
    folder: str | None = None

    def __post_init__(self) -> None:
        module, _, name = self.spec.partition(":")
        if not module or not name:
            raise PrivauditError(f"{self.spec!r}: give a function as package.module:function")

    def function(self) -> Callable[..., Any]:
        module_name, _, name = self.spec.partition(":")
        if self.folder is not None and self.folder not in sys.path:
            # Worker processes started after this (spawn) inherit the path, so they find the module too.
            sys.path.insert(0, self.folder)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                raise PrivauditError(
                    f"{self.spec}: no module {exc.name!r} on the Python path or in {self.folder or Path.cwd()}"
                ) from None
            raise UserCodeError(f"importing {module_name} (your code) failed:\n{_user_traceback()}") from None
        except Exception:
            raise UserCodeError(f"importing {module_name} (your code) failed:\n{_user_traceback()}") from None
        function = getattr(module, name, None)
        if not callable(function):
            raise PrivauditError(f"{self.spec}: module {module_name} has no function {name!r}")
        return function

    def identity(self) -> str:
        """The import path and a digest of the module's source: what shadow models of it are cached under."""
        function = self.function()
        try:
            source = Path(inspect.getsourcefile(function) or "").read_bytes()
        except (OSError, TypeError):
            source = b""
        return f"{self.spec}@{hashlib.sha256(source).hexdigest()[:16]}"

    def call(self, *args: Any) -> Any:
        return run_user_code(f"your function {self.spec}", self.function(), *args)


def run_user_code(what: str, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, with any exception reported as the user's: exit 2 and their traceback."""
    try:
        return function(*args)
    except PrivauditError:
        raise
    except Exception:
        raise UserCodeError(f"{what} raised an exception:\n{_user_traceback()}") from None


def _user_traceback() -> str:
    """The current exception's traceback without privaudit's own frames (those say nothing to the user)."""
    kind, value, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if "/privaudit/usermodel.py" not in f.filename.replace("\\", "/")]
    return "".join(traceback.format_list(frames) + traceback.format_exception_only(kind, value)).rstrip()


class UserModel:
    """A user's model behind what privaudit's attacks need: `labels`, `label_ids`, `logits` (a CPU float
    tensor, checked for shape) and `tokenizer` (None: the vocabulary attack has nothing to read)."""

    tokenizer = None

    def __init__(self, model: Any, origin: str):
        self.model, self.origin = model, origin
        for name in ("labels", "logits"):
            if not hasattr(model, name):
                raise PrivauditError(
                    f"{origin} returned a {type(model).__name__} without `{name}` (a model needs `labels`, the class "
                    "names in the logits' column order, and `logits(texts)`)"
                )
        labels = [str(label) for label in model.labels]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise PrivauditError(f"{origin}: the model's `labels` must be two or more distinct class names")
        self.labels = labels

    def label_ids(self, labels: list[str]) -> torch.Tensor:
        return torch.tensor(label_indices(self.labels, labels), dtype=torch.long)

    def logits(self, texts: list[str], batch_size: int = 4096) -> torch.Tensor:
        """Logits of `texts`, asked of the model `batch_size` texts at a time (a canary enumeration asks for
        up to 10^6)."""
        if not texts:
            return torch.zeros(0, len(self.labels))
        return torch.cat([self._logits(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])

    def _logits(self, texts: list[str]) -> torch.Tensor:
        out = run_user_code(f"{self.origin}'s logits", self.model.logits, list(texts))
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        array = np.asarray(out, dtype=np.float32)
        if array.shape != (len(texts), len(self.labels)):
            raise PrivauditError(
                f"{self.origin}: logits of {len(texts)} texts have shape {array.shape}, expected "
                f"({len(texts)}, {len(self.labels)}) (one column per label)"
            )
        if not np.isfinite(array).all():
            raise PrivauditError(f"{self.origin}: logits hold NaN or infinite values")
        return torch.from_numpy(array)

    def logits_in_order(self, texts: list[str], labels: list[str]) -> torch.Tensor:
        """Logits with their columns in the order of `labels` (another model's, e.g. the target's)."""
        missing = [name for name in labels if name not in self.labels]
        if missing:
            raise PrivauditError(f"{self.origin}: the model has no class {missing[0]!r} (its labels: {self.labels})")
        return self.logits(texts)[:, [self.labels.index(name) for name in labels]]

    def white_box(self) -> UserWhiteBox | None:
        """The model's white-box view for ModIvA, or None when it does not give all three methods."""
        if all(callable(getattr(self.model, name, None)) for name in WHITE_BOX_METHODS):
            return UserWhiteBox(self)
        return None

    def privacy(self) -> PrivacyGuarantee | None:
        """The guarantee the user's model reports (`privacy` dict), or None."""
        reported = getattr(self.model, "privacy", None)
        if reported is None:
            return None
        if not isinstance(reported, dict) or not {"epsilon", "delta"} <= set(reported):
            raise PrivauditError(f"{self.origin}: `privacy` must be a dict with at least `epsilon` and `delta`")
        return PrivacyGuarantee(
            epsilon=float(reported["epsilon"]),
            delta=float(reported["delta"]),
            accountant=str(reported.get("accountant", "reported by the model's trainer")),
            noise_multiplier=float(reported.get("noise_multiplier", float("nan"))),
            sample_rate=float(reported.get("sample_rate", float("nan"))),
            steps=int(reported.get("steps", 0)),
            max_grad_norm=float(reported.get("max_grad_norm", float("nan"))),
        )


WHITE_BOX_METHODS = ("encode", "input_embeddings", "forward_embeds")


@dataclass
class UserWhiteBox:
    """A user's model as `privaudit.attacks.modiva.WhiteBox`: its own methods, their output checked."""

    user: UserModel

    @property
    def labels(self) -> list[str]:
        return self.user.labels

    @property
    def special_token_ids(self) -> set[int]:
        return {int(i) for i in getattr(self.user.model, "special_token_ids", ())}

    @property
    def unknown_token_id(self) -> int | None:
        unknown = getattr(self.user.model, "unknown_token_id", None)
        return None if unknown is None else int(unknown)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = run_user_code(f"{self.user.origin}'s encode", self.user.model.encode, list(texts))
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise PrivauditError(f"{self.user.origin}: encode(texts) must return (input_ids, attention_mask) tensors")
        ids, mask = out
        if ids.dim() != 2 or ids.shape != mask.shape or len(ids) != len(texts):
            raise PrivauditError(
                f"{self.user.origin}: encode of {len(texts)} texts gave ids {tuple(ids.shape)} and mask "
                f"{tuple(mask.shape)}, expected two ({len(texts)}, T) tensors"
            )
        return ids.long(), mask

    def input_embeddings(self) -> torch.Tensor:
        table = run_user_code(f"{self.user.origin}'s input_embeddings", self.user.model.input_embeddings)
        table = getattr(table, "weight", table)  # an nn.Embedding is accepted too
        if not isinstance(table, torch.Tensor) or table.dim() != 2:
            raise PrivauditError(f"{self.user.origin}: input_embeddings() must return the (V, D) embedding matrix")
        return table

    def forward_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = run_user_code(f"{self.user.origin}'s forward_embeds", self.user.model.forward_embeds, embeds, mask)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(embeds), len(self.labels)):
            raise PrivauditError(
                f"{self.user.origin}: forward_embeds must return a ({len(embeds)}, {len(self.labels)}) logits tensor"
            )
        return logits

    def frozen(self) -> AbstractContextManager[object]:
        # The user's forward_embeds runs in eval mode itself; ModIvA differentiates only the relaxed tokens.
        return nullcontext()


def load_user_model(loader: CodeRef, path: str | Path | None) -> UserModel:
    """The target, from the user's loader: `loader(path)`, or `loader()` without a path."""
    model = loader.call(str(path)) if path is not None else loader.call()
    return UserModel(model, f"your loader {loader.spec}")


@dataclass(frozen=True)
class UserTrainer:
    """Shadow models trained by the user's own function, exactly as the target was."""

    trainer: CodeRef

    def identity(self) -> dict[str, str]:
        return {"trainer": self.trainer.identity()}

    def train(self, data: TextDataset, seed: int) -> UserModel:
        model = self.trainer.call(list(data.texts), list(data.labels), seed)
        return UserModel(model, f"your trainer {self.trainer.spec}")
