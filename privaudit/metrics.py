"""Metrics of a membership-inference attack: pure functions over scores and labels.

Convention everywhere: a higher score means "more likely a member"; label 1 is a member, 0 a
non-member. Rates estimated from finite samples come with Clopper-Pearson intervals, and a figure that
the number of non-members cannot support (TPR at an FPR below 1/#non-members) is flagged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

FPR_GRID = (0.001, 0.01, 0.1)
# How the threshold of an empirical-epsilon bound is chosen (empirical_epsilon); both are reported.
EPSILON_METHODS = ("split", "bonferroni")


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError("scores and labels must be 1-D arrays of the same length")
    if labels.all() or not labels.any():
        raise ValueError("need both members and non-members")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores, labels


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for the rule "member if score >= threshold", thresholds descending.

    Starts at (0, 0) with threshold +inf and ends at (1, 1).
    """
    scores, labels = _check(scores, labels)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_group = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(y)[last_of_group]
    fp = np.cumsum(~y)[last_of_group]
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, s[last_of_group]]


def auc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a member > score of a non-member), ties counted half."""
    scores, labels = _check(scores, labels)
    ranks = _midranks(scores)
    n1, n0 = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _midranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(x)])
    mid = first + (counts + 1) / 2.0  # 1-based midrank of each group
    ranks = np.empty(len(x))
    ranks[order] = mid[group]
    return ranks


def auc_bootstrap_ci(
    scores, labels, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0, chunk: int = 100
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, members and non-members resampled separately.

    Vectorised: the scores are sorted once; each replicate is a vector of multinomial resampling
    counts, and its AUC a weighted sum over the sorted order, so 1000 replicates of 10^4 scores take
    about a second.
    """
    scores, labels = _check(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    starts = np.r_[True, s[1:] != s[:-1]]
    first = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    group_end = np.r_[first[1:], len(s)][group]  # one past the last index of each score's tie group
    group_start = first[group]
    members, nonmembers = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        w_nonmember = np.zeros((reps, len(s)))
        w_nonmember[:, nonmembers] = rng.multinomial(
            len(nonmembers), np.full(len(nonmembers), 1 / len(nonmembers)), reps
        )
        w_member = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), reps)
        cum = np.concatenate([np.zeros((reps, 1)), np.cumsum(w_nonmember, axis=1)], axis=1)
        below = cum[:, group_start[members]]
        tied = cum[:, group_end[members]] - below
        values.append((w_member * (below + 0.5 * tied)).sum(1) / (len(members) * len(nonmembers)))
    aucs = np.concatenate(values)
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(aucs, tail)), float(np.percentile(aucs, 100 - tail))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion k/n."""
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


@dataclass
class TprAtFpr:
    fpr: float
    tpr: float
    ci: tuple[float, float]
    threshold: float
    too_few_nonmembers: bool

    def to_dict(self) -> dict:
        return asdict(self)


def tpr_at_fpr(scores, labels, target_fpr: float, confidence: float = 0.95) -> TprAtFpr:
    """The best TPR among thresholds whose FPR is at most target_fpr, with a Clopper-Pearson interval.

    Flagged when target_fpr < 1/#non-members: no threshold can then show that FPR, only 0.
    """
    scores, labels = _check(scores, labels)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    best = ok[np.argmax(tpr[ok])]
    n1 = int(labels.sum())
    k = int(round(tpr[best] * n1))
    return TprAtFpr(
        target_fpr,
        float(tpr[best]),
        clopper_pearson(k, n1, confidence),
        float(thresholds[best]),
        bool(target_fpr < 1.0 / (~labels).sum()),
    )


def balanced_accuracy(scores, labels) -> float:
    """The best balanced accuracy (TPR + TNR) / 2 over all thresholds (descriptive, optimistic)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.max((tpr + 1 - fpr) / 2))


@dataclass
class EpsilonBound:
    """A lower bound on epsilon that holds with the stated confidence."""

    epsilon: float
    confidence: float
    method: str  # "split" or "bonferroni"
    threshold: float | None
    fpr_upper: float | None
    fnr_upper: float | None
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict:
        return asdict(self)


