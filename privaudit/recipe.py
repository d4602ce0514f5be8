"""Training recipes are data: a dataclass saved in every bundle, so that shadow and reference models
(and canary retraining) are trained exactly like the target."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .errors import PrivauditError

# Learning rates that train each architecture well on intent data in the default number of epochs.
DEFAULT_LR = {"cnn": 1e-3, "bert-tiny": 1e-3, "hf": 5e-5}
DEFAULT_VOCAB = {"cnn": 30000, "bert-tiny": 8000}
OPTIMIZERS = ("adam", "sgd")


@dataclass
class DPSettings:
    """DP-SGD parameters. noise_multiplier is the one actually used (calibrated if target_epsilon given)."""

    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None  # None: chosen from the number of training examples
    accountant: str = "pld"


@dataclass
class TrainingRecipe:
    arch: str = "cnn"  # "cnn", "bert-tiny" or "hf:PATH"
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # None: the architecture's default
    optimizer: str = "adam"
    weight_decay: float = 0.0
    dropout: float = 0.1
    max_len: int = 64
    vocab_size: int | None = None  # None: the architecture's default
    seed: int = 0
    heldout_fraction: float = 0.5
    dp: DPSettings | None = field(default=None)

    @property
    def arch_family(self) -> str:
        return "hf" if self.arch.startswith("hf:") else self.arch

    def resolved(self) -> "TrainingRecipe":
        """The same recipe with every default made explicit (what the bundle records)."""
        self.validate()
        return replace(
            self,
            lr=self.lr if self.lr is not None else DEFAULT_LR[self.arch_family],
            vocab_size=self.vocab_size if self.vocab_size is not None else DEFAULT_VOCAB.get(self.arch_family),
        )

    def validate(self) -> None:
        if self.arch not in ("cnn", "bert-tiny") and not self.arch.startswith("hf:"):
            raise PrivauditError(f"unknown architecture {self.arch!r} (choose cnn, bert-tiny or hf:PATH)")
        for name in ("epochs", "batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise PrivauditError(f"{name.replace('_', '-')} must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise PrivauditError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if not 0 <= self.dropout < 1:
            raise PrivauditError("dropout must be in [0, 1)")
        if self.dp is not None:
            if self.dp.max_grad_norm <= 0:
                raise PrivauditError("max-grad-norm must be positive")
            # A trained recipe records both: the target epsilon asked for and the noise it was calibrated to.
            if self.dp.noise_multiplier is None and self.dp.target_epsilon is None:
                raise PrivauditError("with --dp give --noise-multiplier or --target-epsilon")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingRecipe":
        d = dict(d)
        d["dp"] = DPSettings(**d["dp"]) if d.get("dp") else None
        return cls(**d)
