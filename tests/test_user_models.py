"""Bring your own model and trainer (privaudit.usermodel): the four examples in tests/examples, each trained
by its own code and audited with `privaudit mia --loader ... --trainer ...`, and errors in user code."""

import csv
import importlib
import json

import pytest
from hf_checkpoints import save_tiny_bert

from privaudit.demo import demo_dataset

LABELS = demo_dataset(300, seed=9).label_names


@pytest.fixture(scope="module")
def audit_files(tmp_path_factory):
    """Members (what each example's target is trained on) and non-members, from one demo sample."""
    folder = tmp_path_factory.mktemp("user-models")
    data = demo_dataset(300, seed=9)  # as LABELS
    for name, rows in (("members", range(0, 300, 2)), ("nonmembers", range(1, 300, 2))):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((data.texts[i], data.labels[i]) for i in rows)
    return folder


def members_of(folder):
    with open(folder / "members.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def audit_example(name, folder, run_cli, *extra):
    """Train the target with the example's own code, save it with its own format, then audit it."""
    example = importlib.import_module(f"examples.{name}")
    texts, labels = members_of(folder)
    target = folder / f"{name}.model"
    example.save(example.train(texts, labels, seed=0), str(target))
    out = folder / f"{name}.json"
    code, stdout, err = run_cli(
        "mia",
        target,
        "--loader",
        f"examples.{name}:load_model",
        "--trainer",
        f"examples.{name}:train",
        "--members",
        folder / "members.csv",
        "--nonmembers",
        folder / "nonmembers.csv",
        "--shadows",
        "2",
        "--queries",
        "2",
        "--workers",
        "1",
        "--cache-dir",
        folder / "cache",
        "--output",
        out,
        *extra,
    )
    assert code == 0, err
    return json.loads(out.read_text()), stdout


@pytest.mark.parametrize("name", ["torch_lstm", "sklearn_tfidf"])
def test_a_users_own_model_and_trainer_leak_and_privaudit_sees_it(name, audit_files, run_cli):
    doc, stdout = audit_example(name, audit_files, run_cli)
    assert doc["model"]["arch"] == f"your model (examples.{name}:load_model)"
    assert doc["model"]["recipe"] == {"trainer": f"examples.{name}:train"}
    assert doc["audit_set"] == {"members": 150, "nonmembers": 150, "population": 300, "shadows": 2}
    assert doc["attacks"]["vocabulary"]["auc"] == 0.5  # no tokenizer to read: nothing claimed
    assert doc["attacks"]["lira"]["auc"] > 0.6 and doc["theoretical"] is None
    assert "no theoretical epsilon" in doc["headline"]["text"]


def test_an_opacus_model_shows_opacus_epsilon_next_to_the_empirical_bound(audit_files, run_cli):
    pytest.importorskip("opacus")
    doc, _ = audit_example("opacus_dp", audit_files, run_cli)
    theoretical = doc["theoretical"]
    assert theoretical["accountant"].startswith("Opacus") and theoretical["delta"] == 1e-5
    assert 0 < theoretical["epsilon"] < 50 and theoretical["noise_multiplier"] == 1.0
    assert doc["headline"]["text"].startswith(f"theoretical epsilon {theoretical['epsilon']:.2f}")
    assert doc["headline"]["empirical_epsilon"] <= theoretical["epsilon"] and not doc["headline"]["violation"]


def test_a_transformers_trainer_fine_tune_of_a_local_checkpoint(audit_files, run_cli, monkeypatch):
    pytest.importorskip("accelerate")
    texts, _ = members_of(audit_files)
    monkeypatch.setenv("BASE_MODEL", str(save_tiny_bert(audit_files / "base", texts, None)))
    doc, _ = audit_example("hf_trainer", audit_files, run_cli)
    assert set(doc["attacks"]) >= {"lira", "rmia", "loss"} and doc["run"]["shadows_from_cache"] == 0
    assert doc["attacks"]["loss"]["auc"] > 0.5


def test_shadows_of_a_users_trainer_are_cached_until_its_source_changes(audit_files, run_cli, tmp_path, monkeypatch):
    """A second audit reuses the shadows; editing the trainer's file trains them again."""
    package = tmp_path / "mine"
    package.mkdir()
    source = importlib.import_module("examples.torch_lstm").__file__
    (package / "__init__.py").write_text("")
    (package / "audit.py").write_text(open(source, encoding="utf-8").read())
    monkeypatch.chdir(tmp_path)  # the CLI finds `mine.audit` in the current folder
    common = [
        "--loader",
        "mine.audit:load_model",
        "--trainer",
        "mine.audit:train",
        "--members",
        audit_files / "members.csv",
        "--nonmembers",
        audit_files / "nonmembers.csv",
        "--shadows",
        "2",
        "--queries",
        "0",
        "--workers",
        "1",
        "--cache-dir",
        tmp_path / "cache",
        "--output",
        tmp_path / "out.json",
    ]
    module = importlib.import_module("examples.torch_lstm")
    texts, labels = members_of(audit_files)
    module.save(module.train(texts, labels, seed=0), str(tmp_path / "target.pt"))
    for edit, cached in (("", 0), ("", 2), ("\n# edited\n", 0)):
        with open(package / "audit.py", "a", encoding="utf-8") as handle:
            handle.write(edit)
        code, _, err = run_cli("mia", tmp_path / "target.pt", *common)
        assert code == 0, err
        assert json.loads((tmp_path / "out.json").read_text())["run"]["shadows_from_cache"] == cached


@pytest.mark.parametrize(
    "body, message",
    [
        ("def load_model(path):\n    return {}['missing']\n", "your function broken_user_code:load_model raised"),
        ("def load_model(path):\n    return object()\n", "without `labels`"),
        (
            "import numpy as np\nclass M:\n    labels = ['a', 'b']\n    def logits(self, texts):\n"
            "        return np.zeros((len(texts), 2))\ndef load_model(path):\n    return M()\n",
            "are not among the model's labels (a, b)",
        ),
        (
            f"import numpy as np\nclass M:\n    labels = {LABELS!r}\n    def logits(self, texts):\n"
            "        return np.zeros((len(texts), 3))\ndef load_model(path):\n    return M()\n",
            f"expected (300, {len(LABELS)})",
        ),
        ("import not_a_module_anywhere\ndef load_model(path):\n    pass\n", "importing broken_user_code"),
        ("def something_else():\n    pass\n", "has no function 'load_model'"),
    ],
)
def test_errors_in_user_code_are_reported_as_the_users(body, message, audit_files, run_cli, tmp_path, monkeypatch):
    # One module name per case: a module once imported stays imported in this process.
    module = f"broken_user_code_{abs(hash(body)) % 10**8}"
    (tmp_path / f"{module}.py").write_text(body)
    message = message.replace("broken_user_code", module)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        "mia",
        tmp_path / "model.bin",
        "--loader",
        f"{module}:load_model",
        "--members",
        audit_files / "members.csv",
        "--nonmembers",
        audit_files / "nonmembers.csv",
        "--shadows",
        "0",
        "--attack",
        "loss",
        "--queries",
        "0",
    )
    assert code == 2 and message in err, err
    assert "internal error" not in err and "privaudit/usermodel.py" not in err
    if "raised" in message:  # the user's own traceback: their file, their line, their exception
        assert f"{module}.py" in err and "line 2" in err and "KeyError: 'missing'" in err


