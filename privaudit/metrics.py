"""Metrics of a membership-inference attack: pure functions over scores and labels.

Convention everywhere: a higher score means "more likely a member"; label 1 is a member, 0 a
non-member. Rates estimated from finite samples come with intervals that hold at their stated level
(exact constructions, or a bootstrap checked by simulation), and a figure that the number of non-members
cannot support (TPR at an FPR below 1/#non-members) is flagged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta, binom, binomtest

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


def auc_bootstrap(scores, labels, n_boot: int = 1000, seed: int = 0, chunk: int = 100) -> np.ndarray:
    """`n_boot` bootstrap replicates of the AUC, members and non-members resampled separately.

    Vectorised: the scores are sorted once; each replicate is a vector of resampling counts (uniform draws
    with replacement, counted: a multinomial sample, 3x faster than numpy's multinomial over 10^4 classes),
    and its AUC a weighted sum over the sorted non-members, so 1000 replicates of 10^4 scores take a fraction
    of a second. Percentiles of the replicates give the AUC's interval and its lower bounds (their coverage
    is checked by simulation in tests/test_interval_coverage.py).
    """
    scores, labels = _check(scores, labels)
    member_scores, nonmember_scores = scores[labels], np.sort(scores[~labels])
    n1, n0 = len(member_scores), len(nonmember_scores)
    # For each member, how many non-members score below it, and below or level with it.
    below = np.searchsorted(nonmember_scores, member_scores, side="left")
    level_or_below = np.searchsorted(nonmember_scores, member_scores, side="right")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        w_nonmember = _resampling_counts(rng, reps, n0)
        w_member = _resampling_counts(rng, reps, n1)
        cum = np.concatenate([np.zeros((reps, 1)), np.cumsum(w_nonmember, axis=1)], axis=1)
        lower, upper = cum[:, below], cum[:, level_or_below]
        values.append((w_member * (0.5 * (lower + upper))).sum(1) / (n1 * n0))
    return np.concatenate(values)


def _resampling_counts(rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """(reps, n): how often each of n items is drawn in n draws with replacement, one row per replicate."""
    draws = rng.integers(0, n, size=(reps, n)) + n * np.arange(reps)[:, None]
    return np.bincount(draws.ravel(), minlength=reps * n).reshape(reps, n).astype(np.float64)


@dataclass
class TprAtFpr:
    """The TPR at one FPR. `ci`: two-sided interval for the population TPR at the threshold where the
    population FPR is `fpr` (`tpr_interval`). `lower_joint`: one-sided lower bound at `joint_confidence`,
    the level that keeps a family of such bounds (all attacks of one audit) valid at 95% together."""

    fpr: float
    tpr: float
    ci: tuple[float, float]
    threshold: float
    too_few_nonmembers: bool
    lower_joint: float | None = None
    joint_confidence: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def tpr_at_fpr(scores, labels, target_fpr: float, confidence: float = 0.95, joint_confidence=None) -> TprAtFpr:
    """The TPR at FPR target_fpr on the ROC curve (linear between its points: a tie of scores across the
    threshold broken at random, which attains any FPR), with an interval for the same figure that
    accounts for the threshold being estimated from the non-members (`tpr_interval`, on the scores with
    their ties broken at random, seeded). `threshold`: the lowest score threshold whose FPR stays at or
    below target_fpr.

    Flagged when target_fpr < 1/#non-members: no threshold can then show that FPR, only 0.
    """
    scores, labels = _check(scores, labels)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    best = np.flatnonzero(fpr <= target_fpr + 1e-12)[-1]  # the vertex at or before target_fpr (highest TPR)
    point = tpr[best]
    if fpr[best] < target_fpr and best + 1 < len(fpr):
        point += (tpr[best + 1] - tpr[best]) * (target_fpr - fpr[best]) / (fpr[best + 1] - fpr[best])
    ranks = _ranks_ties_at_random(scores)
    alpha = 1 - confidence
    lo, hi = tpr_interval(ranks, labels, target_fpr, alpha / 2, alpha / 2)
    joint = None
    if joint_confidence is not None:
        joint, _ = tpr_interval(ranks, labels, target_fpr, 1 - joint_confidence, 0.0)
    return TprAtFpr(
        target_fpr,
        float(point),
        (lo, hi),
        float(thresholds[best]),
        bool(target_fpr < 1.0 / (~labels).sum()),
        joint,
        joint_confidence,
    )


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial rate (Clopper and Pearson 1934): never narrower than the
    truth, so a rate over a handful of canaries is shown as uncertain as it is."""
    if trials == 0:
        return 0.0, 1.0
    ci = binomtest(successes, trials).proportion_ci(confidence, method="exact")
    return float(ci.low), float(ci.high)


