"""Auditing DP in one training run: epsilon lower bounds from m canaries each included with probability 1/2.

The auditor ranks the m canaries by a membership score, guesses "in" for the k highest and "out" for the
k lowest (abstaining on the rest), and counts the correct guesses v out of r = 2k. Two analyses turn
(m, r, v) into a lower bound, reported side by side:

- **Steinke, Nasr, Jagielski (NeurIPS 2023), "Privacy auditing with one (1) training run".** Under
  (epsilon, delta)-DP, P[W >= v] <= P[W' >= v] + 2 m delta alpha_v, with W' ~ Binomial(r, e^eps/(1+e^eps))
  and alpha_v = max_{i=1..v} P[v - i <= W' < v] / i (their Theorem 5.2 / Appendix D). Epsilon is
  rejected when that p-value is below beta; the bound is the largest rejected epsilon. Assumption-free:
  valid for any (epsilon, delta)-DP mechanism, exact for randomized response when delta = 0.
- **Mahloujifar, Melis, Chaudhuri (ICML 2025), "Auditing f-differential privacy in one run".** The same
  experiment tested against a whole trade-off curve instead of one (epsilon, delta) point, here the
  Gaussian family (mu-GDP, Dong, Roth, Su 2022): the largest mu rejected at level beta, reported as mu and
  as the epsilon of mu-GDP at the audit's delta. Tighter when the mechanism's trade-off curve is
  Gaussian-shaped (DP-SGD over many steps is, by the central limit theorem of Dong et al.), but it tests
  that shape: it is not a bound on the (epsilon, delta) of an arbitrary mechanism.

Several guess counts k are tried; each analysis applies a Bonferroni correction over them, so each
reported bound holds at the stated confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from scipy.stats import binom, norm

# Fractions of the canaries guessed on each side (k = fraction * m / 2): small k for strong signals and
# many canaries, large k for weak signals. Each analysis pays a Bonferroni correction over the distinct k
# of at least MIN_GUESSES (fewer guesses prove little and would only cost correction).
GUESS_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)
MIN_GUESSES = 10
EPSILON_CEILING = 50.0


def steinke_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least v of r guesses right] under (epsilon, delta)-DP, by the paper's bound with its delta term."""
    if v <= 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, q))
    if delta == 0:
        return min(1.0, tail)
    below = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[W' = v - i] for i = 1..v
    alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, tail + 2 * m * delta * alpha)


def steinke_epsilon(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """The largest epsilon whose p-value for (m, r, v) is below beta (0 if even epsilon = 0 is not rejected)."""
    if r == 0 or steinke_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    if steinke_p_value(m, r, v, EPSILON_CEILING, delta) < beta:
        return EPSILON_CEILING
    return float(brentq(lambda e: steinke_p_value(m, r, v, e, delta) - beta, 0.0, EPSILON_CEILING, xtol=1e-6))


def gdp_consistent(mu: float, m: int, r: int, v: int, beta: float) -> bool:
    """Whether v right of r guesses on m canaries is consistent (at level beta) with a mu-GDP mechanism.

    The recursion of Mahloujifar et al. (their Algorithm 2 with abstentions, alphabet of 2 for membership):
    starting from the mass beta r / m split between the v right and r - v wrong guesses, it walks down
    the number of right guesses, each step spending what the trade-off curve f_mu allows; the observation
    is consistent when the total mass needed stays within r / m. Here f_mu's inverse blow-up is
    x -> Phi(Phi^-1(x) - mu).
    """
    if v == 0:
        return True
    scaled = beta * r / m
    r_mass, h_mass = scaled * v / r, scaled * (r - v) / r
    for i in range(v - 1, -1, -1):
        h_next = max(h_mass, float(ndtr(ndtri(min(r_mass, 1.0)) - mu)) if r_mass > 0 else 0.0)
        r_mass = r_mass + (i / (r - i)) * (h_next - h_mass)
        h_mass = h_next
    return r_mass + h_mass <= r / m


def gdp_mu(m: int, r: int, v: int, beta: float, mu_max: float = 20.0) -> float:
    """The largest mu rejected by (m, r, v) at level beta (bisection: rejection is monotone in mu)."""
    if r == 0 or gdp_consistent(0.0, m, r, v, beta):
        return 0.0
    if not gdp_consistent(mu_max, m, r, v, beta):
        return mu_max
    lo, hi = 0.0, mu_max  # lo rejected, hi consistent
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        if gdp_consistent(mid, m, r, v, beta):
            hi = mid
        else:
            lo = mid
    return lo


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(epsilon) of mu-GDP (Dong, Roth, Su 2022, Corollary 2.13)."""
    return float(norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon of mu-GDP at delta (0 when mu-GDP already holds at epsilon 0)."""
    if mu <= 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(mu, hi) > delta:
        hi *= 2
    return float(brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-6))


@dataclass
class OneRunBound:
    """One analysis's lower bound, with the guesses it was computed from."""

    method: str  # "steinke" or "gdp"
    epsilon: float  # lower bound on epsilon at `delta`, at `confidence`
    guesses: int  # r
    correct: int  # v
    mu: float | None = None  # for "gdp": the rejected mu


@dataclass
class OneRunAudit:
    canaries: int
    included: int
    confidence: float
    delta: float
    steinke: OneRunBound
    gdp: OneRunBound

    @property
    def epsilon(self) -> float:
        """The assumption-free bound (Steinke et al.): what the headline and the gate use."""
        return self.steinke.epsilon

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilon"] = self.epsilon
        # Kept for readers of the first results schema: the headline bound's guesses.
        d["guesses"], d["correct"] = self.steinke.guesses, self.steinke.correct
        return d


def guess_counts(scores: np.ndarray, included: np.ndarray, fractions=GUESS_FRACTIONS) -> list[tuple[int, int]]:
    """(r, v) for each guess fraction: top k guessed in, bottom k guessed out."""
    m = len(scores)
    order = np.argsort(-scores, kind="mergesort")
    ks = sorted({min(m // 2, max(1, int(round(fraction * m / 2)))) for fraction in fractions} - {0})
    ks = [k for k in ks if k >= MIN_GUESSES] or ks[-1:]
    return [(2 * k, int(included[order[:k]].sum() + (~included[order[-k:]]).sum())) for k in ks]


def one_run_audit(scores, included, delta: float, confidence: float = 0.95, fractions=GUESS_FRACTIONS) -> OneRunAudit:
    """Both one-run bounds from per-canary membership scores (higher = more likely included)."""
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included, dtype=bool)
    m = len(scores)
    counts = guess_counts(scores, included, fractions) if m >= 2 else []
    beta = (1 - confidence) / max(1, len(counts))
    steinke = OneRunBound("steinke", 0.0, 0, 0)
    gdp = OneRunBound("gdp", 0.0, 0, 0, 0.0)
    for r, v in counts:
        eps = steinke_epsilon(m, r, v, delta, beta)
        if eps > steinke.epsilon or steinke.guesses == 0:
            steinke = OneRunBound("steinke", eps, r, v)
        mu = gdp_mu(m, r, v, beta)
        if mu > (gdp.mu or 0.0) or gdp.guesses == 0:
            gdp = OneRunBound("gdp", gdp_epsilon(mu, delta), r, v, mu)
    return OneRunAudit(m, int(included.sum()), confidence, delta, steinke, gdp)