def test_a_users_model_needs_its_trainer_for_shadows_and_its_audit_set(audit_files, run_cli):
    loader = ["--loader", "examples.torch_lstm:load_model"]
    code, _, err = run_cli(
        "mia", "m.pt", *loader, "--members", audit_files / "members.csv", "--nonmembers", audit_files / "nonmembers.csv"
    )
    assert code == 2 and "give --trainer" in err
    code, _, err = run_cli("mia", "m.pt", *loader, "--trainer", "examples.torch_lstm:train")
    assert code == 2 and "give --members and --nonmembers" in err
    code, _, err = run_cli("mia", "--trainer", "examples.torch_lstm:train", "--demo")
    assert code == 2 and "give --loader too" in err


def test_the_config_target_section_audits_a_users_model(audit_files, tmp_path):
    """[tool.privaudit.target] through `privaudit audit`: the loader, the trainer and the audit set's files,
    paths relative to the file, the module found beside it."""
    from privaudit.audit import run_audit
    from privaudit.config import load_config

    module = importlib.import_module("examples.sklearn_tfidf")
    (tmp_path / "my_tfidf.py").write_text(open(module.__file__, encoding="utf-8").read())
    texts, labels = members_of(audit_files)
    module.save(module.train(texts, labels, seed=0), str(tmp_path / "model.joblib"))
    config = tmp_path / "privaudit.toml"
    config.write_text(
        f"""[tool.privaudit]
model = "model.joblib"
cache_dir = "cache"

[tool.privaudit.target]
loader = "my_tfidf:load_model"
trainer = "my_tfidf:train"
members = "{audit_files / "members.csv"}"
nonmembers = "{audit_files / "nonmembers.csv"}"

[tool.privaudit.mia]
shadows = 2
queries = 0
workers = 1

[tool.privaudit.thresholds]
max_auc = 0.55
"""
    )
    result = run_audit(load_config(config))
    assert result.sections["mia"].model["arch"] == "your model (my_tfidf:load_model)"
    assert not result.gate.passed and result.gate.checks[0].metric == "mia: AUC"


