"""Membership inference on small real runs: the demo data, a small CNN, a few shadow models."""

import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from privaudit.api import mia, train
from privaudit.errors import PrivauditError
from privaudit.mia import MiaSettings, attack_metrics
from privaudit.recipe import DPSettings, TrainingRecipe
from privaudit.source import demo_source, load_source

SMALL = demo_source(size=300, seed=7)
# Shadow models trained in this process: the worker-pool path is tested in the slow lane.
SHADOWS = dict(shadows=2, workers=1, bootstrap=200, queries=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("mia")


@pytest.fixture(scope="module")
def leaky_model(workdir):
    path = workdir / "cnn.pt"
    train(SMALL, TrainingRecipe(epochs=6, seed=3), out=path, split_seed=3)
    return path


@pytest.fixture(scope="module")
def first_run(leaky_model, workdir):
    settings = MiaSettings(cache_dir=str(workdir / "cache"), **SHADOWS)
    return mia(leaky_model, settings).to_dict()  # the results.json document


def test_all_attacks_from_one_pool(first_run):
    assert set(first_run["attacks"]) == {
        "loss",
        "vocabulary",
        "shadow",
        "lira",
        "lira-offline",
        "rmia",
        "rmia-offline",
        "lira-vocabulary",
        "lira-augmented",
        "rmia-augmented",
        "label-only",
    }
    assert first_run["audit_set"] == {"members": 150, "nonmembers": 150, "population": 300, "shadows": 2}
    assert first_run["run"]["shadows_from_cache"] == 0
    for figures in first_run["attacks"].values():
        lo, hi = figures["auc_ci"]
        assert 0 <= lo <= figures["auc"] <= hi <= 1
        assert [row["fpr"] for row in figures["tpr_at_fpr"]] == [0.001, 0.01, 0.1]
        assert figures["tpr_at_fpr"][0]["too_few_nonmembers"]  # 150 non-members cannot show FPR 0.1%
    # A non-DP CNN that fits its members leaks: the best attacks see it.
    assert max(a["auc"] for a in first_run["attacks"].values()) > 0.6
    assert first_run["headline"]["theoretical_epsilon"] is None
    assert len(first_run["per_example"]["scores"]["lira"]) == 300
    assert "text" not in first_run["vulnerable"][0]
    # Per-example rows carry keyed fingerprints: whoever holds the report and a candidate text cannot
    # look it up (the unkeyed hash of a member's text appears nowhere).
    report = json.dumps(first_run)
    assert not any(fp in report for fp in load_source(SMALL).fingerprints())


def test_every_figure_recomputes_exactly_from_results_json(first_run):
    """results.json keeps the scores at full precision: every attack's figures come back bit for bit."""
    doc = json.loads(json.dumps(first_run))  # what a reader of the file has
    settings = MiaSettings(**doc["settings"])
    is_member = np.array(doc["per_example"]["is_member"], bool)
    joint = 1 - 0.05 / len(doc["attacks"])
    for name, figures in doc["attacks"].items():
        scores = np.array(doc["per_example"]["scores"][name])
        again = attack_metrics(scores, is_member, doc["delta"], settings, joint).to_dict()
        assert json.loads(json.dumps(again)) == figures, name


def test_queries_are_cached_with_their_shadows(first_run, leaky_model, workdir):
    """A new query set is answered by the cached shadow models (no retraining); a cache entry without its
    model (an older cache) is retrained, so that every output comes from one model."""
    cache = workdir / "cache"
    settings = MiaSettings(cache_dir=str(cache), attack="label-only", **{**SHADOWS, "queries": 1})
    result = mia(leaky_model, settings).to_dict()
    assert result["run"]["shadows_from_cache"] == 2 and result["primary_attack"] == "label-only"
    assert set(result["attacks"]) == set(first_run["attacks"])
    assert len(list((cache / "shadows").glob("*.queries-*.pt"))) == 4  # 2 shadows x 2 query sets
    none = mia(leaky_model, MiaSettings(cache_dir=str(cache), **{**SHADOWS, "queries": 0})).to_dict()
    assert none["run"]["shadows_from_cache"] == 2
    assert not {"label-only", "lira-augmented", "rmia-augmented"} & set(none["attacks"])
    # Shadow models and their outputs are as sensitive as the training data: owner-only, whatever the umask.
    assert (cache / "shadows").stat().st_mode & 0o077 == 0
    assert all(f.stat().st_mode & 0o077 == 0 for f in (cache / "shadows").iterdir())
    for model in (cache / "shadows").glob("*.model.pt"):
        model.unlink()
    again = mia(leaky_model, MiaSettings(cache_dir=str(cache), **{**SHADOWS, "queries": 3})).to_dict()
    assert again["run"]["shadows_from_cache"] == 0
    assert again["per_example"]["scores"]["lira"] == first_run["per_example"]["scores"]["lira"]  # same models
    with pytest.raises(PrivauditError, match="needs --queries 1 or more"):
        mia(leaky_model, MiaSettings(cache_dir=str(cache), attack="label-only", **{**SHADOWS, "queries": 0}))


def test_damaged_cache_files_are_rebuilt_in_the_same_run(first_run, leaky_model, tmp_path, workdir):
    """Bit rot, truncation, or a planted pickle in the shadow cache: never used (nor executed), rebuilt in
    the same run, said so, and the numbers are those of an intact cache."""
    cache = tmp_path / "cache"
    shutil.copytree(workdir / "cache", cache)
    shadows = cache / "shadows"
    logits = sorted(p for p in shadows.glob("*.pt") if "." not in p.stem)
    flipped = bytearray(logits[0].read_bytes())
    flipped[-200] ^= 0x01  # one bit of the tensor data: the file still loads, its digest no longer matches
    logits[0].write_bytes(bytes(flipped))
    queries = sorted(shadows.glob("*.queries-*.pt"))  # of every query set asked for so far
    for path in queries[1:]:
        path.write_bytes(path.read_bytes()[:100])  # truncated
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pickle ran",))

    queries[0].write_bytes(pickle.dumps({"logits": Payload()}))
    again = mia(leaky_model, MiaSettings(cache_dir=str(cache), **SHADOWS)).to_dict()
    assert not marker.exists()
    assert again["run"]["damaged_cache_files_rebuilt"] >= 2
    assert again["per_example"] == first_run["per_example"]


def test_second_run_reuses_cached_shadows_and_gives_the_same_numbers(first_run, leaky_model, workdir):
    again = mia(leaky_model, MiaSettings(cache_dir=str(workdir / "cache"), **SHADOWS)).to_dict()
    assert again["run"]["shadows_from_cache"] == 2
    assert again["per_example"] == first_run["per_example"]
    assert again["attacks"]["rmia"]["auc_ci"] == first_run["attacks"]["rmia"]["auc_ci"]


@pytest.mark.slow
def test_worker_pool_gives_the_numbers_of_one_process(first_run, leaky_model, tmp_path):
    """Shadow models trained by two spawned workers (the CLI's default on a CPU) are the same models."""
    pooled = mia(leaky_model, MiaSettings(cache_dir=str(tmp_path), **{**SHADOWS, "workers": 2})).to_dict()
    assert pooled["run"]["shadows_from_cache"] == 0
    assert pooled["per_example"] == first_run["per_example"]


@pytest.mark.slow
def test_dp_model_leaks_less_than_its_guarantee(workdir):
    recipe = TrainingRecipe(epochs=15, seed=3, dp=DPSettings(target_epsilon=1.0))
    path = workdir / "dp.pt"
    train(demo_source(size=800, seed=7), recipe, out=path)
    result = mia(path, MiaSettings(shadows=4, cache_dir=str(workdir / "cache"), workers=2, bootstrap=200)).to_dict()
    head = result["headline"]
    assert head["theoretical_epsilon"] <= 1.0
    assert head["empirical_epsilon"] < head["theoretical_epsilon"]
    assert not head["violation"]
    assert all(abs(a["auc"] - 0.5) < 0.08 for a in result["attacks"].values())


def test_cli_gate_exit_codes_and_reports(run_cli, leaky_model, workdir):
    cache = workdir / "cache"
    report = workdir / "report"
    code, out, err = run_cli(
        "mia",
        leaky_model,
        "--shadows",
        "2",
        "--workers",
        "1",
        "--cache-dir",
        cache,
        "--report",
        report,
        "--max-auc",
        "0.01",
        "--max-tpr-at-fpr",
        "0.1:1.0",
        columns=80,
    )
    assert code == 1
    assert "threshold crossed: AUC = " in err and "> 0.01 (strongest attack: " in err
    table = out[: out.index("theoretical epsilon") if "theoretical epsilon" in out else out.index("no theoretical")]
    assert "…" not in table and max(map(len, table.splitlines())) <= 80  # transposed: full figures in 80 columns
    assert all(name in out for name in ("rmia-offline", "lira-augmented", "label-only", "emp. epsilon (95%)"))
    assert "TPR at FPR 0.1" not in err  # that threshold held
    doc = json.loads((report / "results.json").read_text())
    assert doc["gate"]["passed"] is False
    html = (report / "report.html").read_text()
    assert "<svg" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert doc["headline"]["text"] in (report / "report.md").read_text()
    code, out, err = run_cli(
        "mia", leaky_model, "--shadows", "2", "--workers", "1", "--cache-dir", cache, "--max-auc", "0.99"
    )
    assert code == 0, err
    code, xml, err = run_cli("report", report / "results.json", "--format", "junit")
    assert code == 0
    suite = ET.fromstring(xml)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["AUC", "TPR at FPR 0.1"]
    assert [c.find("failure") is not None for c in cases] == [True, False]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack", "magic"], "'magic' is not one of 'loss', 'vocabulary'"),
        (["--shadows", "1"], "needs --shadows 2 or more"),
        (["--members", "x.csv"], "go together"),
        (["--nonmembers", "x.csv"], "go together"),
        (["--max-tpr-at-fpr", "0.5"], "expects FPR:TPR"),
        (["--max-tpr-at-fpr", "0.02:0.1"], "not on the reported grid"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address needs --backend ray"),
        (["--backend", "slurm"], "'slurm' is not one of 'local', 'ray'"),
    ],
)
def test_cli_bad_usage_exits_2(run_cli, leaky_model, workdir, args, message):
    code, _, err = run_cli("mia", leaky_model, "--shadows", "2", "--cache-dir", workdir / "cache", *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_unknown_labels_and_empty_population_are_user_errors(run_cli, leaky_model, workdir, tmp_path):
    members = tmp_path / "m.csv"
    members.write_text("text,label\nplay jazz,PlayMusic\nwhat is this,NotAnIntent\n")
    nonmembers = tmp_path / "n.csv"
    nonmembers.write_text("text,label\nset an alarm,SetAlarm\nrain in Oslo,GetWeather\n")
    code, _, err = run_cli(
        "mia", leaky_model, "--members", members, "--nonmembers", nonmembers, "--attack", "loss", "--shadows", "0"
    )
    assert code == 2 and "'NotAnIntent'" in err and "not among the model's labels" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    code, _, err = run_cli("mia", leaky_model, "--population", empty, "--attack", "loss", "--shadows", "0")
    assert code == 2 and "no examples" in err


def test_model_without_its_manifest_needs_member_files(leaky_model, tmp_path):
    path = tmp_path / "shipped.pt"
    shutil.copy(leaky_model, path)  # the model file alone, as it ships
    with pytest.raises(PrivauditError, match="--members and --nonmembers"):
        mia(path, MiaSettings(attack="loss", shadows=0))


def test_loss_attack_alone_needs_no_shadows(leaky_model, tmp_path):
    result = mia(leaky_model, MiaSettings(attack="loss", shadows=0, cache_dir=str(tmp_path), bootstrap=100)).to_dict()
    assert list(result["attacks"]) == ["loss", "vocabulary", "label-only"]  # the attacks that need no shadow model
    assert not (tmp_path / "shadows").exists()


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A "fine-tuned" tiny Hugging Face classifier and the checkpoint it came from, plus member files."""
    from hf_checkpoints import save_tiny_bert

    from privaudit.demo import demo_dataset

    root = tmp_path_factory.mktemp("hf")
    data = demo_dataset(80, seed=9)
    for name, seed in (("base", 0), ("tuned", 1)):
        save_tiny_bert(root / name, data.texts, data.label_names, seed=seed)
    import csv

    for name, part in (("members", data.subset(range(40))), ("nonmembers", data.subset(range(40, 80)))):
        with open(root / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(part.texts, part.labels))
    return root


def test_hugging_face_directory_as_target(run_cli, hf_dirs, tmp_path):
    files = ["--members", hf_dirs / "members.csv", "--nonmembers", hf_dirs / "nonmembers.csv"]
    code, out, err = run_cli(
        "mia", hf_dirs / "tuned", *files, "--shadows", "0", "--attack", "loss", "--output", tmp_path / "r.json"
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["audit_set"]["members"] == 40 and list(doc["attacks"]) == ["loss", "vocabulary", "label-only"]
    code, _, err = run_cli("mia", hf_dirs / "tuned", *files, "--shadows", "2")
    assert code == 2 and "--base-model" in err
    code, _, err = run_cli("mia", hf_dirs / "tuned", "--shadows", "0", "--attack", "loss")
    assert code == 2 and "give --members and --nonmembers" in err
    code, _, err = run_cli(
        "mia",
        hf_dirs / "tuned",
        *files,
        "--shadows",
        "2",
        "--workers",
        "1",
        "--base-model",
        hf_dirs / "base",
        "--cache-dir",
        tmp_path / "cache",
        "--output",
        tmp_path / "r2.json",
    )
    assert code == 0, err
    assert "rmia" in json.loads((tmp_path / "r2.json").read_text())["attacks"]


def test_vocabulary_attack_sees_a_learned_vocabulary_and_not_a_hashed_one(tmp_path):
    """A vocabulary learned from the members tells them apart whatever the weights' noise; the hashed
    vocabulary DP-SGD uses by default gives the attack nothing (AUC exactly 0.5)."""
    rng = np.random.default_rng(0)
    rows = ["text,label"] + [
        f"play song {''.join(rng.choice(list('bcdfgklmnprstvz'), 7))} now,{'AB'[i % 2]}" for i in range(300)
    ]
    data = tmp_path / "rare.csv"
    data.write_text("\n".join(rows) + "\n")
    aucs = {}
    for name, dp in (("learned", None), ("hashed", DPSettings(noise_multiplier=1.0))):
        path = tmp_path / f"{name}.pt"
        train(data, TrainingRecipe(epochs=1, dp=dp), out=path)
        result = mia(path, MiaSettings(attack="loss", shadows=0, bootstrap=50)).to_dict()
        aucs[name] = result["attacks"]["vocabulary"]["auc"]
    assert aucs["learned"] > 0.95 and aucs["hashed"] == 0.5
    # LiRA with the vocabulary's evidence: only where there is a learned vocabulary to read
    with pytest.raises(PrivauditError, match="needs a vocabulary learned from the training texts"):
        mia(tmp_path / "hashed.pt", MiaSettings(attack="lira-vocabulary", shadows=2))


def _children(pid: int) -> set[int]:
    listing = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in listing.split()}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; only its exit status is left


@pytest.mark.slow
def test_sigterm_stops_the_shadow_workers(leaky_model, tmp_path):
    """A cancelled CI job sends SIGTERM to privaudit alone: its worker processes must stop with it."""
    # The same model, recorded as trained for 1,000 epochs: each shadow would train for minutes, so a
    # worker still alive after the wait below was left running, not finishing.
    from dataclasses import replace

    from privaudit.api import save_model
    from privaudit.bundle import load_bundle
    from privaudit.manifest import load_manifest, manifest_path

    bundle = load_bundle(leaky_model)
    bundle.recipe = replace(bundle.recipe, epochs=1000)
    bundle.manifest = load_manifest(manifest_path(leaky_model), leaky_model)
    model = tmp_path / "long.pt"
    save_model(bundle, model)
    command = [
        sys.executable,
        "-m",
        "privaudit",
        "mia",
        str(model),
        "--shadows",
        "4",
        "--workers",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while len(seen) < 3 and proc.poll() is None:  # two workers and multiprocessing's resource tracker
        seen |= _children(proc.pid)
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    for _ in range(300):  # it stops within a minute, not when the (minutes-long) shadows would be done
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is not None, "privaudit still running a minute after SIGTERM"
    _, err = proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    # Terminated, not left to finish their shadow (a shadow takes far longer than this wait).
    for _ in range(150):
        if not any(_running(pid) for pid in seen):
            break
        time.sleep(0.2)
    assert not any(_running(pid) for pid in seen)
