"""Attacks on synthetic model outputs with known structure: examples differ in difficulty, and
training on an example raises its scaled confidence by 1. Calibrating per example (LiRA, RMIA) must
beat the global loss threshold, and every attack must follow "higher score = member"."""

import numpy as np
import pytest

from privaudit.attacks import ATTACKS, AttackInputs
from privaudit.attacks.base import scaled_confidence
from privaudit.attacks.lira import _gaussians, fallback_examples, variance_for
from privaudit.attacks.rmia import _scores, fractions, trimmed_mean
from privaudit.metrics import auc, tpr_at_fpr
from privaudit.shadows import inclusion_matrix
from privaudit.tokenization import CERTAIN, hashed_tokenizer, train_tokenizer, vocabulary_evidence

QUERIES = 4


def synthetic(num_shadows=16, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 2.0, n)
    target_in = rng.random(n) < 0.5
    shadow_in = inclusion_matrix(n, num_shadows, seed)

    def logits(in_mask, queries=0):
        shape = in_mask.shape + ((queries,) if queries else ())
        in_mask = in_mask[..., None] if queries else in_mask
        # Neighbours are about as hard as the example and, like it, easier for a model trained on it.
        phi = (difficulty[:, None] if queries else difficulty) + 1.0 * in_mask + rng.normal(0, 0.4, shape)
        return np.stack([phi, np.zeros_like(phi)], axis=-1)  # class 0 is the true class: confidence = phi

    # A vocabulary learned from the members misses a word of 40% of the rest, and holds a word that only
    # 30% of the members use (tokenization.vocabulary_evidence).
    certain = np.where(~target_in & (rng.random(n) < 0.4), -1, np.where(target_in & (rng.random(n) < 0.3), 1, 0))
    inputs = AttackInputs(
        labels=np.zeros(n, dtype=int),
        target_logits=logits(target_in),
        shadow_logits=logits(shadow_in),
        shadow_in=shadow_in,
        reference_points=np.flatnonzero(~target_in),
        vocabulary_evidence=certain * CERTAIN,
        target_query_logits=logits(target_in, QUERIES),
        shadow_query_logits=logits(shadow_in, QUERIES),
    )
    return inputs, target_in


def test_scaled_confidence_is_the_log_odds():
    logits = np.array([[2.0, 0.5, -1.0]])
    p = np.exp(logits) / np.exp(logits).sum()
    assert scaled_confidence(logits, np.array([0]))[0] == pytest.approx(np.log(p[0, 0] / (1 - p[0, 0])))


def test_every_attack_scores_members_higher():
    inputs, is_member = synthetic()
    for name, spec in ATTACKS.items():
        assert auc(spec.run(inputs), is_member) > 0.6, name


def test_per_example_calibration_beats_the_loss_threshold():
    inputs, is_member = synthetic()
    loss = auc(ATTACKS["loss"].run(inputs), is_member)
    assert auc(ATTACKS["lira"].run(inputs), is_member) > loss + 0.15
    assert auc(ATTACKS["rmia"].run(inputs), is_member) > loss + 0.1


def test_query_neighbours_strengthen_lira_and_rmia():
    # Each neighbour is another noisy look at the same membership effect: averaging them helps.
    inputs, is_member = synthetic()
    for plain, augmented in (("lira", "lira-augmented"), ("rmia", "rmia-augmented")):
        assert auc(ATTACKS[augmented].run(inputs), is_member) > auc(ATTACKS[plain].run(inputs), is_member) + 0.02


def test_rmia_compares_strictly_and_never_with_the_example_itself():
    # x1 and x2 are population points. x1 is beaten by nothing but itself; ties never count.
    ratios = np.array([3.0, 1.0, 2.0, 2.0])
    assert fractions(ratios, np.array([1, 2])).tolist() == [1.0, 0.0, 1.0, 0.5]  # x2 against {x1} only
    assert (fractions(np.zeros(5), np.arange(5)) == 0).all()  # equal ratios: no point beaten
    # Equal fractions (x0 and x2 beat every other point) are ordered by the ratio; the fractions stay in order.
    scores = _scores(ratios, np.array([1, 2]))
    assert scores[0] > scores[2] > scores[3] > scores[1]


def test_rmia_trimmed_mean_drops_the_extreme_models():
    values = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])  # 5 models, 1 example: one of each end dropped
    assert trimmed_mean(values, np.ones((5, 1), bool))[0] == pytest.approx(3.0)
    mask = np.array([[True], [True], [True], [False], [False]])  # 3 models: floor(0.6) = 0 dropped
    assert trimmed_mean(values, mask)[0] == pytest.approx(2.0)


def test_lira_variance_follows_the_number_of_shadows_with_a_per_example_fallback():
    assert variance_for(16) == "global" and variance_for(64) == "per-example"
    shadow_in = inclusion_matrix(10, 3, seed=0)  # 3 shadows: every example has 1 model on one side
    assert fallback_examples(shadow_in) == 10
    phi = np.random.default_rng(0).normal(size=(4, 3))
    mask = np.array([[True, True, True], [True, True, False], [True, False, False], [False, False, False]])
    _, std = _gaussians(phi, mask, per_example=True)
    own = phi[:2, 1].std(ddof=1)
    assert std[1] == pytest.approx(own)  # example 1 has 2 models: its own variance
    pooled = np.sqrt(np.mean([phi[:3, 0].var(ddof=1), phi[:2, 1].var(ddof=1)]))
    assert std[2] == pytest.approx(pooled)  # example 2 has 1 model: the global variance, for it alone


def test_inclusion_matrix_is_balanced():
    m = inclusion_matrix(1001, 16, seed=3)
    assert (m.sum(0) == 8).all()
    assert abs(m.sum(1).mean() - 1001 / 2) < 1
    odd = inclusion_matrix(1000, 5, seed=3)
    assert set(odd.sum(0)) == {2, 3}


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
def test_vocabulary_evidence_is_certain_only_where_the_vocabulary_decides(kind):
    """A vocabulary learned from the members: a word only one text of the population uses, if in the
    vocabulary, was put there by that text (a member for certain); a word it lacks marks a non-member for
    certain; a word k texts share is evidence 1 / (1 - 2^(1-k)); single characters are in any vocabulary."""
    members = ["play zorblat now", "play jazz now", "play jazz loud", "play q"]
    nonmembers = ["play vexmor now", "play jazz q", "play loud now"]
    tokenizer = train_tokenizer(kind, members, vocab_size=200)
    evidence = vocabulary_evidence(tokenizer, members + nonmembers)

    def shared(k):  # log-likelihood ratio of a word k texts of the population use
        return -np.log1p(-(2.0 ** (1 - k)))

    play, now, jazz, loud = shared(7), shared(4), shared(3), shared(2)
    # vexmor: [UNK] in a word vocabulary; WordPiece spells it in letters, five pieces after the first
    unknown = -CERTAIN if kind == "word" else -5
    expected = [CERTAIN + play + now, play + now + jazz, play + jazz + loud, play, unknown + play + now, play + jazz]
    expected.append(play + loud + now)
    np.testing.assert_allclose(evidence, expected)
    assert not vocabulary_evidence(hashed_tokenizer(kind, 1024), members + nonmembers).any()


def test_lira_with_the_vocabulary_finds_the_members_the_vocabulary_is_certain_of():
    inputs, is_member = synthetic()
    lira, combined = (
        tpr_at_fpr(ATTACKS[name].run(inputs), is_member, 0.001).tpr for name in ("lira", "lira-vocabulary")
    )
    assert combined > lira + 0.2  # 30% of the members are certain from the vocabulary alone
