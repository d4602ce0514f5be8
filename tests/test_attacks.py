"""Attacks on synthetic model outputs with known structure: examples differ in difficulty, and
training on an example raises its scaled confidence by 1. Calibrating per example (LiRA, RMIA) must
beat the global loss threshold, and every attack must follow "higher score = member"."""

import numpy as np
import pytest

from privaudit.attacks import ATTACKS, AttackInputs
from privaudit.attacks.base import scaled_confidence
from privaudit.metrics import auc
from privaudit.shadows import inclusion_matrix


def synthetic(num_shadows=16, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 2.0, n)
    target_in = rng.random(n) < 0.5
    shadow_in = inclusion_matrix(n, num_shadows, seed)

    def logits(in_mask):
        phi = difficulty + 1.0 * in_mask + rng.normal(0, 0.4, in_mask.shape)
        return np.stack([phi, np.zeros_like(phi)], axis=-1)  # class 0 is the true class: confidence = phi

    # A vocabulary learned from the members covers every member's words and misses some of 40% of the rest.
    misses = np.where(~target_in & (rng.random(n) < 0.4), rng.integers(1, 3, n), 0) * 1000
    inputs = AttackInputs(
        labels=np.zeros(n, dtype=int),
        target_logits=logits(target_in),
        shadow_logits=logits(shadow_in),
        shadow_in=shadow_in,
        reference_points=np.flatnonzero(~target_in),
        vocabulary_misses=misses,
    )
    return inputs, target_in


def test_scaled_confidence_is_the_log_odds():
    logits = np.array([[2.0, 0.5, -1.0]])
    p = np.exp(logits) / np.exp(logits).sum()
    assert scaled_confidence(logits, np.array([0]))[0] == pytest.approx(np.log(p[0, 0] / (1 - p[0, 0])))


def test_every_attack_scores_members_higher():
    inputs, is_member = synthetic()
    for name, (attack, _) in ATTACKS.items():
        assert auc(attack(inputs), is_member) > 0.6, name


def test_per_example_calibration_beats_the_loss_threshold():
    inputs, is_member = synthetic()
    loss = auc(ATTACKS["loss"][0](inputs), is_member)
    assert auc(ATTACKS["lira"][0](inputs), is_member) > loss + 0.15
    assert auc(ATTACKS["rmia"][0](inputs), is_member) > loss + 0.1


def test_inclusion_matrix_is_balanced():
    m = inclusion_matrix(1001, 16, seed=3)
    assert (m.sum(0) == 8).all()
    assert abs(m.sum(1).mean() - 1001 / 2) < 1
    odd = inclusion_matrix(1000, 5, seed=3)
    assert set(odd.sum(0)) == {2, 3}
