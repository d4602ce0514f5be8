"""`privaudit audit`: the config file, the CI gate on a leaking and a DP model, and the reports as a
user sees them (the HTML opened in headless Chromium)."""

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from privaudit.config import load_config
from privaudit.errors import PrivauditError

CONFIG = """
[tool.privaudit]
seed = 0
cache_dir = "{cache}"

[tool.privaudit.train]
arch = "cnn"
epochs = 15
{dp}

[tool.privaudit.mia]
attack = "rmia"
shadows = 4

[tool.privaudit.canary]
insert = 4
repeat = [1, 8]
audit_canaries = 40

[tool.privaudit.thresholds]
max_auc = 0.6
max_empirical_epsilon = 1.5
max_extraction_rate = 0.5
"""


def write_config(folder, dp: bool, name="privaudit.toml"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = CONFIG.format(cache=folder / "cache", dp='dp = { target_epsilon = 1.0 }' if dp else "")
    if name == "pyproject.toml":
        body = '[project]\nname = "x"\n' + body
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def gate_runs(tmp_path_factory):
    """The same audit of a leaking (non-DP) and a DP model, through the CLI, as CI would run it."""
    import sys

    runs = {}
    for name, dp in (("leaky", False), ("dp", True)):
        folder = tmp_path_factory.mktemp(name)
        config = write_config(folder, dp)
        # A smaller demo data set keeps this fast: the demo size is part of the train table's data.
        proc = subprocess.run(
            [sys.executable, "-m", "privaudit", "audit", "--config", str(config), "--report", str(folder / "report"),
             "--format", "junit", "--output", str(folder / "junit.xml")],
            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
        )
        runs[name] = (proc, folder)
    return runs


def test_gate_fails_the_leaking_model_and_passes_the_dp_model(gate_runs):
    leaky, folder = gate_runs["leaky"]
    assert leaky.returncode == 1, leaky.stderr
    assert "threshold crossed: mia: rmia AUC" in leaky.stderr
    assert "Traceback" not in leaky.stderr
    dp, dp_folder = gate_runs["dp"]
    assert dp.returncode == 0, dp.stderr
    doc = json.loads((dp_folder / "report" / "results.json").read_text())
    assert doc["gate"]["passed"] and doc["sections"]["mia"]["theoretical"]["epsilon"] <= 1.0


def test_junit_file_has_one_case_per_threshold(gate_runs):
    _, folder = gate_runs["leaky"]
    suite = ET.parse(folder / "junit.xml").getroot()
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names[0] == "mia: rmia AUC" and len(names) == 4  # mia auc + epsilon, canary extraction + epsilon
    doc = json.loads((folder / "report" / "results.json").read_text())
    failed = [c["metric"] for c in doc["gate"]["checks"] if not c["passed"]]
    assert [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None] == failed
    assert int(suite.get("failures")) == len(failed) >= 1


class TableCells(HTMLParser):
    """Rows of the table with a given id, as lists of cell texts."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth = 0
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (Debian package chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it")
    return path


def test_html_report_renders_in_chromium_and_shows_the_json_figures(gate_runs, tmp_path):
    browser = chromium()
    _, folder = gate_runs["leaky"]
    page = folder / "report" / "report.html"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]
    assert console_errors == []
    parser = TableCells("mia-summary")
    parser.feed(dom.stdout)
    doc = json.loads((folder / "report" / "results.json").read_text())
    rows = {row[0].replace(" (primary)", ""): row for row in parser.rows[1:]}
    assert set(rows) == set(doc["sections"]["mia"]["attacks"])
    for name, figures in doc["sections"]["mia"]["attacks"].items():
        assert rows[name][1].startswith(f"{figures['auc']:.4f}")
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.is_file() and shot.stat().st_size > 20_000
    if os.environ.get("PRIVAUDIT_SCREENSHOT"):
        shutil.copy(shot, os.environ["PRIVAUDIT_SCREENSHOT"])


def test_config_found_in_pyproject_and_paths_relative_to_it(tmp_path, monkeypatch):
    path = write_config(tmp_path, dp=False, name="pyproject.toml")
    text = path.read_text().replace("seed = 0", 'seed = 0\nmodel = "models/m.pt"')
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path.endswith("pyproject.toml") and config.model == str(tmp_path / "models" / "m.pt")
    assert config.mia == {"attack": "rmia", "shadows": 4}


@pytest.mark.parametrize("change, message", [
    (("shadows = 4", "shadowz = 4"), "unknown key `mia.shadowz`"),
    (("shadows = 4", 'shadows = "four"'), "`mia.shadows` must be a int"),
    (("max_auc = 0.6", "max_auc = true"), "`thresholds.max_auc` must be a float"),
    (("epochs = 15", "epochs = 15\nbogus = 1"), "unknown key `train.bogus`"),
    (("[tool.privaudit.mia]", "[tool.privaudit.mia\n"), "not valid TOML"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, run_cli, change, message):
    path = write_config(tmp_path, dp=False)
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(PrivauditError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)
    code, _, err = run_cli("audit", "--config", path)
    assert code == 2 and message.split("`")[0] in err and "Traceback" not in err


def test_cli_flags_override_the_file(gate_runs, run_cli):
    _, folder = gate_runs["leaky"]
    code, out, err = run_cli("audit", "--config", folder / "privaudit.toml", "--max-auc", "0.99",
                             "--max-empirical-epsilon", "99", "--max-extraction-rate", "1")
    assert code == 0, err  # every shadow and model is cached: this run takes seconds


def test_missing_config_is_a_usage_error(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("audit")
    assert code == 2 and "no privaudit.toml" in err