def _epsilon_from_rates(fpr_hi: np.ndarray, fnr_hi: np.ndarray, delta: float) -> np.ndarray:
    """(eps, delta)-DP forces FPR + e^eps FNR >= 1 - delta and FNR + e^eps FPR >= 1 - delta
    (Kairouz et al. 2015; as used for auditing by Jagielski et al. 2020)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1 - delta - fnr_hi, 0) / fpr_hi)
        b = np.log(np.maximum(1 - delta - fpr_hi, 0) / fnr_hi)
    eps = np.fmax(np.nan_to_num(a, nan=-np.inf, posinf=np.inf), np.nan_to_num(b, nan=-np.inf, posinf=np.inf))
    return np.maximum(eps, 0.0)


def _bounds_at(scores, labels, thresholds, delta, confidence_each) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper bounds on FPR and FNR (each at confidence_each) and the epsilon bound, per threshold."""
    members, nonmembers = np.sort(scores[labels]), np.sort(scores[~labels])
    n1, n0 = len(members), len(nonmembers)
    fp = n0 - np.searchsorted(nonmembers, thresholds, side="left")  # non-members with score >= t
    fn = np.searchsorted(members, thresholds, side="left")  # members with score < t
    fpr_hi = np.where(fp == n0, 1.0, beta.ppf(confidence_each, fp + 1, np.maximum(n0 - fp, 1)))
    fnr_hi = np.where(fn == n1, 1.0, beta.ppf(confidence_each, fn + 1, np.maximum(n1 - fn, 1)))
    return fpr_hi, fnr_hi, _epsilon_from_rates(fpr_hi, fnr_hi, delta)


def empirical_epsilon(
    scores,
    labels,
    delta: float,
    method: str = "split",
    confidence: float = 0.95,
    seed: int = 0,
    n_thresholds: int = 200,
) -> EpsilonBound:
    """A statistically valid lower bound on epsilon from an attack's scores (Jagielski et al. 2020).

    At a threshold, Clopper-Pearson upper bounds on FPR and FNR (each at confidence 1 - alpha/2) give
    epsilon >= max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)). Choosing the best
    threshold on the same scores would overstate it, so:
    - "split": the threshold is chosen on a random half of the scores (stratified, seeded) and the
      bound is evaluated on the other half;
    - "bonferroni": every one of `n_thresholds` score quantiles (chosen without looking at labels)
      is evaluated on all scores at confidence 1 - alpha / n_thresholds, and the largest bound kept.

    The examples all come from one training run, so they are not independent runs of the mechanism as
    in Jagielski et al.; what makes the binomial reasoning apply is that members and non-members were
    assigned by a random split (the setting of Steinke, Nasr, Jagielski 2023, auditing in one run).
    """
    scores, labels = _check(scores, labels)
    alpha = 1 - confidence
    if method == "split":
        rng = np.random.default_rng(seed)
        half = np.zeros(len(scores), dtype=bool)
        for cls in (True, False):
            idx = np.flatnonzero(labels == cls)
            half[rng.permutation(idx)[: len(idx) // 2]] = True
        candidates = np.unique(scores[half])
        _, _, eps_a = _bounds_at(scores[half], labels[half], candidates, delta, 1 - alpha / 2)
        threshold = float(candidates[np.argmax(eps_a)])
        eval_scores, eval_labels = scores[~half], labels[~half]
        fpr_hi, fnr_hi, eps = _bounds_at(eval_scores, eval_labels, np.array([threshold]), delta, 1 - alpha / 2)
        return EpsilonBound(
            float(eps[0]),
            confidence,
            "split",
            threshold,
            float(fpr_hi[0]),
            float(fnr_hi[0]),
            int(eval_labels.sum()),
            int((~eval_labels).sum()),
        )
    if method == "bonferroni":
        candidates = np.unique(np.quantile(scores, np.linspace(0, 1, n_thresholds + 2)[1:-1]))
        fpr_hi, fnr_hi, eps = _bounds_at(scores, labels, candidates, delta, 1 - alpha / (2 * len(candidates)))
        best = int(np.argmax(eps))
        return EpsilonBound(
            float(eps[best]),
            confidence,
            "bonferroni",
            float(candidates[best]),
            float(fpr_hi[best]),
            float(fnr_hi[best]),
            int(labels.sum()),
            int((~labels).sum()),
        )
    raise ValueError(f"unknown method {method!r} (split or bonferroni)")


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, points: int = 400) -> tuple[list[float], list[float]]:
    """A few hundred ROC points, log-spaced in FPR so the low-FPR region a log-log plot shows survives."""
    if len(fpr) <= points:
        return fpr.tolist(), tpr.tolist()
    grid = np.unique(np.r_[0.0, np.logspace(math.log10(max(fpr[fpr > 0].min(), 1e-6)), 0, points - 1)])
    idx = np.clip(np.searchsorted(fpr, grid, side="right") - 1, 0, len(fpr) - 1)
    return fpr[idx].tolist(), tpr[idx].tolist()
