"""Usage errors are the user's to fix: exit 2 with click's one-line message, never exit 3 ("internal error",
which typer's own copy of click used to cause)."""

import os

import pytest
import torch


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["mia", "m.pt", "--shadows", "abc"], "Invalid value for '--shadows'"),
        (["train", "--demo"], "Missing option '--out'"),
        ([], "Usage"),
    ],
)
def test_usage_errors_exit_2(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2, (code, err)
    assert message in out + err and "internal error" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["mia", "m.pt", "--max-auc", "nan"], "--max-auc must be a finite number"),
        (["mia", "m.pt", "--max-tpr-at-fpr", "0.05:0.1"], "not on the reported grid"),
        (["canary", "--demo", "--max-exposure", "inf"], "--max-exposure must be a finite number"),
    ],
)
def test_thresholds_that_could_never_mean_anything_are_refused_before_any_work(run_cli, args, message):
    code, _, err = run_cli(*args)
    assert code == 2 and message in err


def test_a_benchmark_names_its_machine_before_anything_else(run_cli):
    # Its ratios belong to one CPU (and torch build): the output says which, even when the run then fails.
    code, out, err = run_cli("bench", "dp", "--rounds", "0")
    assert code == 2 and "--rounds must be at least 1" in err
    assert out.startswith("machine: ") and f"{os.cpu_count()} CPUs, torch {torch.__version__}" in out
