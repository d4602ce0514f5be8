"""Checks of a DP-SGD implementation, shared by the trust tests (the real one must pass them) and the bug
zoo (each deliberately broken one must fail at least one). Each trains through privaudit.training, so
whatever noise, sampler and clipper classes are installed there are the ones checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from privaudit import dpsgd, training
from privaudit.demo import demo_dataset
from privaudit.dpsgd import DiracRows
from privaudit.models import ModelConfig, build_model
from privaudit.recipe import DPSettings, TrainingRecipe

# Small enough for the fast test lane: 400 examples, 26 steps, claimed epsilon 0.96 at delta 1e-5.
NOISE_MULTIPLIER = 2.0
GRADIENT_CANARIES = 2000


def small_data():
    return demo_dataset(400, seed=5)


def dp_recipe(seed: int = 0, **dp) -> TrainingRecipe:
    # Two passes of at most 16 per expected batch of 32: every check also covers accumulated batches.
    return TrainingRecipe(
        epochs=2,
        batch_size=32,
        physical_batch_size=16,
        seed=seed,
        vocab_size=2000,
        dp=DPSettings(noise_multiplier=NOISE_MULTIPLIER, delta=1e-5, **dp),
    )


def whitebox_run(seed: int = 0):
    """One DP training with the white-box audit: (claimed epsilon, WhiteBoxAudit)."""
    data = small_data()
    fitted = training.fit(data, data.label_names, dp_recipe(seed), gradient_canaries=GRADIENT_CANARIES)
    return fitted.privacy.epsilon, fitted.whitebox


def whitebox_flags(claimed: float, audit) -> list[str]:
    return audit.failures(claimed)


def first_noise_correlation(monkeypatch) -> float:
    """The largest correlation between the first step's noise and a parameter's initial weights, over the
    parameters of 10,000 coordinates or more (about 0.01 by chance for fresh noise)."""
    record = {}
    base = training.GaussianNoise

    class Recording(base):
        def __init__(self, parameters, *args, **kwargs):
            super().__init__(parameters, *args, **kwargs)
            record["initial"] = [p.detach().flatten().clone() for p in parameters]

        def start_step(self):
            super().start_step()
            record.setdefault("noise", self.buffer.detach().clone())

    monkeypatch.setattr(training, "GaussianNoise", Recording)
    data = small_data()
    training.fit(
        data,
        data.label_names,
        # Adam: every parameter's noise in the one buffer, the embedding table's (initialised first) included.
        # Plain SGD draws the table's rows from the same generator (LazyNoisyTable), later in its stream.
        TrainingRecipe(
            epochs=1,
            batch_size=200,
            seed=7,
            vocab_size=2000,
            optimizer="adam",
            dp=DPSettings(noise_multiplier=1.0, delta=1e-5),
        ),
    )
    correlations, offset = [], 0
    for initial in record["initial"]:
        noise = record["noise"][offset : offset + len(initial)]
        offset += len(initial)
        if len(initial) >= 10_000:
            correlations.append(abs(float(np.corrcoef(initial.numpy(), noise.numpy())[0, 1])))
    return max(correlations)


class _Entropy:
    """Stands in for the secrets module: every draw agrees on its first 32 bits (the low bits of randbits, the
    first 4 bytes of token_bytes) and differs from `tail`'s draws everywhere else."""

    def __init__(self, tail: int):
        self.tail = tail

    def randbits(self, k: int) -> int:
        return ((self.tail << 32) | 0x2468ACE1) & ((1 << k) - 1)

    def token_bytes(self, n: int) -> bytes:
        rest = np.random.default_rng(self.tail).bytes(max(0, n - 4))
        return (0x2468ACE1).to_bytes(4, "little")[:n] + rest


def noise_differs_beyond_32_bits_of_entropy() -> bool:
    """Whether two steps' noise differ when the operating-system entropy behind them agrees on 32 bits only. A
    stream seeded through 32 bits (torch's CPU manual_seed keeps the low 32 of any seed) is one of 2^32, which the
    threat model's adversary, who sees each update, can search."""
    draws = []
    for tail in (1, 2):
        with pytest.MonkeyPatch.context() as entropy:
            entropy.setattr(dpsgd, "secrets", _Entropy(tail))
            noise = training.GaussianNoise([torch.zeros(1000)], 1.0)
            noise.start_step()
        draws.append(noise.buffer.clone())
    return not torch.equal(*draws)


def same_seed_weights_differ() -> bool:
    data = small_data()
    recipe = TrainingRecipe(
        epochs=1, batch_size=200, seed=7, vocab_size=2000, dp=DPSettings(noise_multiplier=1.0, delta=1e-5)
    )
    a, b = (training.fit(data, data.label_names, recipe).classifier.model.state_dict() for _ in range(2))
    return any(not torch.equal(a[k], b[k]) for k in a)


def largest_one_example_change(max_norm: float = 0.1) -> float:
    """Sensitivity: how far one added example (a huge gradient on a fresh coordinate) moves the clipped sum
    of a batch; DP-SGD's accounting assumes at most max_norm."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6)).eval()
    ids = torch.randint(1, 40, (8, 9))
    targets = torch.randint(0, 4, (8,))
    mask = torch.ones_like(ids)
    sums = []
    for extra in (None, DiracRows(torch.tensor([0]), torch.tensor([3]), torch.tensor([1000.0]))):
        clipper = training.PerExampleClipper(model, max_norm)
        try:
            with clipper.capture(len(targets)):
                F.cross_entropy(model(ids, mask), targets, reduction="none").sum().backward()
            clipper.clip_and_accumulate(extra)
            sums.append(torch.cat([p.grad.flatten() for p in clipper.parameters]).clone())
        finally:
            for p in clipper.parameters:
                p.grad = None
            clipper.close()
    return float((sums[1] - sums[0]).norm())
