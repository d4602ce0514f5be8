"""`privaudit sweep`: a small real sweep (one DP epsilon and no DP) on demo data with a planted group."""

import csv
import json
import math
import random
import re

import pytest
from browser import open_in_chromium, screenshot, table_rows

from privaudit.api import sweep
from privaudit.audit import run_audit
from privaudit.config import load_config
from privaudit.demo import demo_dataset
from privaudit.errors import PrivauditError
from privaudit.recipe import TrainingRecipe
from privaudit.sweep import SweepSettings

# The member split is secret (drawn from OS entropy), so the planted group's halves vary from run to run: with
# 120 examples each half stays far above the 25 a group needs to be measured (with 60, about one run in six
# left one half under 25, and the group unmeasured).
PLANTED = 120
# Small enough for the fast lane; the recipe is the CLI's default but for the epochs and the seed.
SIZE = ["--shadows", "2", "--queries", "2", "--epochs", "6", "--seed", "3", "--workers", "1"]


@pytest.fixture(scope="module")
def grouped_csv(tmp_path_factory):
    """Demo data tagged "common", plus 120 "planted" examples (random words, random labels: a model can only
    memorise them) and 6 "rare" ones (too few to measure)."""
    rng = random.Random(0)
    data = demo_dataset(300, seed=5)
    labels = sorted(set(data.labels))
    rows = [(t, y, "common") for t, y in zip(data.texts, data.labels)]
    words = [f"zq{i:03d}" for i in range(900)]
    rows += [(" ".join(rng.sample(words, 6)), rng.choice(labels), "planted") for _ in range(PLANTED)]
    rows += [(f"rare request number {i}", labels[i % len(labels)], "rare") for i in range(6)]
    path = tmp_path_factory.mktemp("sweep") / "grouped.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "dialect"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def first_sweep(grouped_csv, run_cli_module):
    folder = grouped_csv.parent
    code, out, err = run_cli_module(
        "sweep",
        grouped_csv,
        "--epsilons",
        "inf,1",
        *SIZE,
        "--group-col",
        "dialect",
        "--max-tpr-at-fpr",
        "0.1:0.9",
        "--cache-dir",
        folder / "cache",
        "--report",
        folder / "report",
    )
    return code, out, err, json.loads((folder / "report" / "results.json").read_text())


def test_sweep_trains_and_audits_each_epsilon_and_recommends(first_sweep):
    code, out, err, doc = first_sweep
    assert code == 0, err
    assert [p["label"] for p in doc["points"]] == ["1", "no DP"]  # sorted, inf last
    dp, plain = doc["points"]
    assert plain["theoretical_epsilon"] is None and plain["noise_multiplier"] is None
    assert dp["theoretical_epsilon"] == pytest.approx(1.0, abs=0.01) and dp["noise_multiplier"] > 1
    # The trade-off a reader must see: DP costs accuracy and removes leakage.
    assert plain["heldout_accuracy"]["rate"] > dp["heldout_accuracy"]["rate"] + 0.2
    assert plain["auc"] > dp["auc"] + 0.1
    # The only constraint (TPR at 10% FPR at most 90%) holds at epsilon 1: it is recommended.
    assert doc["recommendation"]["epsilon"] == 1.0 and doc["recommendation"]["missed"]["1"] == []
    assert doc["headline"]["text"] == "smallest epsilon meeting every constraint: 1"
    assert doc["run"]["points_from_cache"] == 0
    assert "Traceback" not in err


def test_empirical_epsilon_never_exceeds_theoretical_at_a_dp_point(first_sweep):
    *_, doc = first_sweep
    for p in doc["points"]:
        if p["theoretical_epsilon"] is not None:
            assert p["empirical_epsilon"] <= p["theoretical_epsilon"] and not p["violation"]
    assert [c["passed"] for c in doc["gate"]["checks"]] == [True, True]