@pytest.mark.slow
def test_a_users_trainer_runs_in_the_shadow_worker_pool(audit_files, run_cli):
    """Two worker processes (spawned: they import the user's module themselves) give the shadows the
    in-process run gives."""
    first, _ = audit_example("sklearn_tfidf", audit_files, run_cli, "--cache-dir", audit_files / "pool-a")
    second, _ = audit_example(
        "sklearn_tfidf", audit_files, run_cli, "--cache-dir", audit_files / "pool-b", "--workers", "2"
    )
    assert second["run"]["shadows_from_cache"] == 0
    assert second["per_example"]["scores"] == first["per_example"]["scores"]


def canary_through(name, folder, run_cli, *extra, template="my door code is {digit} {digit}"):
    """`privaudit canary --trainer` with an example's own trainer: 7 canaries per count (one per intent),
    inserted 1 and 16 times, 20 audit canaries in a run of their own."""
    out = folder / f"{name}-canary.json"
    code, stdout, err = run_cli(
        "canary",
        "--trainer",
        f"examples.{name}:train",
        "--data",
        folder / "members.csv",
        "--template",
        template,
        "--insert",
        "7",
        "--repeat",
        "1,16",
        "--audit-canaries",
        "20",
        "--modiva-steps",
        "30",
        "--modiva-restarts",
        "2",
        "--output",
        out,
        *extra,
    )
    assert code == 0, err
    return json.loads(out.read_text()), stdout


def test_the_canary_audit_trains_with_a_users_trainer_and_inverts_its_model(audit_files, run_cli):
    """The LSTM example's own trainer trains every canary run; its white-box methods let ModIvA run on it;
    secrets inserted 16 times are exposed and read out, far more than those seen once."""
    doc, stdout = canary_through("torch_lstm", audit_files, run_cli)
    assert doc["model"]["arch"] == "your trainer" and doc["model"]["trainer"].startswith("examples.torch_lstm:train@")
    assert doc["model"]["training_runs"] == 2
    assert doc["modiva"] == {"objective": "target log-odds", "not_applicable": None}
    once, often = doc["by_repeat"]
    assert often["exposure_mean"] > once["exposure_mean"] + 1 and often["exposure_mean"] > 4.5  # of 6.64 bits
    assert often["enumeration_top1"]["rate"] >= 0.5
    assert often["modiva_alphabet"]["swap_extraction"]["rate"] >= 0.5  # ModIvA through the user's forward_embeds
    assert doc["one_run"]["canaries"] == 20 and doc["theoretical"] is None
    assert "n/a" not in stdout


def test_a_black_box_users_model_gets_every_canary_figure_but_modiva(audit_files, run_cli, tmp_path):
    """scikit-learn gives no gradients: exposure, enumeration and the one-run audit work, ModIvA is reported
    as not applicable (in the table, results.json and the reports), and nothing crashes. (Word slots: its
    TF-IDF tokenizer drops one-character tokens.)"""
    words = "my secret words are {word} {word}"
    doc, stdout = canary_through(
        "sklearn_tfidf", audit_files, run_cli, "--references", "1", "--report", tmp_path / "r", template=words
    )
    assert doc["modiva"]["not_applicable"].startswith("ModIvA not applicable: the model gives no white-box access")
    assert all(g["modiva_alphabet"] is None and g["modiva_vocab"] is None for g in doc["by_repeat"])
    assert all(g["calibrated_top1"] is not None for g in doc["by_repeat"])  # the reference: the user's trainer too
    once, often = doc["by_repeat"]
    assert often["exposure_mean"] > once["exposure_mean"] + 1 and often["enumeration_top1"]["rate"] >= 0.5
    assert "n/a" in stdout and "no white-box access" in (tmp_path / "r" / "report.md").read_text()


def test_a_model_blind_to_the_secret_shows_no_exposure(audit_files, run_cli):
    """The TF-IDF tokenizer drops single digits, so every filling of a digit template ties: each canary's
    expected rank is the middle (about 1 bit of exposure) and none is 'extracted', however often inserted."""
    doc, _ = canary_through("sklearn_tfidf", audit_files, run_cli)
    for group in doc["by_repeat"]:
        assert group["exposure_max"] < 1.1 and group["enumeration_top1"]["rate"] == 0


