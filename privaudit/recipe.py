"""Training recipes are data: a dataclass saved in every bundle, so that shadow and reference models
(and canary retraining) are trained exactly like the target."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .errors import PrivauditError
from .options import MAX_RECIPE_SEED, check_seed

DEFAULT_VOCAB = {"cnn": 30000, "bert-tiny": 8000}  # learned: at most this many tokens
VOCABULARIES = ("learned", "hashed")
# adam-bc: DP-AdamBC (privaudit.optim); sgd: momentum 0.9; plain-sgd: no momentum, where DP-SGD can draw an
# embedding table's noise lazily (dpsgd.LazyNoisyTable)
OPTIMIZERS = ("adam", "adam-bc", "sgd", "plain-sgd")
# Examples per forward/backward pass: a larger (logical) batch is accumulated over passes of this size,
# so memory follows this number, not the batch size.
DEFAULT_PHYSICAL_BATCH = 64


@dataclass(frozen=True)
class Defaults:
    """What a recipe leaves unset becomes this, by architecture and by whether DP-SGD is on."""

    epochs: int
    batch_size: int  # DP-SGD: the expected (logical) batch, q x N
    lr: float  # plain-sgd under DP-SGD: the Adam learning rate that noise_matched_lr matches
    optimizer: str = "adam"


# Ordinary training: settings that train each architecture well on intent data.
NONDP_DEFAULTS = {
    "cnn": Defaults(epochs=20, batch_size=64, lr=1e-3),
    "bert-tiny": Defaults(epochs=20, batch_size=64, lr=1e-3),
    "hf": Defaults(epochs=20, batch_size=64, lr=5e-5),
}
# DP-SGD. Transformers follow what made DP fine-tuning work (Li, Tramer, Liang, Hashimoto 2021, "Large
# language models can be strong differentially private learners"; De et al. 2022): large logical batches,
# reached by accumulation, so that the noise (std sigma x C on the sum) is small against the signal (up to
# B x C), and fewer but larger steps. And DP-AdamBC (privaudit.optim): with plain Adam the noise sets the
# second moment of nearly every coordinate, Adam degrades to SGD, and a transformer does not learn (SNIPS,
# bert-tiny, epsilon 8: held-out accuracy 0.134, a constant prediction, at batch 64 and at batch 1024; with
# DP-AdamBC and these defaults 0.92-0.94 against 0.959 without DP). The CNN keeps the recipe it was measured
# with, but with plain SGD at noise_matched_lr: the steps Adam took there (SNIPS, split seed 0, held-out
# accuracy with Adam / plain SGD: 0.884 / 0.877 at epsilon 1, 0.926 / 0.926 at epsilon 4), and with plain
# SGD DP-SGD draws the embedding table's noise lazily, only for the rows a batch reads (dpsgd.LazyNoisyTable),
# where it was 0.46x of an ordinary step. Measured in the README ("DP fine-tuning with the defaults").
DP_DEFAULTS = {
    "cnn": Defaults(epochs=20, batch_size=64, lr=1e-3, optimizer="plain-sgd"),
    "bert-tiny": Defaults(epochs=20, batch_size=1024, lr=1e-3, optimizer="adam-bc"),
    "hf": Defaults(epochs=20, batch_size=1024, lr=5e-4, optimizer="adam-bc"),
}


def noise_matched_lr(adam_lr: float, batch_size: float, noise_multiplier: float, max_grad_norm: float) -> float:
    """Plain SGD's learning rate that takes the steps Adam at `adam_lr` takes under DP-SGD.

    The privatised gradient has noise of std sigma C / B in every coordinate; where the noise dominates Adam's
    second moment (nearly every coordinate, at any useful epsilon) Adam's step is lr g / (sigma C / B): plain
    SGD at lr x B / (sigma C). Public parameters only; each step's noise then moves a coordinate by `adam_lr`,
    as Adam's does."""
    return adam_lr * batch_size / (noise_multiplier * max_grad_norm)


def poisson_pass(expected_batch_size: int) -> int:
    """DP-SGD's default physical batch for an expected batch of at most DEFAULT_PHYSICAL_BATCH: room for the
    Poisson sample's size (expected + 4 standard deviations) in one pass. A pass of exactly the expected
    size split every other step in two, the second pass a few examples and nearly the first's fixed cost
    (SNIPS CNN: 3,170 passes for 2,160 steps)."""
    if expected_batch_size > DEFAULT_PHYSICAL_BATCH:
        return DEFAULT_PHYSICAL_BATCH  # large logical batches are accumulated anyway: memory decides
    return math.ceil(expected_batch_size + 4 * math.sqrt(expected_batch_size))