def test_the_planted_group_is_named_worst_off_and_small_groups_are_flagged(first_sweep):
    _, out, _, doc = first_sweep
    plain = doc["points"][1]
    groups = {g["group"]: g for g in plain["groups"]}
    assert set(groups) == {"common", "planted", "rare"}
    rare = groups["rare"]
    assert rare["too_small"] and rare["accuracy"] is None and rare["auc"] is None and rare["examples"] == 6
    assert rare["members"] is None and rare["heldout"] is None  # its split would tell who was a member
    assert plain["worst_off"] == {"accuracy": "planted", "leakage": "planted"}
    assert "epsilon no DP: lowest held-out accuracy in dialect 'planted'; most membership leakage (AUC) in" in out
    for g in (groups["common"], groups["planted"]):
        low, high = g["accuracy"]["interval"]
        assert low <= g["accuracy"]["rate"] <= high and high - low > 0.05  # intervals, honest about size
        assert g["auc_ci"][0] <= g["auc"] <= g["auc_ci"][1]
        assert g["members"] + g["heldout"] == (300 if g is groups["common"] else PLANTED)
    assert groups["planted"]["auc"] > groups["common"]["auc"]


def test_the_report_shows_the_sweep_in_chromium(first_sweep, grouped_csv, tmp_path):
    *_, doc = first_sweep
    page = grouped_csv.parent / "report" / "report.html"
    dom = open_in_chromium(page, tmp_path)
    rows = table_rows(dom, "points")
    assert [r[0] for r in rows[1:]] == ["1", "no DP"]
    for row, p in zip(rows[1:], doc["points"]):
        assert row[2].startswith(f"{p['heldout_accuracy']['rate']:.3f}") and row[3].startswith(f"{p['auc']:.3f}")
        assert row[6].startswith(f"{p['empirical_epsilon']:.3f}")
    group_rows = table_rows(dom, "groups")
    assert len(group_rows) == 1 + 2 * 3 and group_rows[3][3] == "too few examples to measure"
    for label in (
        "held-out accuracy against epsilon",
        "empirical epsilon against theoretical epsilon",
        "TPR at low FPR against epsilon",
    ):
        assert f'aria-label="{label}"' in dom
    screenshot(page, tmp_path)
    markdown = (grouped_csv.parent / "report" / "report.md").read_text()
    assert "| 1 | 1.00 (" in markdown and "too few examples to measure" in markdown


def test_constraints_are_read_again_from_cached_points_and_a_new_epsilon_trains_alone(
    first_sweep, grouped_csv, run_cli
):
    folder = grouped_csv.parent
    common = [*SIZE, "--group-col", "dialect", "--cache-dir", folder / "cache", "--output", folder / "again.json"]
    # No epsilon gives 99% accuracy in every group: exit 1, from the cached points alone.
    code, _, err = run_cli("sweep", grouped_csv, "--epsilons", "1,inf", "--min-accuracy", "0.99", *common)
    doc = json.loads((folder / "again.json").read_text())
    assert code == 1 and "threshold crossed: constraints missed at the best epsilon swept" in err
    assert doc["run"]["points_from_cache"] == 2 and doc["recommendation"]["epsilon"] is None
    assert "no epsilon swept meets every constraint" in doc["headline"]["text"]
    assert any("group planted: held-out accuracy" in m for m in doc["recommendation"]["missed"]["no DP"])
    # One more epsilon: only its point is computed.
    code, _, err = run_cli("sweep", grouped_csv, "--epsilons", "1,4,inf", *common)
    doc = json.loads((folder / "again.json").read_text())
    assert code == 0, err
    assert doc["run"]["points_from_cache"] == 2 and [p["label"] for p in doc["points"]] == ["1", "4", "no DP"]
    assert re.search(r"\(2 of 3 points from cache\)", err)


