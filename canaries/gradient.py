"""White-box DP audit with gradient canaries, in the one training run that produces the model.

The strongest adversary DP-SGD's guarantee admits may add any example whose gradient is any vector,
and may see every noisy update (Nasr et al. 2023, "Tight auditing of differentially private machine
learning"; one run: Steinke, Nasr, Jagielski 2023; random-direction canaries: Andrew et al. 2024).
privaudit trains the model it audits, so it can be that adversary:

- m **Dirac canaries**: coordinate j_i of the model's parameters, whose gradient is M e_{j_i} with
  M = 10 C: a correct DP-SGD must clip it to C. The adversary of DP's definition knows every other
  training example, so it may put its canaries where no real example's gradient ever lands (Nasr et
  al. pick the least-updated coordinates): privaudit's trainer offers the embedding rows of token ids
  that no training text uses, and the rest are drawn at random among all trainable coordinates;
- each canary is in the training set with probability 1/2 (secret, from operating-system entropy), and
  an included canary is Poisson-sampled by the trainer's own sampler like any example, then clipped by
  its own clipper: the audit sees the implementation's sampling and clipping, not a re-implementation;
- after every step the auditor reads the privatised gradient at each canary's coordinate,
  x_t = g_t[j] E / C (E the expected batch size): 1 for a sampled canary, plus noise of std sigma and the
  real examples' small contribution to that coordinate.

Scores (higher = "included"), each turned into epsilon lower bounds by the one-run analyses (onerun.py):
- every step observed: the log-likelihood ratio of the Poisson-subsampled Gaussian mechanism,
  sum_t log(1 - q + q exp((x_t - 1/2) / s^2)), the most powerful test against that mechanism
  (Neyman-Pearson). s is the noise the adversary sees, measured at the first step (1.4826 x the median
  absolute deviation over all canary coordinates): sigma for a correct DP-SGD; for one whose noise is
  smaller than accounted, the test of the mechanism that actually ran;
- final weights only: -(theta_T[j] - theta_0[j]).

Two implementation checks complete the bound, each a property the accountant assumes:
- **noise freshness** (what the adversary sees): the correlation between consecutive steps' observed
  noise, about 0 for fresh draws, about 1 for a draw reused across steps;
- **sampling** (the trainer's own book-keeping): how often each included canary was sampled, against
  Binomial(T, q). Fixed-size shuffled batches (every example exactly once per epoch) pass for Poisson
  sampling in no one-run bound, but fail this check at once.

For a training loop other than privaudit's (e.g. Opacus), `attach_to_opacus` inserts the same canaries
through Opacus's own per-sample gradients and clipping; sampling them is then the audit's own job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import norm

from privaudit.dpsgd import DiracRows

from .onerun import OneRunAudit, one_run_audit

CANARY_MAGNITUDE = 10.0  # the canary gradient's norm, in units of the clipping norm C
# Fresh Gaussian noise gives consecutive steps' observations a correlation of about 0 (plus what real
# gradients on non-quiet coordinates share between steps); a reused draw gives about 1.
FRESHNESS_LIMIT = 0.5


@dataclass
class SamplingCheck:
    """Dispersion of the included canaries' sampling counts against Binomial(steps, q)."""

    mean_count: float
    expected_count: float
    dispersion: float  # sum (c - Tq)^2 / (Tq(1-q)) / k: about 1 under Poisson sampling, 0 for fixed-size batches
    p_value: float  # two-sided, from the statistic's exact null mean and variance (normal approximation)
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NoiseCheck:
    """Correlation of the observed noise between consecutive steps, over every canary coordinate."""

    correlation: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WhiteBoxAudit:
    canaries: int
    steps: int
    observed_noise: float | None  # the noise multiplier the adversary measured
    confidence: float
    delta: float
    every_step: OneRunAudit
    final_weights: OneRunAudit
    sampling: SamplingCheck
    noise: NoiseCheck

    @property
    def epsilon(self) -> float:
        return self.every_step.epsilon

    def failures(self, theoretical_epsilon: float) -> list[str]:
        """What this audit says is wrong with the DP-SGD that ran (empty when nothing is)."""
        bound = (
            [f"white-box bound {self.epsilon:.2f} above the theoretical epsilon {theoretical_epsilon:.2f}"]
            if self.epsilon > theoretical_epsilon
            else []
        )
        return bound + self.check_failures()

    def check_failures(self) -> list[str]:
        """The implementation checks that failed (the sampling and the noise freshness)."""
        out = []
        if not self.sampling.passed:
            out.append(
                f"sampling check failed: canaries were sampled {self.sampling.dispersion:.2f}x as variably as "
                f"Poisson sampling at the accounted rate (p = {self.sampling.p_value:.1e})"
            )
        if not self.noise.passed:
            out.append(
                f"noise check failed: consecutive steps' noise correlates {self.noise.correlation:.2f} "
                f"(fresh noise: about 0)"
            )
        return out

    def to_dict(self) -> dict:
        return {
            "canaries": self.canaries,
            "steps": self.steps,
            "observed_noise": self.observed_noise,
            "confidence": self.confidence,
            "delta": self.delta,
            "epsilon": self.epsilon,
            "every_step": self.every_step.to_dict(),
            "final_weights": self.final_weights.to_dict(),
            "sampling": self.sampling.to_dict(),
            "noise": self.noise.to_dict(),
        }


