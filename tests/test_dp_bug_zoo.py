"""The bug zoo: DP-SGD variants broken the ways real implementations have been broken, each trained and
accounted as if it were correct. privaudit must catch every one in one run: with the white-box audit
(its bound above the theoretical epsilon, or its sampling check) where an audit can see the bug, and with
a direct check where a one-run audit cannot (see the README's table)."""

import dp_checks
import numpy as np
import pytest
import torch

from privaudit import training
from privaudit.dpsgd import GaussianNoise, PerExampleClipper, fresh_seed


class NoNoise(GaussianNoise):
    def __init__(self, parameters, std, device="cpu", seed=None):
        super().__init__(parameters, 0.0, device, seed)


class QuarterNoise(GaussianNoise):
    def __init__(self, parameters, std, device="cpu", seed=None):
        super().__init__(parameters, std / 4, device, seed)


class NoiseDrawnOnce(GaussianNoise):
    def start_step(self):
        super().start_step()
        if not hasattr(self, "first"):
            self.first = self.buffer.clone()
        self.buffer.copy_(self.first)


class NoiseFromInitSeed(GaussianNoise):
    def __init__(self, parameters, std, device="cpu", seed=None):
        super().__init__(parameters, std, device, seed=torch.initial_seed())  # the recorded --seed


class NoiseFrom32BitSeed(GaussianNoise):
    """Re-seeded every step from fresh entropy, but through torch's CPU manual_seed, which keeps 32 bits of it."""

    def start_step(self):
        self.generator.manual_seed(fresh_seed())
        self.buffer.normal_(0.0, self.std, generator=self.generator)
        self._expose_buffer()


class NoClipping(PerExampleClipper):
    def clip_scale(self, norms):
        return torch.ones_like(norms)


class ClipAfterSumming(PerExampleClipper):
    @torch.no_grad()
    def clip_and_accumulate(self, extra=None):
        plans, norms = self._plan()
        count = len(norms) + (len(extra) if extra is not None else 0)
        grads = [torch.zeros_like(p) for p in self.parameters]
        self._add_summed(plans, torch.ones(count), extra, grads)
        factor = min(1.0, self.max_grad_norm / (float(torch.sqrt(sum(g.pow(2).sum() for g in grads))) + 1e-6))
        for p, g in zip(self.parameters, grads):
            p.grad = g * factor if p.grad is None else p.grad.add_(g * factor)
        return norms


class ShuffledFixedBatches:
    """Every example exactly once per epoch, in batches of the expected size: not Poisson sampling."""

    def __init__(self, n, sample_rate, seed=None):
        self.n, self.size = n, max(1, round(sample_rate * n))
        self.rng = np.random.default_rng()
        self.pending = []

    def sample(self):
        if not self.pending:
            order = self.rng.permutation(self.n)
            self.pending = [order[i : i + self.size] for i in range(0, self.n, self.size)]
        return np.sort(self.pending.pop(0))


def caught_by_whitebox(monkeypatch):
    flags = dp_checks.whitebox_flags(*dp_checks.whitebox_run())
    return bool(flags), flags


BUGS = {
    # bug: (what replaces what in privaudit.training, how it is caught)
    "noise removed": ("GaussianNoise", NoNoise, caught_by_whitebox),
    "noise scaled by 1/4": ("GaussianNoise", QuarterNoise, caught_by_whitebox),
    "clipping skipped": ("PerExampleClipper", NoClipping, caught_by_whitebox),
    "noise drawn once and reused": ("GaussianNoise", NoiseDrawnOnce, caught_by_whitebox),
    "fixed-size shuffled batches accounted as Poisson": ("PoissonSampler", ShuffledFixedBatches, caught_by_whitebox),
    "clipping after summing": (
        "PerExampleClipper",
        ClipAfterSumming,
        lambda mp: (dp_checks.largest_one_example_change(0.1) > 0.1 * 1.01, "sensitivity"),
    ),
    "noise seeded from the initialisation seed": (
        "GaussianNoise",
        NoiseFromInitSeed,
        lambda mp: (abs(dp_checks.first_noise_correlation(mp)) > 0.5, "noise correlated with the initial weights"),
    ),
    "noise seeded through 32 bits of fresh entropy": (
        "GaussianNoise",
        NoiseFrom32BitSeed,
        lambda mp: (not dp_checks.noise_differs_beyond_32_bits_of_entropy(), "noise one of 2^32 streams"),
    ),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_bug_is_caught(bug, monkeypatch):
    name, broken, detect = BUGS[bug]
    monkeypatch.setattr(training, name, broken)
    caught, how = detect(monkeypatch)
    assert caught, f"{bug} was not caught ({how})"
