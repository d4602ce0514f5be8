import contextlib
import csv
import io
import os
import random
import sys
from pathlib import Path

import pytest

SNIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "snips"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each, instead of two threads fighting in each.
    import torch

    torch.set_num_threads(1)


def invoke_cli(*args, columns: int = 200) -> tuple[int, str, str]:
    """Run the privaudit CLI in-process in a terminal `columns` wide; returns (exit code, stdout, stderr)."""
    from privaudit.cli import main
    from privaudit.console import err_console, out_console

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_widths = sys.argv, (out_console.width, err_console.width)
    sys.argv = ["privaudit", *map(str, args)]
    # rich reads COLUMNS once, when a console is made: the width is set on the consoles themselves.
    out_console.width = err_console.width = columns
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = saved_argv
        out_console.width, err_console.width = saved_widths
    return exit_info.value.code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli():
    return invoke_cli


@pytest.fixture(scope="module")
def run_cli_module():
    """run_cli for module-scoped fixtures (one audit shared by several tests)."""
    return invoke_cli


@pytest.fixture(scope="session", autouse=True)
def canary_secrets_source():
    """Canary secrets come from operating-system entropy, so a test's extraction figures would depend on the draw:
    in the tests every canary plan draws them from the same fixed stream. Yields the real source (for the test
    that checks it)."""
    from privaudit.canaries import generate

    real = generate._unpredictable
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generate, "_unpredictable", lambda: random.Random(0))
        yield real


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