class GradientCanaries:
    """Dirac gradient canaries in a DP-SGD run over `parameters` (the clipper's, in its order).

    Per step, in a loop that privaudit does not own::

        rows = canaries.rows(canaries.sample())   # sampled included canaries, as per-example gradients
        ... clip them with the batch, add noise, divide by the expected batch size ...
        canaries.observe()                        # after the privatised gradient is in p.grad
    and once at the end `canaries.finish(delta)`.
    """

    def __init__(
        self,
        parameters: list[torch.Tensor],
        count: int,
        max_grad_norm: float,
        sample_rate: float,
        expected_batch_size: float,
        seed: int | None = None,
        quiet: np.ndarray | None = None,
    ):
        """`quiet`: positions in the concatenation of `parameters` that no real example's gradient touches;
        canaries go there first (any choice made without looking at the inclusion bits keeps the audit valid)."""
        if count < 2:
            raise ValueError("a one-run audit needs at least 2 gradient canaries")
        self.parameters = list(parameters)
        sizes = np.array([p.numel() for p in self.parameters])
        if count > sizes.sum():
            raise ValueError(f"{count} gradient canaries need as many coordinates; the model has {sizes.sum()}")
        self.rng = np.random.default_rng(seed)  # None: seeded from operating-system entropy
        offsets = np.r_[0, np.cumsum(sizes)]
        quiet = np.unique(np.asarray(quiet if quiet is not None else [], dtype=np.int64))
        chosen = self.rng.choice(quiet, size=min(count, len(quiet)), replace=False)
        if len(chosen) < count:
            rest = np.setdiff1d(np.arange(int(sizes.sum())), chosen, assume_unique=True)
            chosen = np.r_[chosen, self.rng.choice(rest, size=count - len(chosen), replace=False)]
        flat = np.sort(chosen)
        self.param_index = np.searchsorted(offsets, flat, side="right") - 1
        self.local_index = flat - offsets[self.param_index]
        # Per parameter: which canaries sit in it and where, computed once (read at every step).
        self._groups = [
            (k, rows, torch.as_tensor(self.local_index[rows], device=self.parameters[k].device))
            for k in np.unique(self.param_index)
            for rows in [np.flatnonzero(self.param_index == k)]
        ]
        self.included = self.rng.random(count) < 0.5
        self.included_ids = np.flatnonzero(self.included)
        self.max_grad_norm = max_grad_norm
        self.sample_rate = sample_rate
        self.expected_batch_size = expected_batch_size
        self.initial = self._read(lambda p: p.detach())
        self.llr = np.zeros(count)
        self._previous: np.ndarray | None = None
        self._pairs = np.zeros(6)  # n, sum x, sum y, sum x^2, sum y^2, sum xy over consecutive steps
        self.sampled_counts = np.zeros(count, dtype=np.int64)
        self.observed_sigma: float | None = None
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
        return DiracRows(
            torch.as_tensor(self.param_index[ids]),
            torch.as_tensor(self.local_index[ids]),
            torch.full((len(ids),), CANARY_MAGNITUDE * self.max_grad_norm),
        )

    def observe(self) -> None:
        """Read the privatised gradient at every canary's coordinate (call after noise and scaling)."""
        x = self._read(lambda p: p.grad) * (self.expected_batch_size / self.max_grad_norm)
        if self.observed_sigma is None:
            mad = float(np.median(np.abs(x - np.median(x))))
            self.observed_sigma = max(1.4826 * mad, 1e-6)
        with np.errstate(over="ignore"):
            self.llr += np.log1p(self.sample_rate * np.expm1((x - 0.5) / self.observed_sigma**2))
        if self._previous is not None:
            y = self._previous
            self._pairs += (len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
        self._previous = x
        self.steps += 1

    def _read(self, tensor_of) -> np.ndarray:
        out = np.zeros(self.count)
        for k, rows, index in self._groups:
            out[rows] = tensor_of(self.parameters[k]).reshape(-1)[index].double().cpu().numpy()
        return out

    def finish(self, delta: float, confidence: float = 0.95) -> WhiteBoxAudit:
        final = -(self._read(lambda p: p.detach()) - self.initial)
        # A score that overflowed (an update far larger than any correct DP-SGD makes) is as "included" as it gets.
        every_step = np.nan_to_num(self.llr, nan=np.inf, posinf=np.finfo(float).max)
        return WhiteBoxAudit(
            canaries=self.count,
            steps=self.steps,
            observed_noise=self.observed_sigma,
            confidence=confidence,
            delta=delta,
            every_step=one_run_audit(every_step, self.included, delta, confidence),
            final_weights=one_run_audit(np.nan_to_num(final), self.included, delta, confidence),
            sampling=self.sampling_check(),
            noise=self.noise_check(),
        )

    def noise_check(self) -> NoiseCheck:
        n, sx, sy, sxx, syy, sxy = self._pairs
        if n < 2:
            return NoiseCheck(float("nan"), True)
        cov = sxy / n - (sx / n) * (sy / n)
        var = (sxx / n - (sx / n) ** 2) * (syy / n - (sy / n) ** 2)
        correlation = float(cov / np.sqrt(var)) if var > 0 else 1.0  # no variation at all: nothing is fresh
        return NoiseCheck(correlation, correlation <= FRESHNESS_LIMIT)

    def sampling_check(self, level: float = 1e-6) -> SamplingCheck:
        """Poisson sampling makes each included canary's count c_i an independent Binomial(T, q): the
        statistic D = sum (c_i - Tq)^2 / (Tq(1-q)) then has mean k and variance k (kurtosis - 1), with the
        binomial's kurtosis 3 + (1 - 6q(1-q)) / (Tq(1-q)) (a chi-square's 2k would understate it for small
        Tq). Two-sided normal test on D; fixed-size shuffled batches give D = 0, tens of SDs away."""
        counts = self.sampled_counts[self.included_ids]
        k = len(counts)
        expected = self.steps * self.sample_rate
        variance = expected * (1 - self.sample_rate)
        if k < 30 or variance <= 0:  # too few canaries or steps for the normal approximation: no verdict
            return SamplingCheck(float(counts.mean()) if k else float("nan"), expected, float("nan"), 1.0, True)
        statistic = float(((counts - expected) ** 2).sum() / variance)
        excess_kurtosis = (1 - 6 * self.sample_rate * (1 - self.sample_rate)) / variance
        z = (statistic - k) / np.sqrt(k * (2 + excess_kurtosis))
        p_value = float(2 * norm.sf(abs(z)))
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
            samples = optimizer._get_flat_grad_sample(p)
            mine = (rows.param == k).nonzero().flatten()
            extra = torch.zeros((len(rows), p.numel()), dtype=samples.dtype, device=samples.device)
            extra[mine, rows.index[mine]] = rows.magnitude[mine].to(extra)
            p.grad_sample = torch.cat([samples, extra.view(len(rows), *p.shape)])
        clip_and_accumulate()

    def observed_pre_step(*args, **kwargs):
        proceed = pre_step(*args, **kwargs)
        if proceed:
            canaries.observe()
        return proceed

    optimizer.clip_and_accumulate = clip_with_canaries
    optimizer.pre_step = observed_pre_step


def unused_embedding_coordinates(
    parameters: list[torch.Tensor], embedding: torch.Tensor, used_ids: set[int]
) -> np.ndarray:
    """Positions, in the concatenation of `parameters`, of the embedding rows whose ids are not in
    `used_ids`: no training text looks them up, so no real gradient ever reaches them."""
    offset = 0
    for p in parameters:
        if p is embedding:
            rows = np.setdiff1d(np.arange(p.shape[0]), np.fromiter(used_ids, dtype=np.int64))
            return (offset + rows[:, None] * p.shape[1] + np.arange(p.shape[1])[None, :]).reshape(-1)
        offset += p.numel()
    return np.zeros(0, dtype=np.int64)