def test_an_interrupted_sweep_restarts_at_the_point_it_stopped(grouped_csv, tmp_path, monkeypatch):
    """Ctrl-C during a point's membership audit: its target model is kept (finished points are kept too:
    the test above) and the next run picks up from there."""
    import privaudit.sweep as sweep_module

    real = sweep_module.run_mia

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    settings = SweepSettings(epsilons=[math.inf], shadows=2, queries=2, workers=1, cache_dir=str(tmp_path))
    recipe = TrainingRecipe(epochs=3, seed=1)
    monkeypatch.setattr(sweep_module, "run_mia", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(grouped_csv, settings, recipe)
    [folder] = (tmp_path / "sweeps").iterdir()
    target = folder / "eps-no-DP" / "model.pt"
    assert target.is_file() and not (folder / "eps-no-DP" / "point.json").exists()
    trained_at = target.stat().st_mtime_ns
    monkeypatch.setattr(sweep_module, "run_mia", real)
    result = sweep(grouped_csv, settings, recipe)
    assert result.run["points_from_cache"] == 0 and target.stat().st_mtime_ns == trained_at  # not trained again
    assert (folder / "eps-no-DP" / "point.json").is_file()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"  # models and audit manifests: owner-only


def test_bad_sweep_settings_are_refused_before_any_training(grouped_csv, tmp_path, run_cli):
    cases = [
        (["--epsilons", "0,1"], "positive values"),
        (["--epsilons", "one"], "--epsilons takes values such as"),
        (["--group-col", "region"], "no column 'region'"),
        (["--max-tpr-at-fpr", "0.02:0.1"], "FPR"),
        (["--min-accuracy", "1.5"], "--min-accuracy must be in [0, 1]"),
    ]
    for options, message in cases:
        code, _, err = run_cli("sweep", grouped_csv, "--cache-dir", tmp_path, *options)
        assert code == 2 and message in err and "Traceback" not in err, (options, err)
    assert not (tmp_path / "sweeps").exists() or not any((tmp_path / "sweeps").rglob("model.pt"))
    with pytest.raises(PrivauditError, match="needs a data file"):
        sweep(None, SweepSettings(group_col="dialect", cache_dir=str(tmp_path)))


def test_the_config_sweep_section_runs_through_privaudit_audit(first_sweep, grouped_csv):
    folder = grouped_csv.parent
    config = folder / "privaudit.toml"
    config.write_text(
        f"""[tool.privaudit]
data = "{grouped_csv.name}"
seed = 3
cache_dir = "cache"

[tool.privaudit.train]
epochs = 6

[tool.privaudit.sweep]
epsilons = [1.0, inf]
shadows = 2
queries = 2
workers = 1
group_col = "dialect"
min_accuracy = 0.99
"""
    )
    result = run_audit(load_config(config))
    assert result.sections["sweep"].run["points_from_cache"] == 2  # the same points as the CLI's sweep
    assert not result.gate.passed
    assert result.gate.checks[0].metric == "sweep: constraints missed at the best epsilon swept"


@pytest.mark.slow
def test_full_demo_sweep_shows_the_trade_off(tmp_path):
    """The whole demo data set at epsilon 1, 8 and without DP, 4 shadows each: DP points stay under their
    theoretical epsilon, and accuracy and leakage both grow from epsilon 1 to no DP."""
    settings = SweepSettings(epsilons=[1, 8, math.inf], shadows=4, cache_dir=str(tmp_path))
    result = sweep(None, settings, TrainingRecipe(epochs=15))
    low, high, plain = result.points
    for point in (low, high):
        assert point.theoretical_epsilon is not None and point.empirical_epsilon <= point.theoretical_epsilon
    assert plain.heldout_accuracy.rate > low.heldout_accuracy.rate
    assert plain.auc > low.auc and plain.empirical_epsilon > low.empirical_epsilon
    assert all(not g.too_small for g in plain.groups)  # by label: 7 groups of ~250 members each


@pytest.mark.slow  # the canary audit's ModIvA over the vocabulary: ~30 s even on tiny data
def test_a_sweep_with_canaries_shows_their_exposure(grouped_csv, tmp_path):
    from privaudit.api import write_results
    from privaudit.canaries.audit import CanarySettings

    canary = CanarySettings(
        insert=2,
        repeats=[1, 8],
        template="my pin is {digit} {digit}",
        audit_canaries=0,
        modiva_steps=20,
        modiva_restarts=2,
    )
    settings = SweepSettings(
        epsilons=[math.inf], shadows=2, queries=0, workers=1, canary=canary, cache_dir=str(tmp_path)
    )
    result = sweep(grouped_csv, settings, TrainingRecipe(epochs=4, seed=2))
    summary = result.points[0].canary
    assert [g["repeat"] for g in summary["by_repeat"]] == [1, 8] and summary["space_bits"] == pytest.approx(
        math.log2(100)
    )
    assert all(0 <= g["exposure_mean"] <= summary["space_bits"] for g in summary["by_repeat"])
    write_results(result, report=tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'aria-label="mean canary exposure against epsilon"' in page
    assert "canary exposure (bits, mean at the most repeats)" in (tmp_path / "report" / "report.md").read_text()
