"""The intervals' coverage, by simulation: scores of members ~ N(mu, 1) and of non-members ~ N(0, 1),
where the true TPR at any FPR and the true AUC are known. A 95% TPR interval (exact, conservative: 299-300
of 300 trials) must contain the truth in at least 95% of the trials; the AUC's percentile bootstrap, which
sits at its nominal level, in a share a one-sided binomial test at 1% cannot tell from 95% (`covers`).
(A Clopper-Pearson interval over members at the empirical threshold, which
treats the threshold as known, is checked to fall well short, so the test can tell the two apart.)"""

import numpy as np
import pytest
from scipy.stats import beta, binom, norm

from privaudit import metrics


def trials(n, mu, count, seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    for _ in range(count):
        yield np.r_[rng.normal(mu, 1, n), rng.normal(0, 1, n)], labels


def covers(covered: int, count: int, level: float) -> bool:
    """Whether `covered` of `count` trials is consistent with coverage of at least `level`: one-sided binomial
    test at 1%. Asking covered / count >= level would fail an exact interval about half the time, by chance (a
    95% interval covers 950 of 1,000 trials give or take 7); one at 93% most likely fails (930 of 1,000: p 0.003)."""
    return bool(binom.cdf(covered, count, level) > 0.01)


def fixed_threshold_interval(row, n_members):
    k = round(row.tpr * n_members)
    return beta.ppf(0.025, k, n_members - k + 1) if k else 0.0, beta.ppf(0.975, k + 1, n_members - k)


@pytest.mark.parametrize("fpr", [0.01, 0.1])
def test_tpr_intervals_cover_the_true_tpr(fpr):
    n, mu = 500, 1.0
    truth = norm.sf(norm.isf(fpr) - mu)
    covered = naive = joint = 0
    count = 300
    for scores, labels in trials(n, mu, count, seed=int(fpr * 1000)):
        row = metrics.tpr_at_fpr(scores, labels, fpr, joint_confidence=0.99)
        covered += row.ci[0] <= truth <= row.ci[1]
        joint += row.lower_joint <= truth
        lo, hi = fixed_threshold_interval(row, n)
        naive += lo <= truth <= hi
    assert covered / count >= 0.95
    assert joint / count >= 0.99
    assert naive / count < 0.9  # the threshold's own uncertainty matters


def test_tpr_interval_with_too_few_nonmembers_is_honestly_wide():
    # With 100 non-members, most likely none lies above the 0.1% FPR threshold: nothing bounds the TPR
    # there from below, whatever the members' scores (only from above: the 2nd highest non-member is
    # below that threshold with 99.5% probability).
    scores, labels = next(trials(100, 3.0, 1, seed=0))
    row = metrics.tpr_at_fpr(scores, labels, 0.001)
    assert row.too_few_nonmembers and row.ci[0] == 0.0 and row.ci[1] > 0.5


@pytest.mark.slow
def test_auc_bootstrap_interval_covers_the_true_auc():
    n, mu, count = 300, 0.5, 1000
    truth = norm.cdf(mu / np.sqrt(2))
    covered = 0
    for i, (scores, labels) in enumerate(trials(n, mu, count, seed=5)):
        lo, hi = np.percentile(metrics.auc_bootstrap(scores, labels, 400, seed=i), [2.5, 97.5])
        covered += lo <= truth <= hi
    assert covers(covered, count, 0.95)  # 949 of 1,000 here: the percentile bootstrap at n = 300


def test_tied_scores_get_an_interval_around_their_estimate():
    # Counts (as the label-only attack gives): the TPR at an FPR falls inside a tie group, where the ROC
    # is the random tie-break's; the estimate and the interval are both for that figure.
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    scores = np.r_[rng.binomial(5, 0.75, 3000), rng.binomial(5, 0.6, 3000)].astype(float)
    for fpr in (0.01, 0.1):
        row = metrics.tpr_at_fpr(scores, labels, fpr)
        assert row.ci[0] <= row.tpr <= row.ci[1]
