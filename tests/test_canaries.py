"""Canaries: templates, the insertion plan, and the `canary` command (ModIvA and exposure: test_modiva.py)."""

import json

import pytest

from privaudit.canaries import generate
from privaudit.canaries.generate import plan_canaries
from privaudit.canaries.templates import parse_template
from privaudit.errors import PrivauditError

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
    with pytest.raises(PrivauditError, match="more than 32 secret slots"):
        parse_template("{digit}x1000000")  # refused at once, not after minutes of expanding it


def test_a_learned_vocabulary_holds_every_symbol_of_the_template():
    """The built-in {word} list is not in the demo data; the canary run's vocabulary adds the alphabet
    (public) so every slot is one token, as ModIvA needs."""
    from privaudit.attacks.modiva import slot_layout
    from privaudit.demo import demo_dataset
    from privaudit.recipe import TrainingRecipe
    from privaudit.training import build_classifier

    data = demo_dataset(100, seed=0)
    template = parse_template("my password is {word} {word}")
    recipe = TrainingRecipe().resolved()
    with pytest.raises(PrivauditError, match="is not one token"):
        slot_layout(build_classifier(recipe, data.texts, data.label_names), template)
    classifier = build_classifier(recipe, data.texts, data.label_names, required_tokens=template.symbols)
    assert len(slot_layout(classifier, template).positions) == 2


def test_a_template_the_model_cannot_read_is_refused_before_training(run_cli, tmp_path):
    # The demo data are loaded (a second), nothing is trained: both refusals come from the settings.
    code, _, err = run_cli("canary", "--demo", "--template", "{digit}x33", "--report", tmp_path / "r")
    assert code == 2 and "more than 32 secret slots" in err
    long = "word " * 70 + "{digit}"
    code, _, err = run_cli("canary", "--demo", "--template", long, "--report", tmp_path / "r")
    assert code == 2 and "more than the model reads (--max-len 64)" in err
    assert not (tmp_path / "r").exists()


def test_plan_gives_shared_template_canaries_different_labels():
    labels = ["A", "B", "C", "D"]
    plan = plan_canaries(parse_template(PIN), 4, [1, 4], labels, seed=1, audit=200, decoys=1)  # 4 per count
    exposure = [c for c in plan.canaries if c.role == "exposure"]
    assert sorted(c.label for c in exposure) == sorted(labels * 2)
    assert [c.repeat for c in exposure] == [1, 1, 1, 1, 4, 4, 4, 4]
    # 4 canaries per count, 4 labels: no two of a count share a label in one run; the audit canaries: their own.
    assert plan.runs == 2 and {c.run for c in plan.canaries if c.role == "audit"} == {1}
    audit = [c for c in plan.canaries if c.role == "audit"]
    assert 70 < sum(c.repeat for c in audit) < 130 and {c.repeat for c in audit} == {0, 1}
    assert len({c.secret for c in plan.canaries}) == len(plan.canaries)
    inserted = [len(plan.inserted(run)) for run in range(plan.runs)]
    assert inserted == [4 * 1 + 4 * 4 + 8, sum(c.repeat for c in audit)]
    for text, _label, _run in plan.decoys:
        assert text.startswith("my pin code is")
    row = exposure[0].to_dict(show_secret=False)
    assert row["secret"] is None and row["text"] is None and "secret_hash" not in row  # brute-forceable


def test_secrets_and_audit_inclusion_are_not_drawn_from_the_recorded_seed(canary_secrets_source, monkeypatch):
    # The seed is in results.json: two plans from one seed must not share their secrets or inclusion bits
    # (10^4 secrets, 8 canaries; 200 inclusion bits), while the public label order follows it.
    monkeypatch.setattr(generate, "_unpredictable", canary_secrets_source)  # the real one, not the tests' stream
    plans = [plan_canaries(parse_template(PIN), 4, [1, 4], ["A", "B", "C", "D"], seed=1, audit=200) for _ in range(2)]
    secrets = [[c.secret for c in plan.canaries if c.role == "exposure"] for plan in plans]
    inclusion = [[c.repeat for c in plan.canaries if c.role == "audit"] for plan in plans]
    assert secrets[0] != secrets[1] and inclusion[0] != inclusion[1]
    assert [[c.label for c in plan.canaries] for plan in plans][0] == [c.label for c in plans[1].canaries]


def test_canaries_sharing_a_label_and_a_repeat_count_go_to_different_training_runs():
    labels = ["A", "B", "C"]
    plan = plan_canaries(parse_template(PIN), 7, [1, 16], labels, seed=3, audit=10, decoys=1)
    exposure = [c for c in plan.canaries if c.role == "exposure"]
    assert plan.runs == 4  # ceil(7 / 3) runs, then one for the audit canaries
    in_run = [(c.run, c.repeat, c.label) for c in exposure]
    assert len(set(in_run)) == len(in_run)
    assert {c.run for c in plan.canaries if c.role == "audit"} == {3}
    assert sum(len(plan.inserted(run)) for run in range(plan.runs)) == (
        7 * (1 + 16) + sum(c.repeat for c in plan.canaries if c.role == "audit") + len(plan.decoys)
    )
    for text, _, run in plan.decoys:  # a decoy trains with the canary it is the decoy of
        assert text in plan.inserted(run).texts
    one_label = plan_canaries(parse_template(PIN), 7, [1, 16], labels, seed=3, label="B")
    assert one_label.runs == 1  # the user asked for one label: they share it (no audit canaries here)


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
        "--references",
        "1",
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
    assert [g["repeat"] for g in doc["by_repeat"]] == [1, 8] and [g["canaries"] for g in doc["by_repeat"]] == [2, 2]
    for g in doc["by_repeat"]:  # every rate carries its exact interval, also the calibrated one
        for rate in (g["enumeration_top1"], g["calibrated_top1"], g["modiva_alphabet"]["swap_extraction"]):
            assert rate["trials"] == 2 and rate["interval"][0] <= rate["rate"] <= rate["interval"][1]
    assert "1 reference models" in err and "x one target training" in " ".join(err.split())
    assert all(row["secret"] is None for row in doc["canaries"])
    assert "<svg" in (report / "report.html").read_text()
    code, md, err = run_cli("report", report / "results.json", "--format", "markdown")
    assert code == 0 and "| repeat |" in md
    # A canary file of schema 2 (rates were bare numbers) is refused by name, not rendered as a crash.
    for g in doc["by_repeat"]:
        g["enumeration_top1_rate"] = g.pop("enumeration_top1")["rate"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**doc, "schema_version": 2}))
    code, _, err = run_cli("report", old, "--format", "markdown")
    assert code == 2 and "'canary' results file (schema 2)" in err and "rerun the audit" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--template", "hello world"], "no secret slot"),
        (["--label", "NotALabel"], "not in the data"),
        (["--insert", "0"], "at least 1"),
        (["--repeat", "1,x"], "--repeat takes values such as 1,4,16"),
        (["--gradient-canaries", "1"], "--gradient-canaries 0 or at least 2"),
        (["--audit-canaries", "-1"], "--audit-canaries must be 0 or more"),
    ],
)
def test_cli_canary_bad_input(run_cli, args, message):
    code, _, err = run_cli("canary", "--demo", "--epochs", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_canary_with_model_refuses_dp_flags_instead_of_ignoring_them(run_cli, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(b"not read: the options are refused first")
    code, _, err = run_cli("canary", "--model", model, "--dp", "--target-epsilon", "1")
    assert code == 2 and "drop the DP options" in err