def test_the_canary_audit_refuses_privaudits_training_options_with_a_users_trainer(audit_files, run_cli):
    trainer = ["--trainer", "examples.torch_lstm:train", "--data", audit_files / "members.csv"]
    for extra in (["--dp", "--noise-multiplier", "1"], ["--arch", "bert-tiny"], ["--epochs", "3"]):
        code, _, err = run_cli("canary", *trainer, *extra)
        assert code == 2 and "privaudit's training options" in err, err


def test_the_config_runs_the_canary_audit_through_a_users_trainer(audit_files, tmp_path):
    """[tool.privaudit.target] trainer with [tool.privaudit.canary]: the canaries are planted in `data` and
    trained by the user's trainer; the gate reads its figures. Without `trainer` the config is refused."""
    from privaudit.audit import run_audit
    from privaudit.config import load_config
    from privaudit.errors import PrivauditError

    module = importlib.import_module("examples.sklearn_tfidf")
    (tmp_path / "my_tfidf_canary.py").write_text(open(module.__file__, encoding="utf-8").read())
    config = tmp_path / "privaudit.toml"
    body = f"""[tool.privaudit]
data = "{audit_files / "members.csv"}"

[tool.privaudit.target]
loader = "my_tfidf_canary:load_model"
TRAINER

[tool.privaudit.canary]
template = "my secret words are {{word}} {{word}}"
insert = 7
repeat = [16]
audit_canaries = 0

[tool.privaudit.thresholds]
max_extraction_rate = 0.1
"""
    config.write_text(body.replace("TRAINER", ""))
    with pytest.raises(PrivauditError, match="give \\[tool.privaudit.target\\] `trainer`"):
        load_config(config)
    config.write_text(body.replace("TRAINER", 'trainer = "my_tfidf_canary:train"'))
    result = run_audit(load_config(config))
    canary = result.sections["canary"]
    assert canary.model["trainer"].startswith("my_tfidf_canary:train@") and canary.best_extraction_rate >= 0.5
    assert not result.gate.passed and "extraction" in result.gate.failed[0].metric


@pytest.mark.slow  # two DP and two transformers fine-tunings: about 20 s
def test_the_canary_audit_through_opacus_and_a_transformers_trainer(audit_files, run_cli, monkeypatch):
    """The two other examples' trainers plant and train the canaries too (black-box: ModIvA not applicable);
    the Opacus model's epsilon, from Opacus's accountant, stands next to the one-run bound."""
    pytest.importorskip("opacus")
    pytest.importorskip("accelerate")
    doc, _ = canary_through("opacus_dp", audit_files, run_cli)
    assert doc["theoretical"]["accountant"].startswith("Opacus") and doc["modiva"]["not_applicable"]
    assert doc["headline"]["text"].startswith(f"theoretical epsilon {doc['theoretical']['epsilon']:.2f}")
    assert not doc["headline"]["violation"] and doc["one_run"]["canaries"] == 20
    texts, _ = members_of(audit_files)
    monkeypatch.setenv("BASE_MODEL", str(save_tiny_bert(audit_files / "canary-base", texts, None)))
    doc, _ = canary_through("hf_trainer", audit_files, run_cli)
    assert doc["model"]["trainer"].startswith("examples.hf_trainer:train@") and len(doc["canaries"]) == 14


def test_an_exception_in_a_users_white_box_method_is_reported_as_theirs(audit_files, run_cli, tmp_path, monkeypatch):
    """A bug in the user's `encode` stops the canary audit with their traceback (exit 2); it is not quietly
    turned into "ModIvA not applicable"."""
    (tmp_path / "broken_white_box.py").write_text(
        "import numpy as np\n"
        "class M:\n"
        "    def __init__(self, labels):\n"
        "        self.labels = sorted(set(labels))\n"
        "    def logits(self, texts):\n"
        "        return np.array([[len(t) % 7 == i for i in range(len(self.labels))] for t in texts], float)\n"
        "    def encode(self, texts):\n"
        "        raise ValueError('my encode is broken')\n"
        "    def input_embeddings(self):\n"
        "        return None\n"
        "    def forward_embeds(self, embeds, mask):\n"
        "        return None\n"
        "def train(texts, labels, seed):\n"
        "    return M(labels)\n"
    )
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        "canary", "--trainer", "broken_white_box:train", "--data", audit_files / "members.csv",
        "--template", "code {digit}", "--insert", "7", "--repeat", "1", "--audit-canaries", "0",
    )  # fmt: skip
    assert code == 2 and "ValueError: my encode is broken" in err and "broken_white_box.py" in err, err
    assert "not applicable" not in err and "internal error" not in err
