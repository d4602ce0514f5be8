"""White-box DP audit with gradient canaries, in the one training run that produces the model.

The strongest adversary DP-SGD's guarantee admits may add any example whose gradient is any vector,
and may see every noisy update (Nasr et al. 2023, "Tight auditing of differentially private machine
learning"; one run: Steinke, Nasr, Jagielski 2023; random-direction canaries: Andrew et al. 2024).
privaudit trains the model it audits, so it can be that adversary:

- m **Dirac canaries**: coordinate j_i of the model's parameters (chosen at random among all trainable
  coordinates), whose gradient is M e_{j_i} with M = 10 C: a correct DP-SGD must clip it to C;
- each canary is in the training set with probability 1/2 (secret, from operating-system entropy), and
  an included canary is Poisson-sampled by the trainer's own sampler like any example, then clipped by
  its own clipper: the audit sees the implementation's sampling and clipping, not a re-implementation;
- after every step the auditor reads the privatised gradient at each canary's coordinate,
  x_t = g_t[j] E / C (E the expected batch size): 1 for a sampled canary, plus noise of std sigma and the
  real examples' small contribution to that coordinate.

Scores (higher = "included"):
- `steps` (every step observed): the log-likelihood ratio of the Poisson-subsampled Gaussian
  mechanism that the accountant assumes, sum_t log(1 - q + q exp((x_t - 1/2) / sigma^2)): the most
  powerful test against that mechanism (Neyman-Pearson);
- `steps-range`: max_t x_t - min_t x_t: noise that does not change between steps (a reused draw)
  leaves a sampled canary's unit steps in plain sight;
- `final` (final weights only): -(theta_T[j] - theta_0[j]).
The one-run analyses (onerun.py) turn each score into epsilon lower bounds; the white-box bound is the
best over the every-step scores, Bonferroni-corrected over them.

Not an adversary's view but the trainer's own book-keeping: a **sampling check** compares how often
each included canary was sampled with Binomial(T, q). Fixed-size shuffled batches (every example
exactly once per epoch) pass for Poisson sampling in no one-run bound, but fail this check at once.

For a training loop other than privaudit's (e.g. Opacus), `attach_to_opacus` inserts the same canaries
through Opacus's own per-sample gradients and clipping; sampling them is then the audit's own job.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.stats import chi2

from privaudit.dpsgd import DiracRows

from .onerun import OneRunAudit, one_run_audit

CANARY_MAGNITUDE = 10.0  # the canary gradient's norm, in units of the clipping norm C
STEP_SCORES = ("steps", "steps-range")


@dataclass
class SamplingCheck:
    """Dispersion of the included canaries' sampling counts against Binomial(steps, q)."""

    mean_count: float
    expected_count: float
    dispersion: float   # sum (c - Tq)^2 / (Tq(1-q)) / k: about 1 under Poisson sampling, 0 for fixed-size batches
    p_value: float      # two-sided, chi-square with k degrees of freedom
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WhiteBoxAudit:
    canaries: int
    steps: int
    confidence: float
    delta: float
    every_step: OneRunAudit          # the best every-step score (Bonferroni over STEP_SCORES)
    every_step_score: str
    final_weights: OneRunAudit
    sampling: SamplingCheck
    by_score: dict = field(default_factory=dict)

    @property
    def epsilon(self) -> float:
        return self.every_step.epsilon

    def to_dict(self) -> dict:
        return {"canaries": self.canaries, "steps": self.steps, "confidence": self.confidence, "delta": self.delta,
                "epsilon": self.epsilon, "every_step_score": self.every_step_score,
                "every_step": self.every_step.to_dict(), "final_weights": self.final_weights.to_dict(),
                "sampling": self.sampling.to_dict(), "by_score": {k: v.to_dict() for k, v in self.by_score.items()}}