# A default DP logical batch is at most this fraction of the training set (small data sets still take
# several steps an epoch) and never below the physical batch.
DP_MAX_BATCH_FRACTION = 0.25


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
    # None: the architecture's default, with or without DP-SGD (NONDP_DEFAULTS, DP_DEFAULTS)
    epochs: int | None = None
    batch_size: int | None = None  # the logical batch: DP-SGD's expected batch q x N
    lr: float | None = None
    optimizer: str | None = None
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
    physical_batch_size: int | None = None  # None: DEFAULT_PHYSICAL_BATCH (DP-SGD: see poisson_pass)
    # Which parameters train: "all", "head" (the classification layer only) or "top:K" (a transformer's
    # last K layers and everything above them). Frozen parameters get no gradient and no DP noise.
    trainable: str = "all"

    @property
    def arch_family(self) -> str:
        return "hf" if self.arch.startswith("hf:") else self.arch

    @property
    def defaults(self) -> Defaults:
        return (DP_DEFAULTS if self.dp is not None else NONDP_DEFAULTS)[self.arch_family]

    def resolved(self, n_examples: int | None = None) -> TrainingRecipe:
        """The same recipe with every default made explicit (what the bundle records). Two defaults depend
        on the number of training examples, public (DP-SGD's sample rate is batch / N) and never on their
        content: DP-SGD's logical batch (see DP_MAX_BATCH_FRACTION) and the size of a hashed vocabulary
        (2^ceil(log2 N) ids within [1024, 16384]: small data sets get a small embedding table to noise).
        Without `n_examples` those two stay unset; a recipe resolved with it resolves to itself. Plain SGD under
        DP-SGD with no lr given keeps lr unset: fit sets it with the noise (noise_matched_lr)."""
        self.validate()
        family, defaults = self.arch_family, self.defaults
        vocabulary = self.vocabulary or ("hashed" if self.dp is not None else "learned")
        vocab_size = self.vocab_size
        if vocab_size is None and vocabulary == "learned":
            vocab_size = DEFAULT_VOCAB.get(family)
        elif vocab_size is None and vocabulary == "hashed" and n_examples is not None:
            vocab_size = int(min(16384, max(1024, 2 ** math.ceil(math.log2(max(1, n_examples))))))
        physical = self.physical_batch_size or DEFAULT_PHYSICAL_BATCH
        batch_size = self.batch_size
        if batch_size is None and (self.dp is None or n_examples is not None):
            batch_size = defaults.batch_size
            if self.dp is not None and n_examples is not None:
                batch_size = max(min(batch_size, int(n_examples * DP_MAX_BATCH_FRACTION)), min(physical, batch_size))
        if self.physical_batch_size is None and self.dp is not None and batch_size is not None:
            physical = max(physical, poisson_pass(batch_size))
        optimizer = self.optimizer or defaults.optimizer
        lr = self.lr
        if lr is None and not (self.dp is not None and optimizer == "plain-sgd"):
            lr = defaults.lr
        return replace(
            self,
            epochs=self.epochs if self.epochs is not None else defaults.epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            vocabulary=None if family == "hf" else vocabulary,
            vocab_size=vocab_size,
            physical_batch_size=physical,
        )

    def without_dp(self) -> TrainingRecipe:
        """The recipe as it would be without DP-SGD: what the user set kept, the rest the non-DP defaults
        (the baseline `privaudit train --compare-nondp` trains)."""
        return replace(self, dp=None)

    def with_noise_lr(self, expected_batch_size: float, noise_multiplier: float) -> TrainingRecipe:
        """The resolved recipe with its lr set, where resolved() left it unset (plain SGD under DP-SGD), to
        noise_matched_lr for this noise."""
        if self.lr is not None:
            return self
        assert self.dp is not None, "only plain SGD under DP-SGD leaves lr unset"
        return replace(
            self, lr=noise_matched_lr(self.defaults.lr, expected_batch_size, noise_multiplier, self.dp.max_grad_norm)
        )

    @property
    def top_layers(self) -> int | None:
        """K of trainable = "top:K", else None."""
        return int(self.trainable[4:]) if self.trainable.startswith("top:") else None

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
        for name in ("epochs", "batch_size", "max_len", "physical_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PrivauditError(f"{name.replace('_', '-')} must be at least 1")
        top = self.trainable[4:]
        if self.trainable not in ("all", "head") and not (
            self.trainable.startswith("top:") and top.isascii() and top.isdigit() and int(top) >= 1
        ):
            raise PrivauditError(f"unknown --trainable {self.trainable!r} (choose all, head or top:K with K >= 1)")
        if self.top_layers is not None and self.arch_family == "cnn":
            raise PrivauditError("--trainable top:K needs a transformer (bert-tiny or hf:PATH), not the cnn")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
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
            if not (math.isfinite(self.dp.max_grad_norm) and self.dp.max_grad_norm > 0):
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
