import json

import numpy as np
import pytest

from privaudit.attacks.modiva import modiva_extract
from privaudit.canaries.exposure import exact_exposure, extrapolated_exposure
from privaudit.canaries.generate import plan_canaries
from privaudit.canaries.templates import parse_template
from privaudit.data import TextDataset
from privaudit.demo import demo_dataset
from privaudit.errors import PrivauditError
from privaudit.recipe import TrainingRecipe
from privaudit.training import fit

PIN = "my pin code is {digit} {digit} {digit} {digit}"


def test_templates_parse_and_count_their_secrets():
    t = parse_template(PIN)
    assert t.space_size == 10**4 and t.slots == ["digit"] * 4
    assert t.render(("1", "2", "3", "4")) == "my pin code is 1 2 3 4"
    phone = parse_template("call me at {digit}x10 please")
    assert phone.space_size == 10**10
    assert phone.render(tuple("0123456789")) == "call me at 0 1 2 3 4 5 6 7 8 9 please"
    assert parse_template("my password is {word}").public_words == "my password is"
    assert parse_template("pin {digit}{digit}").render(("4", "2")) == "pin 4 2"
    with pytest.raises(PrivauditError, match="no secret slot"):
        parse_template("no secret here")
    with pytest.raises(PrivauditError, match="unknown slot"):
        parse_template("my {emoji}")


def test_plan_gives_shared_template_canaries_different_labels():
    labels = ["A", "B", "C", "D"]
    plan = plan_canaries(parse_template(PIN), 8, [1, 4], labels, seed=1, audit=200, decoys=1)
    exposure = [c for c in plan.canaries if c.role == "exposure"]
    assert sorted(c.label for c in exposure) == sorted(labels * 2)
    assert [c.repeat for c in exposure] == [1, 1, 1, 1, 4, 4, 4, 4]
    audit = [c for c in plan.canaries if c.role == "audit"]
    assert 70 < sum(c.repeat for c in audit) < 130 and {c.repeat for c in audit} == {0, 1}
    assert len({c.secret for c in plan.canaries}) == len(plan.canaries)
    inserted = plan.inserted()
    assert len(inserted) == 4 * 1 + 4 * 4 + sum(c.repeat for c in audit) + 8
    for text, _label in plan.decoys:
        assert text.startswith("my pin code is")
    row = exposure[0].to_dict(show_secret=False)
    assert row["secret"] is None and row["text"] is None and "secret_hash" not in row  # brute-forceable


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "at least 1"),
        ({"label": "Nope"}, "not in the data"),
        ({"repeats": [0]}, "positive counts"),
    ],
)
def test_plan_rejects_bad_input(kwargs, message):
    args = {"template": parse_template(PIN), "n": 4, "repeats": [1], "labels": ["A", "B"], "seed": 0, **kwargs}
    with pytest.raises(PrivauditError, match=message):
        plan_canaries(**args)


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


def test_cli_canary_gate_and_report(run_cli, tiny_csv, tmp_path):
    report = tmp_path / "report"
    code, out, err = run_cli(
        "canary",
        "--data",
        tiny_csv,
        "--insert",
        "2",
        "--repeat",
        "1,8",
        "--audit-canaries",
        "20",
        "--epochs",
        "4",
        "--modiva-steps",
        "50",
        "--modiva-restarts",
        "4",
        "--template",
        "my pin is {digit} {digit}",
        "--max-exposure",
        "0.5",
        "--report",
        report,
        columns=80,
    )
    assert code == 1, err
    assert "threshold crossed: canary exposure" in err
    # A CI log's 80 columns: every figure is there in full (tables transpose rather than truncate).
    assert "…" not in out and max(map(len, out.splitlines())) <= 80
    assert "ModIvA (vocabulary)" in out and "position acc. (alphabet)" in out
    doc = json.loads((report / "results.json").read_text())
    assert [g["repeat"] for g in doc["by_repeat"]] == [1, 8]
    assert all(row["secret"] is None for row in doc["canaries"])
    assert "<svg" in (report / "report.html").read_text()
    code, md, err = run_cli("report", report / "results.json", "--format", "markdown")
    assert code == 0 and "| repeat |" in md


@pytest.mark.parametrize(
    "args, message",
    [
        (["--template", "hello world"], "no secret slot"),
        (["--label", "NotALabel"], "not in the data"),
        (["--insert", "0"], "at least 1"),
        (["--repeat", "1,x"], "--repeat takes values such as 1,4,16"),
    ],
)
def test_cli_canary_bad_input(run_cli, args, message):
    code, _, err = run_cli("canary", "--demo", "--epochs", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err


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


def test_canary_with_model_refuses_dp_flags_instead_of_ignoring_them(run_cli, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(b"not read: the options are refused first")
    code, _, err = run_cli("canary", "--model", model, "--dp", "--target-epsilon", "1")
    assert code == 2 and "drop the DP options" in err
