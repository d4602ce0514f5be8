import sys
from pathlib import Path

import pytest

SNIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "snips"


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run the privaudit CLI in-process; returns (exit code, stdout, stderr)."""
    from privaudit.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["privaudit", *map(str, args)])
        monkeypatch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit) as exit_info:
            main()
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def snips_train():
    path = SNIPS / "train.csv"
    if not path.is_file():
        pytest.skip("SNIPS data not found in ../shared/data/snips")
    return path
