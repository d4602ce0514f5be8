"""`privaudit audit`: the config file, the CI gate on a leaking model (the DP model: test_audit_dp.py), and
the reports as a user sees them (the HTML opened in headless Chromium)."""

import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest
from audit_configs import FULL, audit_via_cli, write_config
from browser import open_in_chromium, screenshot, table_rows

from privaudit.audit import run_audit
from privaudit.config import load_config
from privaudit.errors import PrivauditError


@pytest.fixture(scope="module")
def leaky_audit(tmp_path_factory, tiny_csv, run_cli_module):
    """The audit of a leaking (non-DP) model, through the CLI, as CI would run it."""
    return audit_via_cli(run_cli_module, tmp_path_factory.mktemp("leaky"), False, tiny_csv)


def test_gate_fails_the_leaking_model(leaky_audit):
    (code, _, err), folder = leaky_audit
    assert code == 1, err
    assert "threshold crossed: mia: AUC = " in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_full_size_audit_in_a_subprocess(tmp_path):
    """The same gate on the whole demo data set, run as CI runs it: a separate process."""
    import sys

    for dp, expected in ((False, 1), (True, 0)):
        folder = tmp_path / f"dp{dp}"
        config = write_config(folder, dp, size=FULL)
        proc = subprocess.run(
            [sys.executable, "-m", "privaudit", "audit", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == expected, proc.stderr
        assert "Traceback" not in proc.stderr


def test_junit_file_has_one_case_per_threshold(leaky_audit):
    _, folder = leaky_audit
    suite = ET.parse(folder / "junit.xml").getroot()
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names[0] == "mia: AUC" and len(names) == 4  # mia auc + epsilon, canary extraction + epsilon
    doc = json.loads((folder / "report" / "results.json").read_text())
    failed = [c["metric"] for c in doc["gate"]["checks"] if not c["passed"]]
    assert [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None] == failed
    assert int(suite.get("failures")) == len(failed) >= 1


def test_html_report_renders_in_chromium_and_shows_the_json_figures(leaky_audit, tmp_path):
    _, folder = leaky_audit
    page = folder / "report" / "report.html"
    dom = open_in_chromium(page, tmp_path)
    doc = json.loads((folder / "report" / "results.json").read_text())
    rows = {row[0].replace(" (selected)", ""): row for row in table_rows(dom, "mia-summary")[1:]}
    assert set(rows) == set(doc["sections"]["mia"]["attacks"])
    for name, figures in doc["sections"]["mia"]["attacks"].items():
        assert rows[name][1].startswith(f"{figures['auc']:.4f}")
    screenshot(page, tmp_path)


def test_config_found_in_pyproject_and_paths_relative_to_it(tmp_path, monkeypatch):
    path = write_config(tmp_path, dp=False, data="train.csv", name="pyproject.toml")
    text = path.read_text().replace("seed = 0", 'seed = 0\nmodel = "models/m.pt"')
    text = text.replace(f'cache_dir = "{tmp_path / "cache"}"', 'cache_dir = "cache"')  # relative to the file too
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path.endswith("pyproject.toml") and config.model == str(tmp_path / "models" / "m.pt")
    assert config.mia == {"attack": "rmia", "shadows": 2, "workers": 1}
    assert config.data == str(tmp_path / "train.csv") and config.cache_dir == str(tmp_path / "cache")


@pytest.mark.parametrize(
    "change, message",
    [
        (("shadows = 2", "shadowz = 2"), "unknown key `mia.shadowz`"),
        (("shadows = 2", 'shadows = "two"'), "`mia.shadows` must be a int"),
        (("max_auc = 0.6", "max_auc = true"), "`thresholds.max_auc` must be a float"),
        (('arch = "cnn"', 'arch = "cnn"\nbogus = 1'), "unknown key `train.bogus`"),
        (("[tool.privaudit.mia]", "[tool.privaudit.mia\n"), "not valid TOML"),
        (("seed = 0", 'seed = 0\nmodel = ""'), "`model` is empty: give a path, or leave the key out"),
        (("[tool.privaudit]\n", "[[tool.privaudit]]\n"), "must be one table"),
        # DP is never dropped silently: an empty table, or both noise settings, are refused before training.
        (('arch = "cnn"', 'arch = "cnn"\ndp = {}'), "exactly one of --noise-multiplier and --target-epsilon"),
        (
            ('arch = "cnn"', 'arch = "cnn"\ndp = { noise_multiplier = 1.0, target_epsilon = 4.0 }'),
            "exactly one of --noise-multiplier and --target-epsilon",
        ),
    ],
)
def test_config_errors_name_the_key_and_the_file(tmp_path, run_cli, change, message):
    path = write_config(tmp_path, dp=False)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(PrivauditError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
    code, _, err = run_cli("audit", "--config", path)
    assert code == 2 and message.split("`")[0] in err and "Traceback" not in err


def test_a_canary_template_the_model_cannot_read_is_refused_before_any_training(tmp_path, run_cli):
    path = write_config(tmp_path, dp=False)
    text = path.read_text()
    start = text.index("template = ")
    path.write_text(text[:start] + 'template = "' + "word " * 70 + '{digit}"' + text[text.index("\n", start) :])
    code, _, err = run_cli("audit", "--config", path)
    assert code == 2 and "more than the model reads" in err
    assert not list((tmp_path / "cache").glob("audit-model-*.pt"))  # no model was trained, no shadow either


def test_cli_flags_override_the_file(leaky_audit, run_cli):
    _, folder = leaky_audit
    # The membership audit alone: its model and shadow models are cached by the run above.
    config = folder / "mia-only.toml"
    text = (folder / "privaudit.toml").read_text()
    config.write_text(text[: text.index("[tool.privaudit.canary]")] + text[text.index("[tool.privaudit.thresholds]") :])
    code, _, err = run_cli("audit", "--config", config)
    assert code == 1 and "threshold crossed: mia: AUC = " in err
    code, _, err = run_cli("audit", "--config", config, "--max-auc", "0.99", "--max-empirical-epsilon", "99")
    assert code == 0, err
    # The same audit from Python: the config's device "auto" is resolved by the library, not the CLI.
    result = run_audit(load_config(config), {"thresholds": {"max_auc": 0.99, "max_empirical_epsilon": 99}})
    assert result.gate.passed and result.sections["mia"].settings.device in ("cpu", "cuda")
    assert len(result.gate.checks) == 2 and result.gate.checks[0].metric == "mia: AUC"


def test_missing_config_is_a_usage_error(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("audit")
    assert code == 2 and "no privaudit.toml" in err
