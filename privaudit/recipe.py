"""Training recipes are data: a dataclass saved in every bundle, so that shadow and reference models
(and canary retraining) are trained exactly like the target."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .errors import PrivauditError
from .options import MAX_RECIPE_SEED, check_seed

# Learning rates that train each architecture well on intent data in the default number of epochs.
DEFAULT_LR = {"cnn": 1e-3, "bert-tiny": 1e-3, "hf": 5e-5}
DEFAULT_VOCAB = {"cnn": 30000, "bert-tiny": 8000}  # learned: at most this many tokens
VOCABULARIES = ("learned", "hashed")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class DPSettings:
    """DP-SGD parameters. noise_multiplier is the one actually used (calibrated if target_epsilon given)."""

    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None  # None: chosen from the number of training examples
    accountant: str = "pld"
    # Reproducible noise and sampling, for tests only: anyone who knows this seed can replay the noise,
    # so a model trained with it has no guarantee against them (info and every report say so).
    insecure_seed: int | None = None


def dp_options(
    dp: bool,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = 1.0,
    delta: float | None = None,
    accountant: str = "pld",
    insecure_seed: int | None = None,
) -> DPSettings | None:
    """The DP-SGD settings that `--dp` and its options ask for (None without --dp), checked the same way
    for every command: the noise options without --dp are refused, never silently ignored."""
    if not dp:
        if noise_multiplier is not None or target_epsilon is not None or insecure_seed is not None:
            raise PrivauditError("--noise-multiplier, --target-epsilon and --insecure-dp-seed need --dp")
        return None
    if (noise_multiplier is None) == (target_epsilon is None):
        raise PrivauditError("with --dp give exactly one of --noise-multiplier and --target-epsilon")
    return DPSettings(max_grad_norm, noise_multiplier, target_epsilon, delta, accountant, insecure_seed)


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
    # "learned" from the training texts (not covered by DP) or "hashed" (data-independent);
    # None: hashed with DP-SGD, learned without. hf:PATH models keep their own (public) tokenizer.
    vocabulary: str | None = None
    seed: int = 0
    heldout_fraction: float = 0.5
    dp: DPSettings | None = field(default=None)

    @property
    def arch_family(self) -> str:
        return "hf" if self.arch.startswith("hf:") else self.arch

    def resolved(self) -> TrainingRecipe:
        """The same recipe with every default made explicit (what the bundle records)."""
        self.validate()
        family = self.arch_family
        vocabulary = self.vocabulary or ("hashed" if self.dp is not None else "learned")
        vocab_size = self.vocab_size
        if vocab_size is None and vocabulary == "learned":
            vocab_size = DEFAULT_VOCAB.get(family)  # hashed: sized for the data set by with_hash_buckets
        return replace(
            self,
            lr=self.lr if self.lr is not None else DEFAULT_LR[family],
            vocabulary=None if family == "hf" else vocabulary,
            vocab_size=vocab_size,
        )

    def with_hash_buckets(self, n_examples: int) -> TrainingRecipe:
        """A resolved recipe whose hashed vocabulary has its size: given, or 2^ceil(log2 N) ids within
        [1024, 16384]. It depends on the number of training examples (public: DP-SGD's sample rate is
        batch / N), never on their content; small data sets get a small embedding table to noise."""
        if self.vocabulary != "hashed" or self.vocab_size is not None:
            return self
        return replace(self, vocab_size=int(min(16384, max(1024, 2 ** math.ceil(math.log2(max(1, n_examples)))))))

    def vocabulary_description(self) -> str:
        """What `info` and the reports say about where the vocabulary came from."""
        if self.arch_family == "hf":
            return "the pretrained model's own tokenizer (fixed before training)"
        if self.vocabulary == "hashed":
            return f"hashed, {self.vocab_size:,} ids: data-independent, reveals nothing about the training data"
        covered = "NOT covered by DP-SGD's guarantee: " if self.dp is not None else ""
        return f"learned from the training texts ({covered}its words tell members from non-members)"

    def validate(self) -> None:
        if self.arch not in ("cnn", "bert-tiny") and not self.arch.startswith("hf:"):
            raise PrivauditError(f"unknown architecture {self.arch!r} (choose cnn, bert-tiny or hf:PATH)")
        for name in ("epochs", "batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise PrivauditError(f"{name.replace('_', '-')} must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise PrivauditError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.vocabulary is not None and self.vocabulary not in VOCABULARIES:
            raise PrivauditError(f"unknown vocabulary {self.vocabulary!r} (choose from {', '.join(VOCABULARIES)})")
        if self.vocab_size is not None and self.vocab_size < 100:
            raise PrivauditError("vocab-size must be at least 100")
        if not 0 <= self.dropout < 1:
            raise PrivauditError("dropout must be in [0, 1)")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise PrivauditError(f"--lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise PrivauditError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        check_seed(self.seed, MAX_RECIPE_SEED)
        if self.dp is not None:
            if self.dp.max_grad_norm <= 0:
                raise PrivauditError("max-grad-norm must be positive")
            # A trained recipe records both: the target epsilon asked for and the noise it was calibrated to.
            if self.dp.noise_multiplier is None and self.dp.target_epsilon is None:
                raise PrivauditError("with --dp give --noise-multiplier or --target-epsilon")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainingRecipe:
        d = dict(d)
        d["dp"] = DPSettings(**d["dp"]) if d.get("dp") else None
        return cls(**d)