class GradientCanaries:
    """Dirac gradient canaries in a DP-SGD run over `parameters` (the clipper's, in its order).

    Per step, in a loop that privaudit does not own::

        rows = canaries.rows(canaries.sample())   # sampled included canaries, as per-example gradients
        ... clip them with the batch, add noise, divide by the expected batch size ...
        canaries.observe()                        # after the privatised gradient is in p.grad
    and once at the end `canaries.finish(delta)`.
    """

    def __init__(self, parameters: list[torch.Tensor], count: int, max_grad_norm: float, noise_multiplier: float,
                 sample_rate: float, expected_batch_size: float, seed: int | None = None):
        if count < 2:
            raise ValueError("a one-run audit needs at least 2 gradient canaries")
        self.parameters = list(parameters)
        sizes = np.array([p.numel() for p in self.parameters])
        if count > sizes.sum():
            raise ValueError(f"{count} gradient canaries need as many coordinates; the model has {sizes.sum()}")
        self.rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
        offsets = np.r_[0, np.cumsum(sizes)]
        flat = np.sort(self.rng.choice(int(sizes.sum()), size=count, replace=False))
        self.param_index = np.searchsorted(offsets, flat, side="right") - 1
        self.local_index = flat - offsets[self.param_index]
        self.included = self.rng.random(count) < 0.5
        self.included_ids = np.flatnonzero(self.included)
        self.max_grad_norm = max_grad_norm
        self.sigma = noise_multiplier
        self.sample_rate = sample_rate
        self.expected_batch_size = expected_batch_size
        self.initial = self._read(lambda p: p.detach())
        self.llr = np.zeros(count)
        self.x_max = np.full(count, -np.inf)
        self.x_min = np.full(count, np.inf)
        self.sampled_counts = np.zeros(count, dtype=np.int64)
        self.steps = 0

    @property
    def count(self) -> int:
        return len(self.included)

    @property
    def n_included(self) -> int:
        return len(self.included_ids)

    def sample(self) -> np.ndarray:
        """Poisson-sample the included canaries (for loops whose own sampler does not see them)."""
        return np.flatnonzero(self.rng.random(self.n_included) < self.sample_rate)

    def rows(self, sampled: np.ndarray) -> DiracRows:
        """The sampled canaries (positions among the included ones) as per-example gradients of norm M C."""
        ids = self.included_ids[np.asarray(sampled, dtype=np.int64)]
        np.add.at(self.sampled_counts, ids, 1)
        return DiracRows(torch.as_tensor(self.param_index[ids]), torch.as_tensor(self.local_index[ids]),
                         torch.full((len(ids),), CANARY_MAGNITUDE * self.max_grad_norm))

    def observe(self) -> None:
        """Read the privatised gradient at every canary's coordinate (call after noise and scaling)."""
        x = self._read(lambda p: p.grad) * (self.expected_batch_size / self.max_grad_norm)
        with np.errstate(over="ignore"):
            self.llr += np.log1p(self.sample_rate * np.expm1((x - 0.5) / self.sigma**2))
        self.x_max = np.maximum(self.x_max, x)
        self.x_min = np.minimum(self.x_min, x)
        self.steps += 1

    def _read(self, tensor_of) -> np.ndarray:
        out = np.zeros(self.count)
        for k in np.unique(self.param_index):
            rows = np.flatnonzero(self.param_index == k)
            values = tensor_of(self.parameters[k]).reshape(-1)[torch.as_tensor(self.local_index[rows])]
            out[rows] = values.double().cpu().numpy()
        return out

    def finish(self, delta: float, confidence: float = 0.95) -> WhiteBoxAudit:
        final = -(self._read(lambda p: p.detach()) - self.initial)
        # A canary whose score is not finite (an update that overflowed) is as "included" as it gets.
        scores = {"steps": self.llr, "steps-range": self.x_max - self.x_min}
        scores = {k: np.nan_to_num(v, nan=np.inf, posinf=np.finfo(float).max) for k, v in scores.items()}
        each = 1 - (1 - confidence) / len(STEP_SCORES)
        by_score = {name: one_run_audit(s, self.included, delta, each) for name, s in scores.items()}
        best = max(STEP_SCORES, key=lambda n: (by_score[n].steinke.epsilon, by_score[n].gdp.epsilon))
        return WhiteBoxAudit(
            canaries=self.count, steps=self.steps, confidence=confidence, delta=delta,
            every_step=by_score[best], every_step_score=best,
            final_weights=one_run_audit(np.nan_to_num(final), self.included, delta, confidence),
            sampling=self.sampling_check(), by_score=by_score,
        )

    def sampling_check(self, level: float = 1e-3) -> SamplingCheck:
        counts = self.sampled_counts[self.included_ids]
        k = len(counts)
        expected = self.steps * self.sample_rate
        variance = expected * (1 - self.sample_rate)
        if k == 0 or variance <= 0:
            return SamplingCheck(float("nan"), expected, float("nan"), 1.0, True)
        statistic = float(((counts - expected) ** 2).sum() / variance)
        p_value = float(min(1.0, 2 * min(chi2.cdf(statistic, k), chi2.sf(statistic, k))))
        return SamplingCheck(float(counts.mean()), expected, statistic / k, p_value, p_value >= level)


def attach_to_opacus(optimizer, canaries: GradientCanaries) -> None:
    """Insert `canaries` into an Opacus DPOptimizer's steps: each step, the sampled canaries are appended
    to the per-sample gradients before Opacus clips them, and observed after Opacus adds noise and
    scales. `canaries` must be built over `optimizer.params` in that order."""
    clip_and_accumulate = optimizer.clip_and_accumulate
    pre_step = optimizer.pre_step

    def clip_with_canaries():
        rows = canaries.rows(canaries.sample())
        for k, p in enumerate(optimizer.params):
            mine = (rows.param == k).nonzero().flatten()
            extra = torch.zeros((len(rows), p.numel()), dtype=p.grad_sample.dtype, device=p.grad_sample.device)
            extra[mine, rows.index[mine]] = rows.magnitude[mine].to(extra)
            p.grad_sample = torch.cat([p.grad_sample, extra.view(len(rows), *p.shape)])
        clip_and_accumulate()

    def observed_pre_step(*args, **kwargs):
        proceed = pre_step(*args, **kwargs)
        if proceed:
            canaries.observe()
        return proceed

    optimizer.clip_and_accumulate = clip_with_canaries
    optimizer.pre_step = observed_pre_step


def gradient_canary_count(parameters, requested: int) -> int:
    """`requested`, or fewer for a model with fewer coordinates than that (a canary per coordinate)."""
    return int(min(requested, max(2, math.floor(sum(p.numel() for p in parameters) / 2))))
