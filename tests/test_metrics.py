"""Metric functions against hand-computed cases and slow, obviously-right reference implementations."""

import numpy as np
import pytest

from privaudit import metrics


def brute_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def brute_tpr_at_fpr(scores, labels, target):
    """The TPR at FPR `target` of the rule "member if score >= t", mixed at random between the two
    thresholds around `target` (what breaking ties at random does)."""
    points = set()
    for t in np.r_[np.inf, np.unique(scores)]:
        pred = scores >= t
        points.add((pred[labels == 0].mean(), pred[labels == 1].mean()))
    below = max(p for p in points if p[0] <= target)
    above = [p for p in points if p[0] > target]
    if not above:
        return below[1]
    after = min(above)
    return below[1] + (after[1] - below[1]) * (target - below[0]) / (after[0] - below[0])


@pytest.fixture
def tied_data():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + 0.7 * labels, 1)  # many ties
    return scores, labels


def test_perfect_random_and_inverted_scores():
    labels = np.r_[np.ones(50), np.zeros(50)]
    perfect = labels.copy()
    assert metrics.auc(perfect, labels) == 1.0
    assert metrics.auc(-perfect, labels) == 0.0
    assert metrics.tpr_at_fpr(perfect, labels, 0.01).tpr == 1.0
    assert metrics.tpr_at_fpr(-perfect, labels, 0.01).tpr == 0.0
    assert metrics.balanced_accuracy(perfect, labels) == 1.0
    constant = np.zeros(100)
    assert metrics.auc(constant, labels) == 0.5
    rng = np.random.default_rng(0)
    big = np.r_[np.ones(5000), np.zeros(5000)]
    assert abs(metrics.auc(rng.normal(size=10000), big) - 0.5) < 0.02


def test_auc_roc_and_tpr_match_brute_force(tied_data):
    scores, labels = tied_data
    assert metrics.auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    for target in (0.01, 0.1, 0.3):
        assert metrics.tpr_at_fpr(scores, labels, target).tpr == pytest.approx(brute_tpr_at_fpr(scores, labels, target))


def test_bootstrap_interval_matches_a_plain_loop(tied_data):
    scores, labels = tied_data
    lo, hi = np.percentile(metrics.auc_bootstrap(scores, labels, n_boot=2000, seed=3), [2.5, 97.5])
    rng = np.random.default_rng(7)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    loop = []
    for _ in range(2000):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        loop.append(brute_auc(scores[idx], labels[idx]))
    ref_lo, ref_hi = np.percentile(loop, [2.5, 97.5])
    assert lo < metrics.auc(scores, labels) < hi
    assert lo == pytest.approx(ref_lo, abs=0.012) and hi == pytest.approx(ref_hi, abs=0.012)


def test_too_few_nonmembers_is_flagged():
    labels = np.r_[np.ones(500), np.zeros(500)]
    scores = np.random.default_rng(0).normal(size=1000)
    assert metrics.tpr_at_fpr(scores, labels, 0.001).too_few_nonmembers
    assert not metrics.tpr_at_fpr(scores, labels, 0.01).too_few_nonmembers


@pytest.mark.parametrize(
    "method, n_eval, alpha_each",
    [
        ("split", 500, 0.025),  # half the data; alpha/2 for each of FPR and FNR
        ("bonferroni", 1000, 0.025 / 2),  # all the data; binary scores give 2 candidate thresholds
    ],
)
def test_empirical_epsilon_of_a_perfect_attack_by_hand(method, n_eval, alpha_each):
    # No errors at all: both rates' one-sided Clopper-Pearson upper bounds are 1 - alpha^(1/n), and
    # epsilon >= log((1 - delta - u) / u).
    labels = np.r_[np.ones(1000), np.zeros(1000)]
    bound = metrics.empirical_epsilon(labels.copy(), labels, 1e-5, method)
    u = 1 - alpha_each ** (1 / n_eval)
    assert bound.fpr_upper == pytest.approx(u) and bound.fnr_upper == pytest.approx(u)
    assert bound.epsilon == pytest.approx(np.log((1 - 1e-5 - u) / u))
    assert bound.confidence == 0.95


@pytest.mark.parametrize("method", ["split", "bonferroni"])
def test_empirical_epsilon_is_valid_when_there_is_no_leakage(method):
    # Scores independent of membership: the true epsilon is 0, so a valid 95% lower bound may be
    # above 0 in at most about 5% of runs. Taking the best threshold without correction fails this.
    rng = np.random.default_rng(11)
    labels = np.r_[np.ones(300), np.zeros(300)]
    positives = sum(
        metrics.empirical_epsilon(rng.normal(size=600), labels, 1e-5, method, seed=i).epsilon > 0 for i in range(60)
    )
    assert positives <= 6


def test_point_estimates_at_the_best_threshold_would_overstate():
    # Why intervals and a corrected threshold choice: raw rates at the best threshold "find" leakage
    # in pure noise nearly every time.
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(300), np.zeros(300)].astype(bool)
    found = 0
    for _ in range(30):
        scores = rng.normal(size=600)
        fpr, tpr, _ = metrics.roc_curve(scores, labels)
        found += metrics._epsilon_from_rates(fpr[1:-1], 1 - tpr[1:-1], 1e-5).max() > 0
    assert found >= 27


def test_metrics_reject_one_class():
    with pytest.raises(ValueError):
        metrics.auc(np.zeros(3), np.ones(3))
