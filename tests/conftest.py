import contextlib
import csv
import io
import os
import sys
from pathlib import Path

import pytest

SNIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "snips"


def invoke_cli(*args, columns: int = 200) -> tuple[int, str, str]:
    """Run the privaudit CLI in-process; returns (exit code, stdout, stderr)."""
    from privaudit.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, os.environ.get("COLUMNS")
    sys.argv, os.environ["COLUMNS"] = ["privaudit", *map(str, args)], str(columns)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = saved[0]
        if saved[1] is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved[1]
    return exit_info.value.code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli():
    return invoke_cli


@pytest.fixture(scope="module")
def run_cli_module():
    """run_cli for module-scoped fixtures (one audit shared by several tests)."""
    return invoke_cli


@pytest.fixture(scope="session")
def snips_train():
    path = SNIPS / "train.csv"
    if not path.is_file():
        pytest.skip("SNIPS data not found in ../shared/data/snips")
    return path


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    """400 labelled texts from the built-in demo generator: big enough for a CNN to memorise its members
    and for an audit to see it, small enough to train in about a second."""
    from privaudit.demo import demo_dataset

    data = demo_dataset(400, seed=11)
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(data.texts, data.labels))
    return path
