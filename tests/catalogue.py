"""The reliability catalogue: the CLI as a user meets it, run case by case as separate processes.

    python tests/catalogue.py            # one line per case, then the counts; exit 1 if any case fails

Every kind of input the README's promise covers: bad data files, absurd options, damaged, foreign and
malicious model files, broken config files, results files, outputs that would destroy an input or cannot
be written, hostile text. Each case names the exit code the README promises (0 works, 1 a threshold
crossed, 2 refused) and a phrase its message must hold; every case must also show no traceback and no
"internal error" (exit 3 is for privaudit's own bugs), refuse in one line (privaudit's refusals; click's
usage errors print their usage block), leave every input byte for byte as it was and no temporary file
behind. `tests/test_catalogue.py` (slow lane) runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROWS = "".join(f"play song number {i} by band {i % 7},{'AB'[i % 2]}\n" for i in range(60))


@dataclass
class Case:
    kind: str
    argv: list[str]
    code: int
    message: str = ""  # must appear in stdout + stderr
    inputs: list[Path] = field(default_factory=list)  # must stay byte for byte as they were
    after: Callable[[], bool] | None = None  # a further check of what the command left
    one_line: bool = True  # a refusal of privaudit's own: one line on stderr

    def __post_init__(self) -> None:
        self.argv = [str(a) for a in self.argv]


def privaudit(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "privaudit", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env
    )


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def fixtures(work: Path) -> dict[str, Path]:
    """A small data file, a model trained on it (with its audit manifest) and a results file."""
    data = write(work / "data.csv", "text,label\n" + ROWS)
    model = work / "model.pt"
    trained = privaudit("train", data, "--out", model, "--epochs", "1")
    assert trained.returncode == 0, trained.stderr
    results = work / "results.json"
    audited = privaudit("mia", model, "--shadows", "0", "--attack", "loss", "--queries", "0", "--output", results)
    assert audited.returncode == 0, audited.stderr
    return {"data": data, "model": model, "results": results}


def cases(work: Path) -> list[Case]:
    f = fixtures(work)
    data, model, results = f["data"], f["model"], f["results"]
    out = work / "out"
    train = ["train", "--epochs", "1", "--out"]
    mia_cheap = ["--shadows", "0", "--attack", "loss", "--queries", "0"]
    found: list[Case] = []

    def bad_data(name: str, content: str | bytes, message: str, suffix: str = ".csv", extra=()) -> None:
        path = write(work / "data" / f"{name}{suffix}", content)
        found.append(Case("data file", [*train, out / f"{name}.pt", path, *extra], 2, message, [path]))

    def good_data(name: str, content: str | bytes, suffix: str = ".csv") -> None:
        path = write(work / "data" / f"{name}{suffix}", content)
        found.append(Case("data file", [*train, out / f"{name}.pt", path], 0, "model saved", [path]))

    # Data files.
    found.append(Case("data file", [*train, out / "m.pt", work / "absent.csv"], 2, "data file not found"))
    found.append(Case("data file", [*train, out / "m.pt", work], 2, "is a folder"))
    bad_data("empty", "", "the file is empty")
    bad_data("header-only", "text,label\n", "header but no examples")
    bad_data("columns", "txt,lab\nhello,A\n", "no column 'text'")
    bad_data("one-class", "text,label\na,A\nb,A\n", "only one class")
    bad_data("empty-text", "text,label\n,A\nb,B\n", "empty text")
    bad_data("empty-label", "text,label\na,\nb,B\n", "empty label")
    bad_data("latin1", "text,label\ncaf\xe9,A\nb,B\n".encode("latin-1"), "not valid UTF-8")
    bad_data("sheet", "text,label\na,A\n", "unsupported file type", suffix=".xlsx")
    bad_data("open-quote", 'text,label\n"never closed,A\nb,B\n', "never closed")
    bad_data("comma", "text,label\nhello, world,A\nb,B\n", "fields where the header has")
    bad_data("jsonl-bad", '{"text": "a", "label": "A"}\n{oops\n', "invalid JSON", suffix=".jsonl")
    bad_data("jsonl-array", '["a", "A"]\n', "must be a JSON object", suffix=".jsonl")
    bad_data("nul", "text,label\na\x00b,A\nc,B\n", "")
    bad_data("text-col", "text,label\n" + ROWS, "no column 'body'", extra=("--text-col", "body"))
    good_data("bom", "\ufefftext,label\n" + ROWS)
    good_data("quoted-newline", 'text,label\n"two\nlines",A\n' + ROWS)
    good_data("line-separator", 'text,label\n"a\u2028b",A\n' + ROWS)
    good_data("tsv", "text\tlabel\n" + ROWS.replace(",", "\t"), suffix=".tsv")
    good_data(
        "jsonl",
        "".join(
            json.dumps({"text": t, "label": y}) + "\n" for t, y in (r.rsplit(",", 1) for r in ROWS.split("\n")[:-1])
        ),
        suffix=".jsonl",
    )

    # Options.
    def option(argv: list, message: str, code: int = 2, one_line: bool = True) -> None:
        found.append(Case("option", [str(a) for a in argv], code, message, [data, model], one_line=one_line))

    option(["train", "--bogus"], "No such option", one_line=False)
    option(["nosuch"], "No such command", one_line=False)
    option(["train", data], "Missing option '--out'", one_line=False)
    option(["mia", model, "--shadows", "abc"], "Invalid value for '--shadows'", one_line=False)
    option([], "Usage", one_line=False)
    option([*train, out / "o.pt", data, "--lr", "-1"], "")
    option([*train, out / "o.pt", data, "--weight-decay", "-1"], "")
    option([*train, out / "o.pt", data, "--vocab-size", "0"], "vocab-size must be at least 100")
    option([*train, out / "o.pt", data, "--seed", "-1"], "")
    option([*train, out / "o.pt", data, "--seed", str(10**23)], "", one_line=False)
    option([*train, out / "o.pt", data, "--epochs", "0"], "epochs must be at least 1")
    option([*train, out / "o.pt", data, "--batch-size", "0"], "batch-size must be at least 1")
    option([*train, out / "o.pt", data, "--dropout", "1.5"], "dropout must be in [0, 1)")
    option([*train, out / "o.pt", data, "--max-len", "0"], "max-len must be at least 1")
    option([*train, out / "o.pt", data, "--heldout-fraction", "1"], "held-out fraction")
    option([*train, out / "o.pt", data, "--noise-multiplier", "1"], "need --dp")
    option([*train, out / "o.pt", data, "--dp"], "exactly one of --noise-multiplier and --target-epsilon")
    option([*train, out / "o.pt", data, "--dp", "--noise-multiplier", "1", "--target-epsilon", "4"], "exactly one")
    option([*train, out / "o.pt", data, "--dp", "--noise-multiplier", "-1"], "")
    option([*train, out / "o.pt", data, "--dp", "--noise-multiplier", "1", "--max-grad-norm", "0"], "must be positive")
    option([*train, out / "o.pt", data, "--arch", "nosuch"], "unknown architecture")
    option([*train, out / "o.pt", data, "--arch", f"hf:{work / 'no-such-dir'}"], "")
    option([*train, out / "o.pt", data, "--device", "tpu"], "")
    option([*train, out / "o.pt", data, "--device", "cuda:7"], "")
    option(["mia", model, *mia_cheap, "--max-auc", "nan"], "--max-auc must be a finite number")
    option(["mia", model, *mia_cheap, "--max-auc", "-1"], "")
    option(["mia", model, *mia_cheap, "--max-tpr-at-fpr", "0.05:0.1"], "not on the reported grid")
    option(["mia", model, *mia_cheap, "--max-tpr-at-fpr", "abc"], "")
    option(["mia", model, "--shadows", "-1"], "--shadows must be 0 or more")
    option(["mia", model, "--shadows", "1"], "needs --shadows 2 or more")
    option(["mia", model, "--queries", "-1"], "--queries must be 0 or more")
    option(["mia", model, "--members", data], "--members and --nonmembers go together")
    option(["canary", "--demo", "--template", "no slots here"], "")
    option(["canary", "--demo", "--template", "{digit}x1000000"], "")
    option(["canary", "--demo", "--template", "my {nosuch} slot"], "")
    option(["canary", "--demo", "--repeat", "abc"], "--repeat takes values")
    option(["canary", "--demo", "--repeat", "0"], "")
    option(["canary", "--demo", "--insert", "0"], "")
    option(["canary", "--demo", "--references", "-1"], "--references must be 0 or more")
    option(["canary", "--demo", "--audit-canaries", "-1"], "--audit-canaries must be 0 or more")
    option(["canary", "--demo", "--gradient-canaries", "1"], "--gradient-canaries 0 or at least 2")
    option(["canary", "--model", model, "--dp", "--target-epsilon", "1"], "drop the DP options")
    option(["canary", "--demo", "--trainer", "nosuch_module:train"], "nosuch_module:train: no module 'nosuch_module'")
    option(["canary", "--demo", "--trainer", "nosuch_module:train", "--epochs", "3"], "privaudit's training options")
    option(["canary", "--model", model, "--trainer", "nosuch_module:train"], "--model and privaudit's training")
    full = {"--noise-multiplier": "1", "--sample-rate": "0.01", "--steps": "100", "--delta": "1e-5"}
    for name, value, message in (
        ("--noise-multiplier", "nan", "noise multiplier"),
        ("--noise-multiplier", "inf", "noise multiplier"),
        ("--noise-multiplier", "0", "noise multiplier must be a positive number"),
        ("--sample-rate", "0", "sample rate must be in (0, 1]"),
        ("--sample-rate", "2", "sample rate must be in (0, 1]"),
        ("--steps", "0", "steps must be at least 1"),
        ("--delta", "1", "delta must be in (0, 1)"),
    ):
        args = [x for k, v in {**full, name: value}.items() for x in (k, v)]
        option(["epsilon", *args], message)
    option(["sweep", data, "--epsilons", "0"], "positive values")
    option(["sweep", data, "--epsilons", "abc"], "--epsilons takes values")
    option(["sweep", data, "--min-accuracy", "2"], "--min-accuracy must be in [0, 1]")
    option(["sweep", data, "--group-col", "region"], "no column 'region'")
    option(["mia", model, "--loader", "not-a-spec"], "package.module:function")
    option(
        ["mia", model, "--loader", "no_such_module_here:load", "--members", data, "--nonmembers", data, *mia_cheap],
        "no module 'no_such_module_here'",
    )

    # Model files.
    def model_file(name: str, content: bytes | None, message: str, command: str = "info") -> None:
        path = work / "models" / name
        if content is not None:
            write(path, content)
        argv = ["info", path] if command == "info" else ["mia", path, *mia_cheap]
        found.append(Case("model file", [str(a) for a in argv], 2, message, [path] if content is not None else []))

    body = model.read_bytes()
    model_file("absent.pt", None, "not found")
    model_file("random.pt", os.urandom(4096), "not a readable model file")
    model_file("empty.pt", b"", "")
    model_file("truncated.pt", body[: len(body) // 2], "not a readable model file")
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0xFF
    model_file("flipped.pt", bytes(flipped), "")
    model_file("results.pt", results.read_bytes(), "")
    model_file("truncated-mia.pt", body[: len(body) // 3], "not a readable model file", command="mia")
    marker = work / "pwned"
    pickle = work / "models" / "evil.pt"
    write_malicious_pickle(pickle, marker)
    found.append(Case("model file", ["info", str(pickle)], 2, "", [pickle], after=lambda: not marker.exists()))
    folder = work / "models" / "not-hf"
    folder.mkdir(parents=True, exist_ok=True)
    found.append(Case("model file", ["info", str(folder)], 2, ""))
    no_manifest = work / "models" / "no-manifest.pt"
    write(no_manifest, body)
    found.append(Case("model file", ["mia", str(no_manifest), *mia_cheap], 2, "", [no_manifest]))
    found.append(Case("model file", ["info", str(model)], 0, "architecture", [model]))
    found.append(Case("model file", ["mia", str(model), *mia_cheap], 0, "membership inference", [model, data]))
    changed = work / "changed" / "data.csv"
    write(changed, "text,label\n" + "".join(ROWS.splitlines(keepends=True)[:30]))
    found.append(
        Case(
            "model file",
            ["mia", str(model), *mia_cheap, "--data", str(changed)],
            2,
            "does not contain the model's training members",
            [changed],
        )
    )

    # Config files (privaudit audit).
    good_config = (
        f'[tool.privaudit]\nmodel = "{model}"\ncache_dir = "cache"\n\n[tool.privaudit.mia]\nshadows = 0\n'
        'attack = "loss"\nqueries = 0\n\n[tool.privaudit.thresholds]\nmax_auc = 0.99\n'
    )

    def config(name: str, text: str, message: str, code: int = 2) -> None:
        path = write(work / "configs" / name / "privaudit.toml", text)
        found.append(Case("config", ["audit", "--config", str(path)], code, message, [path, model]))

    config("good", good_config, "", code=0)
    config("unknown-key", good_config.replace("shadows = 0", "shadowz = 0"), "unknown key `mia.shadowz`")
    config("wrong-type", good_config.replace("shadows = 0", 'shadows = "none"'), "`mia.shadows` must be a int")
    config("toml", good_config.replace("[tool.privaudit.mia]", "[tool.privaudit.mia"), "not valid TOML")
    config("array", good_config.replace("[tool.privaudit]\n", "[[tool.privaudit]]\n"), "must be one table")
    config("empty-model", good_config.replace(f'model = "{model}"', 'model = ""'), "`model` is empty")
    train_table = '[tool.privaudit.train]\narch = "cnn"\n'
    config("dp-empty", good_config.replace(f'model = "{model}"\n', "") + train_table + "dp = {}\n", "exactly one")
    config(
        "dp-both",
        good_config.replace(f'model = "{model}"\n', "")
        + train_table
        + "dp = { noise_multiplier = 1.0, target_epsilon = 4.0 }\n",
        "exactly one",
    )
    config("nothing", f'[tool.privaudit]\nmodel = "{model}"\n', "nothing to audit")
    config("nan", good_config.replace("max_auc = 0.99", "max_auc = nan"), "must be a finite number")
    config(
        "pair", good_config + "max_tpr_at_fpr = [[0.01]]\n", "`thresholds.max_tpr_at_fpr` must be a list of [fpr, tpr]"
    )
    config("grid", good_config + "max_tpr_at_fpr = [[0.05, 0.1]]\n", "not on the reported grid")
    config(
        "template",
        good_config + '\n[tool.privaudit.canary]\ntemplate = "' + "word " * 70 + '{digit}"\n',
        "more than the model reads",
    )
    config("sweep-epsilons", good_config + '\n[tool.privaudit.sweep]\nepsilons = ["one"]\n', "`sweep.epsilons`")
    config("target", good_config + '\n[tool.privaudit.target]\ntrainer = "x:y"\n', "needs `loader`")
    found.append(Case("config", ["audit", "--config", str(work / "configs" / "absent.toml")], 2, "not found"))
    empty_folder = work / "configs" / "none"
    empty_folder.mkdir(parents=True, exist_ok=True)
    found.append(Case("config", ["audit", "--config", str(empty_folder / "pyproject.toml")], 2, "not found"))

    # Results files (privaudit report).
    def results_file(name: str, content: str, message: str) -> None:
        path = write(work / "results" / f"{name}.json", content)
        found.append(Case("results file", ["report", str(path)], 2, message, [path]))

    doc = json.loads(results.read_text())
    results_file("text", "not json at all", "not a results.json")
    results_file("array", "[1, 2]", "not a privaudit results file")
    results_file("no-kind", json.dumps({"schema_version": 3}), "not a privaudit results file")
    results_file("no-attacks", json.dumps({k: v for k, v in doc.items() if k != "attacks"}), "rerun the audit")
    results_file("old-canary", json.dumps({"schema_version": 2, "kind": "canary", "by_repeat": [{}]}), "rerun")
    results_file("kind", json.dumps({**doc, "kind": "nosuch"}), "")
    found.append(Case("results file", ["report", str(work / "absent.json")], 2, "results file not found"))
    found.append(
        Case(
            "results file", ["report", str(results), "--format", "bogus"], 2, "Invalid value", [results], one_line=False
        )
    )
    for fmt in ("markdown", "html", "junit", "json"):
        found.append(Case("results file", ["report", str(results), "--format", fmt], 0, "", [results]))

    # Outputs: never replace an input; unwritable destinations refused before the work.
    link = work / "link.pt"
    if not link.exists():
        os.symlink(data, link)
    found.append(Case("output", [*map(str, train), str(data), str(data)], 2, "would destroy it", [data]))
    found.append(Case("output", [*map(str, train), str(link), str(data)], 2, "would destroy it", [data]))
    found.append(Case("output", ["mia", str(model), *mia_cheap, "--output", str(model)], 2, "would destroy", [model]))
    found.append(Case("output", ["report", str(results), "--output", str(results)], 2, "would destroy", [results]))
    found.append(Case("output", [*map(str, train), "/sys/privaudit/m.pt", str(data)], 2, "does not take new files"))
    found.append(
        Case("output", ["mia", str(model), *mia_cheap, "--report", "/sys/privaudit-r"], 2, "does not take new")
    )

    # Hostile text: printed as text, never as markup or HTML.
    hostile = write(work / "hostile" / "data.csv", "text,label\n" + ROWS.replace(",A\n", ",[/INST]\n"))
    hostile_model = work / "hostile" / "m[v2].pt"
    found.append(Case("hostile text", [*map(str, train), str(hostile_model), str(hostile)], 0, "[/INST]", [hostile]))
    found.append(Case("hostile text", ["info", str(work / "hostile" / "gone[v2].pt")], 2, "gone[v2].pt"))
    script = write(work / "hostile" / "script.csv", "text,label\n" + ROWS.replace("play song", "<script>x</script>"))
    script_model = work / "hostile" / "script.pt"
    report = work / "hostile" / "report"
    assert privaudit(*train, script_model, script).returncode == 0  # set-up: cases run side by side, in any order
    found.append(
        Case(
            "hostile text",
            ["mia", str(script_model), *mia_cheap, "--show-text", "--report", str(report)],
            0,
            "",
            [script],
            after=lambda: (
                "<script>" not in (report / "report.md").read_text()
                and "<script>" not in (report / "report.html").read_text()
            ),
        )
    )
    return found


def write_malicious_pickle(path: Path, marker: Path) -> None:
    """A file that runs `touch marker` when unpickled with pickle's defaults."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Evil()))


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, work: Path) -> list[str]:
    """What the case did that the README does not promise (empty: as documented)."""
    before = {p: digest(p) for p in case.inputs}
    proc = privaudit(*case.argv, cwd=work)
    text = proc.stdout + proc.stderr
    problems = []
    if proc.returncode != case.code:
        problems.append(f"exit {proc.returncode}, expected {case.code}")
    if case.message and case.message not in text:
        problems.append(f"message lacks {case.message!r}")
    if "Traceback" in text or "internal error:" in text:
        problems.append("traceback or internal error")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if case.code == 2 and case.one_line and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if any(digest(p) != d for p, d in before.items()):
        problems.append("an input changed")
    if case.after is not None and proc.returncode == case.code and not case.after():
        problems.append("its further check failed")
    if problems:
        problems.append("stderr: " + proc.stderr.strip().replace("\n", " | ")[:300])
    return problems


def run_catalogue(workers: int = 2) -> tuple[list[Case], dict[int, list[str]]]:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        catalogue = cases(work)
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(lambda c: run_case(c, work), catalogue))
        # Checked once all cases ran (a case running beside another may be mid-write).
        left = [str(p) for p in work.rglob("*.tmp")]
    failures = {i: o for i, o in enumerate(outcomes) if o}
    if left:
        failures[len(catalogue)] = [f"temporary files left behind: {left[:3]}"]
        catalogue.append(Case("output", ["(every case)"], 0))
    return catalogue, failures


def main() -> int:
    catalogue, failures = run_catalogue()
    for i, case in enumerate(catalogue):
        verdict = "FAIL " + "; ".join(failures[i]) if i in failures else "ok"
        print(f"{case.kind:13} {' '.join(case.argv)[:110]:110} {verdict}")
    kinds = sorted({c.kind for c in catalogue})
    for kind in kinds:
        tried = [i for i, c in enumerate(catalogue) if c.kind == kind]
        print(f"{kind}: {len(tried)} cases, {len(tried) - sum(i in failures for i in tried)} as documented")
    print(f"catalogue: {len(catalogue)} cases, {len(catalogue) - len(failures)} as documented, {len(failures)} not")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