@dataclass
class Rate:
    """A rate over a handful of trials (canaries extracted, held-out examples classified right), with its
    exact (Clopper-Pearson) 95% interval: over 20 trials a rate is known to about +-20 points, and the
    interval says so."""

    rate: float
    interval: tuple[float, float]
    successes: int
    trials: int

    @classmethod
    def of(cls, outcomes) -> Rate:
        k, n = int(sum(outcomes)), len(outcomes)
        return cls(k / n if n else float("nan"), clopper_pearson(k, n), k, n)


def bonferroni(confidence: float, count: int) -> float:
    """The confidence each of `count` bounds needs so that all of them hold together at `confidence`."""
    return 1 - (1 - confidence) / count


def _ranks_ties_at_random(scores: np.ndarray) -> np.ndarray:
    """Ranks of the scores, equal scores ordered at random (a fixed seed: the same scores, the same ranks)."""
    order = np.lexsort((np.random.default_rng(0).random(len(scores)), scores))
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(len(scores))
    return ranks


def tpr_interval(scores, labels, target_fpr: float, alpha_low: float, alpha_high: float) -> tuple[float, float]:
    """Bounds on TPR(t_f), the members' rate above the threshold t_f that non-members exceed with
    probability `target_fpr`: the lower bound fails with probability at most `alpha_low`, the upper with
    at most `alpha_high` (0: that side not computed, 0 or 1 returned).

    Both the threshold and the rate are estimated, so a Clopper-Pearson interval over members at the
    empirical threshold is too narrow (in simulation it covered 58% of the time at FPR 1% with 1,000 of
    each). Exact, distribution-free construction (continuous scores), members and non-members being
    independent samples: K, the number of non-members at or above t_f, is Binomial(n0, f) whatever the
    score distribution, so the j-th highest non-member score X_(j) lies at or above t_f exactly when
    K >= j. For the lower bound, j is the largest index with P(K < j) <= alpha_low / 2, chosen without
    looking at the data; then TPR(t_f) >= TPR(X_(j)), and the members at or above X_(j) (independent
    of X_(j)) give a one-sided Clopper-Pearson bound on TPR(X_(j)) at the level the threshold leaves,
    (alpha_low - P(K < j)) / P(K >= j). Mirrored for the upper bound. When no order statistic is safe
    (too few non-members for that FPR), the bound is the trivial 0 or 1.
    """
    scores, labels = _check(scores, labels)
    nonmembers = np.sort(scores[~labels])[::-1]
    members = scores[labels]
    n0, n1 = len(nonmembers), len(members)
    j = np.arange(1, n0 + 1)
    lo, hi = 0.0, 1.0
    if alpha_low > 0:
        below = binom.cdf(j - 1, n0, target_fpr)  # P(K < j): X_(j) below t_f
        safe = np.flatnonzero(below <= alpha_low / 2)
        if len(safe):
            k = safe[-1]
            level = (alpha_low - below[k]) / (1 - below[k])
            count = int((members >= nonmembers[k]).sum())
            lo = 0.0 if count == 0 else float(beta.ppf(level, count, n1 - count + 1))
    if alpha_high > 0:
        above = binom.sf(j - 1, n0, target_fpr)  # P(K >= j): X_(j) at or above t_f
        safe = np.flatnonzero(above <= alpha_high / 2)
        if len(safe):
            k = safe[0]
            level = (alpha_high - above[k]) / (1 - above[k])
            count = int((members >= nonmembers[k]).sum())
            hi = 1.0 if count == n1 else float(beta.ppf(1 - level, count + 1, n1 - count))
    return lo, hi


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
