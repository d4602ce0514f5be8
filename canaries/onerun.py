"""Auditing DP in one training run (Steinke, Nasr, Jagielski, NeurIPS 2023).

m audit canaries are each included in training independently with probability 1/2. After training,
the auditor ranks them by a membership score, guesses "in" for the k highest and "out" for the k
lowest, and counts the correct guesses W out of r = 2k. Under (epsilon, delta)-DP, W is stochastically
dominated by Binomial(r, e^eps / (1 + e^eps)) up to a delta term, so any epsilon for which
P[Binomial(r, e^eps / (1 + e^eps)) >= W] + 2 m delta <= beta is rejected at level beta; the lower
bound is the largest such epsilon. (2 m delta is a simple, conservative form of the paper's delta
term.) A few values of k are tried, with a Bonferroni correction, so the bound holds at 95% overall.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom

GUESS_FRACTIONS = (0.1, 0.25, 0.5)  # of the canaries guessed on each side


def epsilon_lower_bound(correct: int, guesses: int, m: int, delta: float, beta: float) -> float:
    """The largest epsilon rejected by W = `correct` of `guesses` (0 if none is)."""
    budget = beta - 2 * m * delta
    if budget <= 0 or guesses == 0:
        return 0.0

    def excess(eps):  # > 0 means this epsilon is consistent with the observation (not rejected)
        p = math.exp(eps) / (1 + math.exp(eps))
        return binom.sf(correct - 1, guesses, p) - budget

    if excess(0.0) > 0:
        return 0.0
    if excess(50.0) <= 0:
        return 50.0
    return float(brentq(excess, 0.0, 50.0, xtol=1e-6))


def one_run_audit(scores: np.ndarray, included: np.ndarray, delta: float, confidence: float = 0.95) -> dict:
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included, dtype=bool)
    m = len(scores)
    order = np.argsort(-scores, kind="mergesort")
    beta = (1 - confidence) / len(GUESS_FRACTIONS)
    best = {"epsilon": 0.0, "guesses": 0, "correct": 0}
    for fraction in GUESS_FRACTIONS:
        k = max(1, int(round(fraction * m / 2)))
        correct = int(included[order[:k]].sum() + (~included[order[-k:]]).sum())
        eps = epsilon_lower_bound(correct, 2 * k, m, delta, beta)
        if eps > best["epsilon"] or best["guesses"] == 0:
            best = {"epsilon": eps, "guesses": 2 * k, "correct": correct}
    return {**best, "canaries": m, "included": int(included.sum()), "confidence": confidence, "delta": delta}
