"""The `privaudit` command line: parses options and dispatches to the Python API; no logic here.

Exit codes: 0 success (all thresholds hold), 1 a threshold crossed, 2 bad input or usage,
3 internal error, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click
import typer
from rich.table import Table

from .console import err_console, make_progress, out_console
from .errors import PrivauditError
from .recipe import DPSettings, TrainingRecipe

app = typer.Typer(
    name="privaudit", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Audit trained text classifiers for privacy leakage. Exit codes: 0 ok, 1 a threshold crossed, "
         "2 bad input or usage, 3 internal error.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print ratios measured side by side.")
app.add_typer(bench_app, name="bench")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PrivauditError("--device cuda: no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise PrivauditError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return name


def _print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table)


@app.command()
def train(
    data: Optional[Path] = typer.Argument(None, help="CSV, TSV or JSONL file of labelled texts."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the model bundle."),
    demo: bool = typer.Option(False, "--demo", help="Use the built-in demo data set (no file needed)."),
    arch: str = typer.Option("cnn", help="cnn, bert-tiny or hf:PATH (a local Hugging Face model directory)."),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(64),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: the architecture's)."),
    optimizer: str = typer.Option("adam", help="adam or sgd."),
    weight_decay: float = typer.Option(0.0),
    dropout: float = typer.Option(0.1),
    max_len: int = typer.Option(64, help="Tokens kept per text."),
    vocab_size: Optional[int] = typer.Option(None, help="Tokenizer vocabulary size (default: the architecture's)."),
    seed: int = typer.Option(0),
    heldout_fraction: float = typer.Option(0.5, help="Part of the data held out as the non-member pool."),
    text_col: str = typer.Option("text"),
    label_col: str = typer.Option("label"),
    dp: bool = typer.Option(False, "--dp", help="Train with DP-SGD."),
    noise_multiplier: Optional[float] = typer.Option(None, help="DP-SGD noise multiplier."),
    target_epsilon: Optional[float] = typer.Option(None, help="Calibrate the noise to reach this epsilon."),
    max_grad_norm: float = typer.Option(1.0, help="DP-SGD per-example clipping norm."),
    delta: Optional[float] = typer.Option(None, help="DP delta (default: 1e-5, or less for large data)."),
    accountant: str = typer.Option("pld", help="pld (default) or rdp."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train a text classifier (optionally with DP-SGD) and save it as a model bundle."""
    from . import api

    if demo == (data is not None):
        raise PrivauditError("give a data file or --demo (exactly one)")
    if not dp and (noise_multiplier is not None or target_epsilon is not None):
        raise PrivauditError("--noise-multiplier and --target-epsilon need --dp")
    dp_settings = DPSettings(max_grad_norm, noise_multiplier, target_epsilon, delta, accountant) if dp else None
    recipe = TrainingRecipe(arch, epochs, batch_size, lr, optimizer, weight_decay, dropout, max_len, vocab_size,
                            seed, heldout_fraction, dp_settings)
    source = api.resolve_source(data, text_col, label_col)
    with make_progress() as progress:
        bundle = api.train(source, recipe, out, _device(device), progress)
    _print_rows(f"model saved to {out}", api.bundle_summary(bundle))


@app.command()
def info(model: Path = typer.Argument(..., help="A model bundle written by `privaudit train`.")) -> None:
    """Show what a model bundle holds: architecture, data, recipe, DP parameters, epsilon."""
    from .api import bundle_summary
    from .bundle import load_bundle

    _print_rows(str(model), bundle_summary(load_bundle(model)))


@app.command()
def epsilon(
    noise_multiplier: float = typer.Option(..., help="Gaussian noise std / clipping norm."),
    sample_rate: float = typer.Option(..., help="Poisson sampling rate q = batch size / data size."),
    steps: int = typer.Option(..., help="Number of DP-SGD steps."),
    delta: float = typer.Option(1e-5),
) -> None:
    """Theoretical epsilon of DP-SGD from its parameters, by the PLD (default) and RDP accountants."""
    from .api import epsilon_table

    values = epsilon_table(noise_multiplier, sample_rate, steps, delta)
    table = Table(title=f"DP-SGD: noise {noise_multiplier:g}, sample rate {sample_rate:g}, {steps:,} steps, "
                        f"delta {delta:g}", title_justify="left")
    table.add_column("accountant")
    table.add_column("epsilon", justify="right")
    for i, (name, value) in enumerate(values.items()):
        table.add_row(name.upper() + (" (default)" if i == 0 else ""), f"{value:.4f}")
    out_console.print(table)


@bench_app.command("dp")
def bench_dp(
    archs: str = typer.Option("cnn,bert-tiny", help="Comma-separated architectures."),
    batch_size: int = typer.Option(64),
    steps: int = typer.Option(30, help="Timed steps per mode (after warm-up)."),
    data: Optional[Path] = typer.Option(None, help="Data file (default: the built-in demo data set)."),
    device: str = typer.Option("auto"),
) -> None:
    """Per-step time of DP-SGD vs ordinary training of the same model on the same batches."""
    from .bench import bench_dp as run

    rows = run([a.strip() for a in archs.split(",") if a.strip()], batch_size, steps, data, _device(device))
    table = Table(title=f"DP-SGD vs non-DP step time, batch {batch_size}, {steps} steps each",
                  title_justify="left")
    for column in ("arch", "non-DP ms/step", "DP-SGD ms/step", "ratio DP / non-DP"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["arch"], f"{row['nondp_ms']:.1f}", f"{row['dp_ms']:.1f}", f"{row['ratio']:.2f}")
    out_console.print(table)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except PrivauditError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except Exception as exc:  # a bug: say so plainly, with enough to report it
        err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        err_console.print("please report this with the command you ran (PRIVAUDIT_DEBUG=1 shows the traceback)")
        import os

        if os.environ.get("PRIVAUDIT_DEBUG"):
            raise
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)
