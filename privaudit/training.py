"""Training text classifiers, with or without DP-SGD.

`fit` trains on every example it is given (shadow models use it directly); `train_target` holds out a
part of the data as the non-member pool first, which is what `privaudit train` does, so that later
audits have known members and known non-members.

DP-SGD (Abadi et al. 2016): each step samples every example independently with probability
q = batch_size / N (Poisson subsampling, what the accountant assumes), clips each example's gradient
to max_grad_norm (see dpsgd.py), adds Gaussian noise of std noise_multiplier * max_grad_norm to the
sum and divides by the expected batch size. The number of steps is epochs / q.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from .accounting import PrivacyGuarantee, account, calibrate_noise, default_delta
from .allocator import keep_freed_memory
from .classifier import TextClassifier
from .data import TextDataset, member_split
from .devices import resolve_device
from .dpsgd import DiracRows, GaussianNoise, LazyNoisyTable, PerExampleClipper, PoissonSampler

if TYPE_CHECKING:
    from privaudit.canaries.gradient import WhiteBoxAudit
from .errors import PrivauditError
from .models import ModelConfig, bert_tiny_config, build_model, trainable_parameters
from .optim import DPAdamBC
from .recipe import TrainingRecipe
from .tokenization import PAD, AnyTokenizer, hashed_tokenizer, pad_batch, token_ids, train_tokenizer

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input ids, attention mask, target label ids


@dataclass
class FittedModel:
    classifier: TextClassifier
    recipe: TrainingRecipe  # resolved: defaults explicit, the noise multiplier actually used
    privacy: PrivacyGuarantee | None
    whitebox: WhiteBoxAudit | None = None  # when gradient canaries were inserted


def build_classifier(
    recipe: TrainingRecipe,
    texts: list[str],
    labels: list[str],
    tokenizer: AnyTokenizer | None = None,
    required_tokens: tuple[str, ...] = (),
) -> TextClassifier:
    """A freshly initialised classifier whose tokenizer is trained on `texts` (hf:PATH: its own), or is
    the `tokenizer` given (reference models read exactly what the model they calibrate reads).
    `required_tokens` (public words, such as a canary template's alphabet) join a learned vocabulary
    whether or not the texts hold them."""
    family = recipe.arch_family
    if family == "hf":
        return load_hf_directory(recipe.arch[3:], labels, recipe.max_len)
    kind = "word" if family == "cnn" else "wordpiece"
    assert recipe.vocab_size is not None, "a recipe resolved with its data size has its vocabulary size"
    if tokenizer is None and recipe.vocabulary == "hashed":  # data-independent: built without looking at `texts`
        tokenizer = hashed_tokenizer(kind, recipe.vocab_size)
    elif tokenizer is None:
        tokenizer = train_tokenizer(kind, texts, recipe.vocab_size, required=required_tokens)
    pad_id = tokenizer.token_to_id(PAD)
    assert pad_id is not None, "every privaudit tokenizer has a padding token"
    vocab = tokenizer.get_vocab_size()
    config = ModelConfig(
        arch=family,
        num_labels=len(labels),
        vocab_size=vocab,
        pad_id=pad_id,
        max_len=recipe.max_len,
        dropout=recipe.dropout,
    )
    if family == "bert-tiny":
        config.hf_config = bert_tiny_config(vocab, len(labels), pad_id, recipe.max_len, recipe.dropout)
    return TextClassifier(build_model(config), tokenizer, config, list(labels))


def load_hf_directory(path: str, labels: list[str] | None, max_len: int = 64) -> TextClassifier:
    """A local Hugging Face sequence-classification directory as a classifier.

    With `labels`, the head is sized for them (a fresh head where the sizes differ: fine-tuning);
    without, the model keeps its own head and its config's id2label names (auditing it as it is)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .models import HFClassifier

    hf_logging.set_verbosity_error()  # privaudit shows its own progress; no per-shard loading bars
    hf_logging.disable_progress_bar()
    if not (Path(path) / "config.json").is_file():
        raise PrivauditError(f"hf:{path}: not a Hugging Face model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        head = {"num_labels": len(labels), "ignore_mismatched_sizes": True} if labels is not None else {}
        hf_model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, **head)
        if labels is None:
            labels = [hf_model.config.id2label[i] for i in range(hf_model.config.num_labels)]
    except (OSError, ValueError) as exc:
        raise PrivauditError(f"hf:{path}: cannot load the model ({exc})") from None
    if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token_id is None:
        raise PrivauditError(f"hf:{path}: needs a fast tokenizer with a padding token")
    hf_config = hf_model.config.to_dict()
    config = ModelConfig(
        arch="hf",
        num_labels=len(labels),
        vocab_size=hf_model.config.vocab_size,
        pad_id=tokenizer.pad_token_id,
        max_len=max_len,
        hf_config=hf_config,
    )
    return TextClassifier(HFClassifier(hf_model), tokenizer.backend_tokenizer, config, list(labels))


def make_optimizer(recipe: TrainingRecipe, params) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params`; adam-bc is told the variance of DP-SGD's noise in each gradient
    coordinate, (noise multiplier x clipping norm / expected batch size)^2 (0 without DP-SGD: Adam)."""
    # The fused kernels update all parameters in one vectorised pass: on the CPU, Adam over a
    # 1.5M-parameter embedding table is several times faster than the per-tensor loop.
    assert recipe.lr is not None, "a resolved recipe has its learning rate"
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
    if recipe.optimizer == "adam-bc":
        dp, variance = recipe.dp, 0.0
        if dp is not None:
            assert dp.noise_multiplier is not None and recipe.batch_size is not None
            variance = (dp.noise_multiplier * dp.max_grad_norm / recipe.batch_size) ** 2
        return DPAdamBC(params, recipe.lr, variance, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "plain-sgd":
        # Without momentum the multi-tensor (foreach) update is as fast as the fused kernel on row-major
        # tensors, and does not slow down on PackedConv1d's tap-major weights as the fused kernel does
        # (DP CNN's dense parameters, 2-core CPU: 31 against 81 us a step).
        return torch.optim.SGD(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay, fused=True)


# Poisson samples have any size; passes of a multiple of 16 examples ran 11% faster on the SNIPS CNN than the
# raw sizes, padding rows included (oneDNN's kernels; 15.4 against 13.7 ms a DP step, alternating blocks).
ROW_MULTIPLE = 16
IGNORED = -100  # cross_entropy's ignore_index: such a row's loss and every gradient of it are exactly 0


def with_ignored_rows(chunk: Batch, physical: int) -> Batch:
    """The chunk with copies of its first row appended, up to a multiple of ROW_MULTIPLE rows (not past the
    physical batch), each with the target IGNORED. A copied row's loss is 0, so its output gradient, its
    per-example gradient and its norm are exactly 0: the clipped sum is the chunk's own."""
    ids, mask, targets = chunk
    rows = len(targets)
    padded = min(-(-rows // ROW_MULTIPLE) * ROW_MULTIPLE, max(rows, physical))
    if padded == rows:
        return chunk
    extra = padded - rows
    return (
        torch.cat([ids, ids[:1].expand(extra, -1)]),
        torch.cat([mask, mask[:1].expand(extra, -1)]),
        torch.cat([targets, targets.new_full((extra,), IGNORED)]),
    )


def pass_indices(indices: np.ndarray, lengths: np.ndarray, physical: int) -> list[np.ndarray]:
    """A step's examples (`indices`, with every example's token count in `lengths`) as passes of at most
    `physical`. A step of several passes takes its examples shortest first, so that each pass pads to its own
    longest text, not the step's: the step's gradient is a sum over its examples (clipped one by one under
    DP-SGD), which their order does not change."""
    if len(indices) > physical:
        indices = indices[np.argsort(lengths[indices], kind="stable")]
    return [indices[start : start + physical] for start in range(0, len(indices), physical)]


def nondp_step(model, optimizer, chunks: list[Batch]) -> None:
    """One ordinary step on a batch given as chunks (gradient accumulation): the mean loss over the batch."""
    optimizer.zero_grad(set_to_none=True)
    total = sum(len(targets) for _, _, targets in chunks)
    for ids, mask, targets in chunks:
        (F.cross_entropy(model(ids, mask), targets) * (len(targets) / total)).backward()
    optimizer.step()


def dp_step(
    clipper: PerExampleClipper,
    noise: GaussianNoise,
    model,
    optimizer,
    chunks: list[Batch],
    expected_batch_size: float,
    canary_rows: DiracRows | None = None,
    observe=None,
    tables: Sequence[LazyNoisyTable] = (),
) -> None:
    """One DP-SGD step: Gaussian noise + clipped per-example gradient sum, over the expected batch size.

    The Poisson sample comes as chunks of at most the physical batch: each chunk's clipped gradients are
    added to the step's noise in place, so a logical batch of any size takes the memory of one chunk, and
    the noise is drawn once per step (the mechanism is unchanged: the sum of clipped gradients is the same).
    An empty Poisson sample still takes a step: a pure-noise update, as the accountant assumes.
    `canary_rows` are further sampled examples given as gradients (the white-box audit's canaries), clipped
    with the last chunk; `observe()` runs once the privatised gradient is in p.grad, before the update.
    `tables` (plain SGD, their noise drawn lazily: LazyNoisyTable) count the step; each row's update waits for
    its next read. A NoisedSumSGD optimizer takes the step from the undivided sum when nothing observes it.
    """
    noise.start_step()
    chunks = [chunk for chunk in chunks if len(chunk[2])]
    for k, (ids, mask, targets) in enumerate(chunks):
        with clipper.capture(len(targets)):
            F.cross_entropy(model(ids, mask), targets, reduction="none").sum().backward()
        clipper.clip_and_accumulate(canary_rows if k == len(chunks) - 1 else None)
    if not chunks and canary_rows is not None and len(canary_rows):
        clipper.clip_and_accumulate(canary_rows)
    if isinstance(optimizer, NoisedSumSGD) and observe is None:
        optimizer.step_from_sum(expected_batch_size)
    else:
        noise.divide(expected_batch_size)
        if observe is not None:
            observe()
        optimizer.step()
    for table in tables:
        table.step()


class NoisedSumSGD(torch.optim.SGD):
    """Plain SGD (no momentum, no weight decay) over the parameters DP-SGD's noise buffer covers. `step()` is
    torch's; `step_from_sum(B)` takes the step from the undivided .grad (noise + clipped sum): W -= lr / B x it,
    one multi-tensor add (GaussianNoise.add_to_parameters) instead of the 1/B pass over the buffer and torch's
    optimizer step, whose bookkeeping cost more than its arithmetic (SNIPS CNN, 2 CPUs: 2.7% of a DP step)."""

    def __init__(self, noise: GaussianNoise, lr: float):
        super().__init__(noise.parameters, lr=lr, foreach=True)
        self.noise = noise

    def step_from_sum(self, count: float) -> None:
        self.noise.add_to_parameters(-self.param_groups[0]["lr"] / count)


@dataclass
class DPUpdate:
    """What turns a DP-SGD step's examples into the model's update: the clipper, the noise of the densely noised
    parameters and their optimizer, and the embedding tables whose noise is drawn lazily."""

    clipper: PerExampleClipper
    noise: GaussianNoise
    optimizer: torch.optim.Optimizer
    tables: list[LazyNoisyTable]

    def close(self) -> None:
        self.clipper.close()


def dp_update(
    model,
    recipe: TrainingRecipe,
    expected_batch_size: float,
    device,
    seed: int | None,
    lazy_tables: bool = True,
    noise_class: type[GaussianNoise] | None = None,
) -> DPUpdate:
    """DP-SGD's update for `model` under `recipe` (resolved, its noise calibrated). With plain SGD and no weight
    decay (and `lazy_tables`), every embedding table the clipper handles gets its noise lazily: exact (see
    LazyNoisyTable), and the per-step draw shrinks from the table to the rows a batch reads. `noise_class`
    replaces GaussianNoise (the benchmark's noise-free timing)."""
    dp = recipe.dp
    assert dp is not None and dp.noise_multiplier is not None and recipe.lr is not None
    clipper = PerExampleClipper(model, dp.max_grad_norm)
    lazy = lazy_tables and recipe.optimizer == "plain-sgd" and recipe.weight_decay == 0
    modules = clipper.embedding_tables() if lazy else []
    in_tables = {id(m.weight) for m in modules}
    dense = [p for p in clipper.parameters if id(p) not in in_tables]
    noise = (noise_class or GaussianNoise)(dense, dp.noise_multiplier * dp.max_grad_norm, device, seed)
    tables = [LazyNoisyTable(m, noise, recipe.lr, expected_batch_size) for m in modules]
    plain = recipe.optimizer == "plain-sgd" and recipe.weight_decay == 0 and bool(dense)
    optimizer = NoisedSumSGD(noise, recipe.lr) if plain else make_optimizer(recipe, dense)
    return DPUpdate(clipper, noise, optimizer, tables)


def fit(
    train: TextDataset,
    labels: list[str],
    recipe: TrainingRecipe,
    device: str = "cpu",
    progress: Progress | None = None,
    description: str = "training",
    gradient_canaries: int = 0,
    tokenizer: AnyTokenizer | None = None,
) -> FittedModel:
    """Train a fresh classifier on all of `train` with `recipe` (and `tokenizer`: see `build_classifier`).

    Seeded where that is safe: initialisation and non-DP shuffling follow `recipe.seed`. DP-SGD's noise and
    Poisson sampling come from operating-system entropy (never from the recorded seed), unless the recipe
    sets an explicit `dp.insecure_seed` for reproducible tests. With DP-SGD, `gradient_canaries` > 0 runs
    the white-box one-run audit (canaries.gradient) inside this training run; its result is `whitebox`.
    Sets the process's allocator to keep freed memory for the next step (`allocator.keep_freed_memory`).
    """
    if len(train) == 0:
        raise PrivauditError("no training examples")
    keep_freed_memory()
    recipe = recipe.resolved(len(train))
    epochs, batch_size, physical = recipe.epochs, recipe.batch_size, recipe.physical_batch_size
    assert epochs is not None and batch_size is not None and physical is not None  # resolved with the data size
    torch.manual_seed(recipe.seed)
    classifier = build_classifier(recipe, train.texts, labels, tokenizer)
    device = resolve_device(device)
    model = classifier.model.to(device)
    trainable = trainable_parameters(model, recipe.trainable)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    targets_all = classifier.label_ids(train.labels)
    sequences = token_ids(classifier.tokenizer, train.texts, recipe.max_len)
    n = len(train)
    total_steps = epochs * math.ceil(n / batch_size)
    privacy = None
    if recipe.dp is not None:
        recipe, privacy = _with_calibrated_noise(recipe, n, total_steps)
    task = progress.add_task(description, total=total_steps) if progress is not None else None
    model.train()

    lengths = np.array([len(sequence) for sequence in sequences])

    def batch(indices) -> list[Batch]:
        """The examples at `indices` as passes (`pass_indices`), padded pass by pass (under DP-SGD also to a
        multiple of ROW_MULTIPLE rows: see with_ignored_rows)."""
        chunks = []
        for part in pass_indices(indices, lengths, physical):
            ids, mask = pad_batch([sequences[i] for i in part], classifier.config.pad_id)
            targets = targets_all[torch.as_tensor(part, device=device, dtype=torch.long)]
            chunk = (ids.to(device), mask.to(device), targets)
            chunks.append(with_ignored_rows(chunk, physical) if recipe.dp is not None and len(part) else chunk)
        return chunks

    whitebox = None
    if recipe.dp is None:
        optimizer = make_optimizer(recipe, trainable)
        rng = np.random.default_rng(recipe.seed)
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                nondp_step(model, optimizer, batch(order[start : start + batch_size]))
                if progress is not None and task is not None:
                    progress.advance(task)
    else:
        from privaudit.canaries.gradient import GradientCanaries, unused_embedding_coordinates

        dp = recipe.dp
        assert dp is not None and dp.noise_multiplier is not None  # calibrated by _with_calibrated_noise
        seed = dp.insecure_seed  # None: operating-system entropy, the only choice that keeps the guarantee
        sample_rate = batch_size / n
        # Gradient canaries are written into embedding rows no example reads: the tables' noise is drawn densely.
        update = dp_update(model, recipe, sample_rate * n, device, seed, lazy_tables=not gradient_canaries)
        clipper = update.clipper
        canaries = None
        if gradient_canaries:
            used = {i for seq in sequences for i in seq}
            embedding = model.embedding_layer()  # type: ignore[operator]  # nn.Module attributes type as Tensor
            quiet = unused_embedding_coordinates(clipper.parameters, embedding.weight, used)
            # At most one canary per two coordinates (small models); the audit records the count used.
            count = min(gradient_canaries, sum(p.numel() for p in clipper.parameters) // 2)
            canaries = GradientCanaries(
                clipper.parameters,
                count,
                dp.max_grad_norm,
                sample_rate,
                sample_rate * n,
                None if seed is None else seed + 2,
                quiet,
            )
        # Included gradient canaries are examples n, n+1, ...: the trainer's own sampler draws them.
        sampler = PoissonSampler(
            n + (canaries.n_included if canaries else 0), sample_rate, None if seed is None else seed + 1
        )
        try:
            for _ in range(total_steps):
                indices = sampler.sample()
                rows = canaries.rows(indices[indices >= n] - n) if canaries else None
                dp_step(
                    clipper,
                    update.noise,
                    model,
                    update.optimizer,
                    batch(indices[indices < n]),
                    sample_rate * n,
                    rows,
                    canaries.observe if canaries else None,
                    update.tables,
                )
                if progress is not None and task is not None:
                    progress.advance(task)
            for table in update.tables:
                table.finish()
        finally:
            update.close()
        if canaries is not None:
            whitebox = canaries.finish(dp.delta)
    for p in model.parameters():  # as a loaded bundle is: attacks may ask for any gradient
        p.requires_grad_(True)
    model.eval()
    return FittedModel(classifier, recipe, privacy, whitebox)


def _with_calibrated_noise(recipe: TrainingRecipe, n: int, steps: int) -> tuple[TrainingRecipe, PrivacyGuarantee]:
    dp = recipe.dp
    assert dp is not None and recipe.batch_size is not None  # resolved with the data size
    sample_rate = min(1.0, recipe.batch_size / n)
    delta = dp.delta if dp.delta is not None else default_delta(n)
    sigma = dp.noise_multiplier
    if sigma is None:
        assert dp.target_epsilon is not None  # TrainingRecipe.validate: one of the two is given
        sigma = calibrate_noise(dp.target_epsilon, sample_rate, steps, delta, dp.accountant)
    dp = replace(dp, noise_multiplier=sigma, delta=delta)
    return replace(recipe, dp=dp).with_noise_lr(sample_rate * n, sigma), account(dp, sample_rate, steps)


@dataclass
class NondpBaseline:
    """The target's recipe without DP-SGD (what the user set kept, the rest the non-DP defaults), trained on
    the same members: what DP-SGD costs in accuracy. Not covered by any guarantee (a non-DP model of the
    members), so it is shown, never saved in the model file."""

    recipe: TrainingRecipe
    train_accuracy: float
    heldout_accuracy: float
    seconds: float
    dp_heldout_accuracy: float
    dp_seconds: float

    def rows(self) -> list[tuple[str, str]]:
        r = self.recipe
        return [
            ("recipe", f"{r.epochs} epochs, batch {r.batch_size}, {r.optimizer} lr {r.lr:g}, trainable {r.trainable}"),
            ("train accuracy", f"{self.train_accuracy:.4f}"),
            ("heldout accuracy", f"{self.heldout_accuracy:.4f} (with DP-SGD: {self.dp_heldout_accuracy:.4f})"),
            ("DP / non-DP held-out accuracy", f"{self.dp_heldout_accuracy / max(self.heldout_accuracy, 1e-12):.3f}"),
            ("training time", f"{self.seconds:.0f} s (with DP-SGD: {self.dp_seconds:.0f} s)"),
        ]


@dataclass
class TargetModel:
    """A model trained on a random part of the data, with the rest kept as its non-member pool."""

    fitted: FittedModel
    member_indices: np.ndarray
    heldout_indices: np.ndarray
    metrics: dict
    baseline: NondpBaseline | None = None


def train_target(
    data: TextDataset,
    recipe: TrainingRecipe,
    device: str = "cpu",
    progress: Progress | None = None,
    split_seed: int | None = None,
    compare_nondp: bool = False,
) -> TargetModel:
    """Split `data` into members and a held-out pool, and train on the members; with `compare_nondp` (and
    DP-SGD), also the NondpBaseline on the same members.

    The split is drawn from operating-system entropy unless `split_seed` is given: the recorded --seed must
    not let whoever holds the model and the data file recompute who was a member."""
    recipe.validate()
    members, heldout = member_split(len(data), recipe.heldout_fraction, split_seed)
    labels = data.label_names
    train, pool = data.subset(members), data.subset(heldout)
    if len(train.label_names) < 2:
        raise PrivauditError("the training part of the data has a single class; use more data")
    start = time.perf_counter()
    fitted = fit(train, labels, recipe, device, progress)
    seconds = time.perf_counter() - start
    metrics = {
        "train_accuracy": fitted.classifier.accuracy(train.texts, train.labels),
        "heldout_accuracy": fitted.classifier.accuracy(pool.texts, pool.labels),
    }
    baseline = None
    if compare_nondp and recipe.dp is not None:
        start = time.perf_counter()
        plain = fit(train, labels, recipe.without_dp(), device, progress, "training without DP-SGD")
        baseline = NondpBaseline(
            plain.recipe,
            plain.classifier.accuracy(train.texts, train.labels),
            plain.classifier.accuracy(pool.texts, pool.labels),
            time.perf_counter() - start,
            metrics["heldout_accuracy"],
            seconds,
        )
    return TargetModel(fitted, members, heldout, metrics, baseline)
