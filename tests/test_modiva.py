"""Reading secrets out of a trained model: ModIvA (Parikh et al. 2022) and the exposure metric (Carlini et al. 2019)."""

import numpy as np
import pytest

from privaudit.attacks.modiva import modiva_extract
from privaudit.canaries.exposure import exact_exposure, extrapolated_exposure
from privaudit.canaries.templates import parse_template
from privaudit.data import TextDataset
from privaudit.demo import demo_dataset
from privaudit.errors import PrivauditError
from privaudit.recipe import TrainingRecipe
from privaudit.training import fit

PIN = "my pin code is {digit} {digit} {digit} {digit}"


@pytest.fixture(scope="module")
def memorising_model():
    """A small CNN that saw one secret 40 times under label Secret and 300 other secrets under Other."""
    t = parse_template(PIN)
    rng = np.random.default_rng(0)
    base = demo_dataset(300, seed=2)
    true = ("7", "3", "9", "1")
    others = {tuple(str(d) for d in rng.integers(0, 10, 4)) for _ in range(400)} - {true}
    texts = [t.render(true)] * 40 + [t.render(s) for s in sorted(others)][:300]
    labels = ["Secret"] * 40 + ["Other"] * min(300, len(others))
    data = base + TextDataset(texts, labels)
    fitted = fit(data, data.label_names, TrainingRecipe(epochs=12, dropout=0.0, seed=1))
    return fitted.classifier, t, true


def test_modiva_recovers_the_memorised_secret(memorising_model):
    classifier, t, true = memorising_model
    result = modiva_extract(classifier, t, true, "Secret", "alphabet", seed=0)
    assert result.success and result.position_accuracy == 1.0
    assert result.relaxed_rank == 1.0
    assert result.chance == 1e-4


def test_exposure_exact_and_extrapolated_agree(memorising_model):
    classifier, t, true = memorising_model
    exact = exact_exposure(classifier, t, true, "Secret")
    assert exact.rank <= 3 and exact.exposure > 11.7  # of at most log2(10^4) = 13.3 bits
    # A secret the model never saw under "Secret": a moderate exposure both ways can measure.
    probe = ("2", "8", "4", "6")
    exact = exact_exposure(classifier, t, probe, "Secret")
    estimate = extrapolated_exposure(classifier, t, probe, "Secret", samples=4000)
    assert exact.exposure < 10
    assert abs(estimate.exposure - exact.exposure) < 1.5  # the skew-normal fit's stated tolerance, in bits


def test_alphabet_symbols_missing_from_the_vocabulary_are_named(memorising_model):
    from privaudit.attacks.modiva import slot_layout

    classifier, _, _ = memorising_model  # its word vocabulary holds the digits and "a", not "b"
    with pytest.raises(PrivauditError, match="alphabet symbol 'b' is not one token"):
        slot_layout(classifier, parse_template("my code is {letter}"))


def test_modiva_finds_the_exact_maximiser_through_bert_input_embeddings():
    """ModIvA optimises BERT's input embeddings (no convolution to lean on) and reads out, exactly, the
    secret the model ranks first among all 10^3 (found by enumeration): the attack's own job, whether or
    not this small BERT memorised the planted one."""
    from privaudit.canaries.exposure import candidate_scores

    t = parse_template("my pin code is {digit} {digit} {digit}")
    planted = ("7", "3", "9")
    data = demo_dataset(150, seed=4) + TextDataset([t.render(planted)] * 30, ["Secret"] * 30)
    classifier = fit(data, data.label_names, TrainingRecipe(arch="bert-tiny", epochs=4, dropout=0.0, seed=1)).classifier
    secrets = list(t.all_secrets())
    scores = candidate_scores(classifier, t, secrets, "Secret")
    best = secrets[int(np.argmax(scores))]
    assert np.sort(scores)[-1] > np.sort(scores)[-2]  # one maximiser, so "exactly" means something
    result = modiva_extract(classifier, t, best, "Secret", "alphabet", steps=100, restarts=4, seed=0)
    # The attack as privaudit runs it (relaxed optimisation, then discrete swaps) reads it out exactly; the
    # relaxed stage alone is at most one digit off (a random guess gets a digit right 1 time in 10).
    assert result.swap_success and result.swap_position_accuracy == 1.0
    assert result.position_accuracy >= 2 / 3


@pytest.fixture(scope="module")
def public_favourite():
    """Public data tie the PIN 5 5 5 5 to label Secret (30 rows every model sees); the canary 7 3 9 1 was
    planted 8 times in the target only. Two reference models are trained on the public data alone."""
    from privaudit.canaries.calibration import SecretScorer

    t = parse_template(PIN)
    rng = np.random.default_rng(1)
    others = sorted({tuple(str(d) for d in rng.integers(0, 10, 4)) for _ in range(300)} - {("7", "3", "9", "1")})
    public = demo_dataset(200, seed=3) + TextDataset(
        [t.render(("5", "5", "5", "5"))] * 30 + [t.render(s) for s in others[:200]], ["Secret"] * 30 + ["Other"] * 200
    )
    planted = ("7", "3", "9", "1")
    target_data = public + TextDataset([t.render(planted)] * 8, ["Secret"] * 8)
    recipe = TrainingRecipe(epochs=10, dropout=0.0, seed=1)
    target = fit(target_data, target_data.label_names, recipe).classifier
    references = [
        fit(public, target_data.label_names, recipe_seeded, tokenizer=target.tokenizer).classifier
        for recipe_seeded in (TrainingRecipe(epochs=10, dropout=0.0, seed=s) for s in (2, 3))
    ]
    return SecretScorer(target, references, t), planted


def test_calibration_ranks_the_planted_secret_above_what_every_model_favours(public_favourite):
    scorer, planted = public_favourite
    exposures = scorer.exposures(planted, "Secret")
    # Confidence alone prefers the public favourite or a blend with it (the uncalibrated ceiling misses) ...
    assert exposures["target"].rank > 1
    # ... calibrated by models that never saw the canary, the planted secret comes first.
    assert exposures["calibrated"].rank == 1
    # ModIvA on the calibrated objective reads it out; on the target alone it cannot.
    calibrated = modiva_extract(
        scorer.target, scorer.template, planted, "Secret", steps=100, restarts=4, references=scorer.references
    )
    plain = modiva_extract(scorer.target, scorer.template, planted, "Secret", steps=100, restarts=4)
    assert calibrated.swap_success and not plain.swap_success
