"""Full-size claims on SNIPS (../shared/data/snips): minutes each, run with `make test-all`."""

import pytest

from privaudit.api import mia, train
from privaudit.gate import Thresholds
from privaudit.mia import MiaSettings
from privaudit.recipe import DPSettings, TrainingRecipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("snips-cache"))


@pytest.fixture(scope="module")
def snips_cnn(snips_train, tmp_path_factory):
    path = tmp_path_factory.mktemp("snips") / "cnn.pt"
    train(snips_train, TrainingRecipe(arch="cnn", epochs=20), out=path)
    return path


LOW_FPR_GATE = Thresholds(max_tpr_at_fpr=((0.001, 0.03), (0.01, 0.05)))


def tpr_at(result, attack, fpr):
    return next(r["tpr"] for r in result["attacks"][attack]["tpr_at_fpr"] if r["fpr"] == fpr)


def tpr_at_1pct(result, attack):
    return tpr_at(result, attack, 0.01)


def test_lira_with_16_shadows_beats_the_loss_attack(snips_cnn, cache):
    gated = mia(snips_cnn, MiaSettings(attack="lira", shadows=16, cache_dir=cache), LOW_FPR_GATE)
    result = gated.to_dict()
    lira, loss = result["attacks"]["lira"], result["attacks"]["loss"]
    assert lira["auc"] > loss["auc"]
    assert tpr_at_1pct(result, "lira") >= 3 * tpr_at_1pct(result, "loss")
    # The gate sees the leak through every attack's jointly valid lower bound, and names the attack.
    crossed = [c for c in gated.gate.failed if c.metric == "TPR at FPR 0.01"]
    assert crossed and crossed[0].detail.startswith("strongest attack: ")
    # Issue 10's goal, through the tokenizer's certain members (README: 39.39% and 44.10%), and the gate
    # at 3% TPR at 0.1% FPR crossed, naming the attack.
    assert tpr_at(result, "lira-vocabulary", 0.001) >= 0.06 and tpr_at(result, "lira-vocabulary", 0.01) >= 0.12
    crossed = [c for c in gated.gate.failed if c.metric == "TPR at FPR 0.001"]
    assert crossed and crossed[0].detail.split(",")[0] in (
        "strongest attack: lira-vocabulary",
        "strongest attack: vocabulary",
    )


def test_rmia_with_2_references_beats_offline_lira_with_2_shadows(snips_cnn, cache):
    result = mia(snips_cnn, MiaSettings(attack="rmia", shadows=2, cache_dir=cache)).to_dict()
    assert tpr_at_1pct(result, "rmia") > tpr_at_1pct(result, "lira-offline")


def test_dp_model_at_epsilon_1_leaks_less_than_promised(snips_train, tmp_path, cache):
    path = tmp_path / "dp.pt"
    train(snips_train, TrainingRecipe(arch="cnn", epochs=20, dp=DPSettings(target_epsilon=1.0)), out=path)
    gated = mia(path, MiaSettings(attack="rmia", shadows=4, cache_dir=cache), LOW_FPR_GATE)
    assert gated.gate.passed
    result = gated.to_dict()
    head = result["headline"]
    assert head["theoretical_epsilon"] <= 1.0
    assert head["empirical_epsilon"] < head["theoretical_epsilon"]
    assert all(abs(a["auc"] - 0.5) < 0.03 for a in result["attacks"].values())


def test_canaries_are_exposed_and_extracted_more_with_more_repeats(snips_train):
    from privaudit.canaries.audit import CanarySettings, run_canary
    from privaudit.data import load_dataset

    data = load_dataset(snips_train)
    result = run_canary(
        CanarySettings(insert=20, repeats=[1, 4, 16]), data, TrainingRecipe(arch="cnn"), "snips"
    ).to_dict()
    groups = result["by_repeat"]
    assert groups[0]["exposure_mean"] < groups[-1]["exposure_mean"]
    best_at_16 = max(
        groups[-1]["modiva_alphabet"]["extraction"]["rate"], groups[-1]["modiva_alphabet"]["swap_extraction"]["rate"]
    )
    assert best_at_16 >= 0.3 > 1000 * groups[-1]["chance"]


# Issue 15's templates: none the built-in one; digits inside words and alone, letters, words. The value:
# the single-guess rate at 32 insertions the README's measurement clears with room (measured: 85%, 75%,
# 50%, 90% uncalibrated; 90%, 45%, 40%, 70% calibrated; 20 canaries each).
TEMPLATES = {
    "digits-in-words": ("the door code for my flat is {digit}x4", 0.6),
    "digits-alone": ("{digit}x4", 0.5),
    "letters": ("my initials are {letter}x3", 0.3),
    "words": ("my secret words are {word} {word} {word}", 0.5),
}


@pytest.mark.parametrize("template, at_least", TEMPLATES.values(), ids=TEMPLATES.keys())
def test_canaries_inserted_32_times_are_extracted_on_any_template(snips_train, template, at_least):
    from privaudit.canaries.audit import CanarySettings, run_canary
    from privaudit.data import load_dataset

    settings = CanarySettings(
        insert=20,
        repeats=[1, 32],
        template=template,
        audit_canaries=0,
        modiva_steps=100,
        modiva_restarts=4,
        references=2,
    )
    once, often = run_canary(settings, load_dataset(snips_train), TrainingRecipe(arch="cnn"), "snips").by_repeat
    assert often.calibrated_top1 is not None and once.calibrated_top1 is not None
    # One guess per canary over 20 canaries: at 32 insertions the best single guess is right often ...
    assert max(often.enumeration_top1.rate, often.calibrated_top1.rate) >= at_least
    assert often.enumeration_top1.interval[0] > 0.1
    # ... and rarely for a secret seen once.
    assert max(once.enumeration_top1.rate, once.calibrated_top1.rate) <= 0.25


def test_dp_canaries_at_epsilon_1_are_not_extracted(snips_train):
    from privaudit.canaries.audit import CanarySettings, run_canary
    from privaudit.data import load_dataset

    data = load_dataset(snips_train)
    recipe = TrainingRecipe(arch="cnn", dp=DPSettings(target_epsilon=1.0))
    # 7 canaries per count (one run: one per intent), 2 DP reference models.
    settings = CanarySettings(insert=7, repeats=[1, 32], references=2)
    result = run_canary(settings, data, recipe, "snips").to_dict()
    for group in result["by_repeat"]:
        assert group["modiva_alphabet"]["extraction"]["rate"] == 0
        assert group["modiva_alphabet"]["swap_extraction"]["rate"] == 0
        assert group["calibrated_top1"]["rate"] == 0
    assert result["by_repeat"][0]["exposure_mean"] < 3  # a secret seen once: near the random 1.44 bits
    assert result["one_run"]["epsilon"] < result["theoretical"]["epsilon"] <= 1.0
