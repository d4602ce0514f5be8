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
from .fileio import refuse_overwriting
from .gate import check_limits
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


def _dp_settings(dp: bool, noise_multiplier, target_epsilon, max_grad_norm, delta,
                 accountant: str = "pld", insecure_seed: int | None = None) -> DPSettings | None:
    """The DP-SGD options of `train` and `canary`, checked the same way for both."""
    if not dp and (noise_multiplier is not None or target_epsilon is not None or insecure_seed is not None):
        raise PrivauditError("--noise-multiplier, --target-epsilon and --insecure-dp-seed need --dp")
    if dp and (noise_multiplier is None) == (target_epsilon is None):
        raise PrivauditError("with --dp give exactly one of --noise-multiplier and --target-epsilon")
    return DPSettings(max_grad_norm, noise_multiplier, target_epsilon, delta, accountant, insecure_seed) if dp else None


def _report_files(report: Path | None) -> list[Path]:
    """The files a --report folder gets (api.write_results)."""
    from .api import REPORT_FILES

    return [] if report is None else [report / name for name, _ in REPORT_FILES]


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
    vocabulary: Optional[str] = typer.Option(None, help="learned (from the texts; not covered by DP) or hashed "
                                                         "(data-independent). Default: hashed with --dp."),
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
    insecure_dp_seed: Optional[int] = typer.Option(None, help="TESTS ONLY: seed DP-SGD's noise and sampling "
                                                   "(reproducible, but no guarantee against whoever knows the seed)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train a text classifier (optionally with DP-SGD) and save it as a model bundle."""
    from . import api
    from .manifest import manifest_path

    if demo == (data is not None):
        raise PrivauditError("give a data file or --demo (exactly one)")
    refuse_overwriting([out, manifest_path(out)], [data])
    dp_settings = _dp_settings(dp, noise_multiplier, target_epsilon, max_grad_norm, delta, accountant,
                               insecure_dp_seed)
    recipe = TrainingRecipe(arch, epochs, batch_size, lr, optimizer, weight_decay, dropout, max_len, vocab_size,
                            vocabulary, seed, heldout_fraction, dp_settings)
    source = api.resolve_source(data, text_col, label_col)
    with make_progress() as progress:
        bundle = api.train(source, recipe, out, _device(device), progress)
    _print_rows(f"model saved to {out}", api.bundle_summary(bundle))
    out_console.print(f"audit manifest (who the members are: keep it with the training data, do not ship it): "
                      f"{manifest_path(out)}", highlight=False, markup=False)


@app.command()
def info(model: Path = typer.Argument(..., help="A model bundle written by `privaudit train`.")) -> None:
    """Show what a model bundle holds: architecture, data, recipe, DP parameters, epsilon."""
    from .api import bundle_summary
    from .bundle import load_bundle
    from .manifest import load_manifest, manifest_path

    bundle = load_bundle(model)
    manifest = load_manifest(manifest_path(model), model) if manifest_path(model).is_file() else None
    _print_rows(str(model), bundle_summary(bundle, manifest))


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


@app.command()
def mia(
    model: Optional[Path] = typer.Argument(None, help="A model bundle written by `privaudit train`, or a "
                                                      "fine-tuned Hugging Face directory (with --members)."),
    demo: bool = typer.Option(False, "--demo", help="Audit a model trained on the built-in demo data set."),
    base_model: Optional[Path] = typer.Option(None, help="For a Hugging Face directory: the checkpoint it was "
                                                         "fine-tuned from, to train shadow models from."),
    attack: str = typer.Option("lira", help="Primary attack (the gate uses it): loss, vocabulary, shadow, lira, lira-fixed, "
                                            "lira-offline, lira-offline-fixed, rmia, rmia-offline. All are computed "
                                            "and shown."),
    shadows: int = typer.Option(16, help="Shadow/reference models (trained with the model's own recipe)."),
    data: Optional[Path] = typer.Option(None, help="The training data, if it moved since training."),
    manifest: Optional[Path] = typer.Option(None, help="The model's audit manifest (default: MODEL.audit.json "
                                                       "beside the model, written by `privaudit train`)."),
    members: Optional[Path] = typer.Option(None, help="File of known members (with --nonmembers)."),
    nonmembers: Optional[Path] = typer.Option(None, help="File of known non-members (with --members)."),
    population: Optional[Path] = typer.Option(None, help="Extra population data for shadow/reference models."),
    report: Optional[Path] = typer.Option(None, help="Folder for results.json, report.md and report.html."),
    output: Optional[Path] = typer.Option(None, help="Write results.json here."),
    max_auc: Optional[float] = typer.Option(None, help="Exit 1 if the primary attack's AUC exceeds this."),
    max_empirical_epsilon: Optional[float] = typer.Option(None, help="Exit 1 if the empirical epsilon exceeds this."),
    max_tpr_at_fpr: list[str] = typer.Option([], help="FPR:TPR, e.g. 0.01:0.05 (repeatable). Exit 1 if exceeded."),
    epsilon_method: str = typer.Option("bonferroni", help="bonferroni or split: threshold selection for the bound."),
    seed: int = typer.Option(0),
    workers: Optional[int] = typer.Option(None, help="Parallel shadow trainings (default: 2 on a CPU)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Shadow-model cache (default ~/.cache/privaudit)."),
    show_text: bool = typer.Option(False, "--show-text", help="Show the raw text of the most exposed members."),
    device: str = typer.Option("auto"),
) -> None:
    """Membership inference with shadow models: LiRA, RMIA, Shokri, loss; empirical vs theoretical epsilon."""
    from . import api
    from .gate import Thresholds, parse_tpr_at_fpr
    from .mia import MiaSettings

    if sum([model is not None, demo]) != 1:
        raise PrivauditError("give a model file or --demo (exactly one)")
    if (members is None) != (nonmembers is None):
        raise PrivauditError("--members and --nonmembers go together")
    refuse_overwriting([output, *_report_files(report)], [model, data, members, nonmembers, population, manifest])
    settings = MiaSettings(attack, shadows, seed, epsilon_method, workers, str(cache_dir) if cache_dir else None,
                           _device(device), show_text)
    thresholds = Thresholds(max_auc, [parse_tpr_at_fpr(t) for t in max_tpr_at_fpr], max_empirical_epsilon)
    with make_progress() as progress:
        result = api.mia(model, settings, thresholds, data=data, members=members, nonmembers=nonmembers,
                         population=population, demo=demo, progress=progress, base_model=base_model,
                         manifest=manifest)
    _print_mia(result)
    api.write_results(result, report=report, output=output)
    _exit_on_crossings(result)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    out_console.print(table)


def _print_results(title: str, header: list[str], rows: list[list[str]], result: dict) -> None:
    _print_table(title, header, rows)
    style = "bold red" if result["headline"]["violation"] else "bold"
    out_console.print(result["headline"]["text"], style=style, highlight=False)


def _print_mia(result: dict) -> None:
    from .reports import summary_header, summary_rows

    _print_results("membership inference (higher score = more likely member)", summary_header(result),
                   summary_rows(result), result)
    t = result["run"]["timings"]
    err_console.print(f"time: shadow training {t['shadow_training_s']:.1f} s "
                      f"({result['run']['shadows_from_cache']} of {result['audit_set']['shadows']} from cache), "
                      f"scoring {t['scoring_s']:.1f} s, metrics {t['metrics_s']:.1f} s", highlight=False)


def _exit_on_crossings(result: dict) -> None:
    failed = [c for c in result.get("gate", {}).get("checks", []) if not c["passed"]]
    for c in failed:
        err_console.print(f"threshold crossed: {c['metric']} = {c['value']:.4g} > {c['limit']:g}", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def canary(
    insert: int = typer.Option(20, help="Number of canaries (secrets) to plant."),
    repeat: str = typer.Option("1,4,16", help="Insertion counts; the canaries are split evenly among them."),
    template: str = typer.Option("my pin code is {digit} {digit} {digit} {digit}",
                                 help="Public words with {digit}, {letter} or {word} slots ({digit}x10 repeats)."),
    label: Optional[str] = typer.Option(None, help="Label of every canary (default: labels in turn)."),
    decoys: int = typer.Option(0, help="Decoys per canary: same words, other secret, other label."),
    audit_canaries: int = typer.Option(100, help="Extra canaries, each inserted with probability 1/2, for the "
                                                 "one-run epsilon audit (0: none)."),
    data: Optional[Path] = typer.Option(None, help="Training data (default with --model: the bundle's)."),
    model: Optional[Path] = typer.Option(None, help="Retrain with this bundle's recipe (and data)."),
    demo: bool = typer.Option(False, "--demo", help="Use the built-in demo data set."),
    arch: str = typer.Option("cnn"),
    epochs: int = typer.Option(20),
    batch_size: int = typer.Option(64),
    lr: Optional[float] = typer.Option(None),
    dropout: float = typer.Option(0.1, help="A defence the ModIvA paper measured; compare with 0."),
    seed: int = typer.Option(0),
    dp: bool = typer.Option(False, "--dp"),
    noise_multiplier: Optional[float] = typer.Option(None),
    target_epsilon: Optional[float] = typer.Option(None),
    max_grad_norm: float = typer.Option(1.0),
    delta: Optional[float] = typer.Option(None),
    insecure_dp_seed: Optional[int] = typer.Option(None, help="TESTS ONLY: seed DP-SGD's noise and sampling "
                                                   "(reproducible, but no guarantee against whoever knows the seed)."),
    gradient_canaries: int = typer.Option(100_000, help="With --dp: Dirac gradient canaries for the white-box "
                                                       "one-run audit (0: none; at most the model's coordinates)."),
    modiva_steps: int = typer.Option(200, help="ModIvA optimisation steps per restart."),
    modiva_restarts: int = typer.Option(16, help="ModIvA random restarts per canary."),
    max_exposure: Optional[float] = typer.Option(None, help="Exit 1 if any canary's exposure (bits) exceeds this."),
    max_extraction_rate: Optional[float] = typer.Option(None, help="Exit 1 if any extraction rate exceeds this."),
    max_empirical_epsilon: Optional[float] = typer.Option(None, help="Exit 1 if the one-run bound exceeds this."),
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Put the secrets in the results (else hashes)."),
    report: Optional[Path] = typer.Option(None, help="Folder for results.json, report.md and report.html."),
    output: Optional[Path] = typer.Option(None, help="Write results.json here."),
    device: str = typer.Option("auto"),
) -> None:
    """Plant secret canaries, train, measure exposure, extract them (ModIvA), audit epsilon in one run."""
    from . import api
    from privaudit.canaries.audit import CanarySettings

    if sum([data is not None or model is not None, demo]) != 1:
        raise PrivauditError("give --data, --model or --demo")
    refuse_overwriting([output, *_report_files(report)], [data, model])
    try:
        repeats = [int(x) for x in repeat.split(",") if x.strip()]
    except ValueError:
        raise PrivauditError(f"--repeat takes counts such as 1,4,16, got {repeat!r}") from None
    dp_settings = _dp_settings(dp, noise_multiplier, target_epsilon, max_grad_norm, delta,
                               insecure_seed=insecure_dp_seed)
    if audit_canaries < 0 or gradient_canaries < 0 or gradient_canaries == 1:
        raise PrivauditError("--audit-canaries must be 0 or more, --gradient-canaries 0 or at least 2")
    settings = CanarySettings(insert, repeats, template, label, decoys, audit_canaries, seed, show_secrets,
                              modiva_steps, modiva_restarts, gradient_canaries)
    recipe = None
    if model is not None and dp_settings is not None:
        # Never train silently without the DP asked for: with --model, the model's own recipe decides.
        raise PrivauditError("--model retrains with that model's own recipe (DP settings included); drop the DP "
                             "options, or give --data with --dp instead of --model")
    if model is None:
        recipe = TrainingRecipe(arch, epochs, batch_size, lr, dropout=dropout, seed=seed, dp=dp_settings)
    thresholds = {"max_exposure": max_exposure, "max_extraction_rate": max_extraction_rate,
                  "max_empirical_epsilon": max_empirical_epsilon}
    check_limits(thresholds)
    with make_progress() as progress:
        result = api.canary(settings, data, recipe, model, thresholds, _device(device), progress)
    _print_canary(result)
    api.write_results(result, report=report, output=output)
    _exit_on_crossings(result)


def _print_canary(result: dict) -> None:
    from .reports import canary_header, canary_rows, onerun_header, onerun_rows, sampling_line

    _print_results(f"canaries: {result['template']['text']!r}, {result['template']['space_size']:,} secrets",
                   canary_header(), canary_rows(result), result)
    _print_table("one-run epsilon lower bounds (95%)", onerun_header(), onerun_rows(result))
    if sampling_line(result):
        out_console.print(sampling_line(result), highlight=False, markup=False)
    t = result["run"]["timings"]
    err_console.print(f"time: training {t['training_s']:.1f} s, exposure and extraction "
                      f"{t['exposure_and_extraction_s']:.1f} s (per canary: exposure {t['exposure_s_per_canary']:.2f} s,"
                      f" ModIvA + swaps {t['modiva_alphabet_s_per_canary']:.2f} s over the alphabet, "
                      f"{t['modiva_vocab_s_per_canary']:.2f} s over the vocabulary), one-run audit "
                      f"{t['one_run_audit_s']:.1f} s", highlight=False)


@app.command()
def audit(
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="privaudit.toml or pyproject.toml (default: found in this folder)."),
    format: str = typer.Option("json", "--format", "-f", help="Format of --output: json, markdown, html, junit."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the results in --format here."),
    report: Optional[Path] = typer.Option(None, help="Folder for results.json, report.md and report.html."),
    model: Optional[Path] = typer.Option(None, help="Overrides the file's model."),
    data: Optional[Path] = typer.Option(None, help="Overrides the file's data."),
    shadows: Optional[int] = typer.Option(None, help="Overrides mia.shadows."),
    max_auc: Optional[float] = typer.Option(None),
    max_empirical_epsilon: Optional[float] = typer.Option(None),
    max_exposure: Optional[float] = typer.Option(None),
    max_extraction_rate: Optional[float] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Run the audits named in the config's \\[tool.privaudit] section and gate CI on their thresholds.

    Exit codes: 0 every threshold holds, 1 a threshold crossed (one line each), 2 bad input or usage,
    3 internal error.
    """
    from . import api
    from .config import load_config
    from .reports import FORMATS, render

    cfg = load_config(config)
    refuse_overwriting([output, *_report_files(report)], [cfg.path, model or cfg.model, data or cfg.data])
    thresholds = {k: v for k, v in {"max_auc": max_auc, "max_empirical_epsilon": max_empirical_epsilon,
                                     "max_exposure": max_exposure, "max_extraction_rate": max_extraction_rate}.items()
                  if v is not None}
    overrides = {"model": str(model) if model else None, "data": str(data) if data else None,
                 "thresholds": thresholds, "mia": {"shadows": shadows} if shadows is not None else {},
                 "device": _device(device) if device else _device(cfg.device)}
    if format not in FORMATS:  # checked before minutes of work, not after
        raise PrivauditError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    with make_progress() as progress:
        result = api.audit(cfg, overrides, progress)
    for line in result["headline"]["lines"]:
        out_console.print(line, highlight=False, style="bold red" if result["headline"]["violation"] else "bold")
    if output is not None:
        from .fileio import write_text_atomic

        write_text_atomic(output, render(result, format))
    api.write_results(result, report=report)
    _exit_on_crossings(result)


@app.command()
def report(
    results: Path = typer.Argument(..., help="A results.json written by an audit."),
    format: str = typer.Option("html", "--format", "-f", help="json, markdown, html or junit."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
) -> None:
    """Render an audit's results.json as HTML, Markdown, JUnit or JSON."""
    from .api import render_results

    refuse_overwriting([output], [results])
    text = render_results(results, format)
    if output is None:
        sys.stdout.write(text)
    else:
        from .fileio import write_text_atomic

        write_text_atomic(output, text)


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


@bench_app.command("whitebox")
def bench_whitebox(
    epsilons: str = typer.Option("1,2,4,8", help="Comma-separated theoretical epsilons."),
    data: Optional[Path] = typer.Option(None, help="Data file (default: the built-in demo data set)."),
    arch: str = typer.Option("cnn"),
    epochs: int = typer.Option(20),
    gradient_canaries: int = typer.Option(100_000),
    device: str = typer.Option("auto"),
) -> None:
    """White-box one-run DP audit (gradient canaries) at several theoretical epsilons: bounds and time."""
    from .bench import bench_whitebox as run

    try:
        values = [float(x) for x in epsilons.split(",") if x.strip()]
    except ValueError:
        raise PrivauditError(f"--epsilons takes numbers such as 1,2,4,8, got {epsilons!r}") from None
    with make_progress() as progress:
        rows = run(values, data, arch, epochs, gradient_canaries, _device(device), progress)
    header = ["theoretical eps", "noise", "held-out acc.", "every step: Steinke", "f-DP (Gaussian)",
              "final weights: Steinke", "f-DP (Gaussian)", "sampling dispersion", "wall s"]
    table_rows = []
    for r in rows:
        w = r["whitebox"]
        table_rows.append([f"{r['epsilon']:.2f}", f"{r['noise_multiplier']:.3f}", f"{r['heldout_accuracy']:.3f}",
                           f"{w['every_step']['steinke']['epsilon']:.2f}", f"{w['every_step']['gdp']['epsilon']:.2f}",
                           f"{w['final_weights']['steinke']['epsilon']:.2f}",
                           f"{w['final_weights']['gdp']['epsilon']:.2f}", f"{w['sampling']['dispersion']:.2f}",
                           f"{r['wall_s']:.0f}"])
    _print_table(f"white-box one-run audit, {arch}, {rows[0]['whitebox']['canaries'] if rows else 0} gradient "
                 f"canaries, 95% lower bounds", header, table_rows)


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) of click and of the copy of click that typer >= 0.29 ships inside itself:
    typer raises the latter, which are not the former."""
    usage: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:
        pass
    else:
        usage.append(VendoredClickException)
    return tuple(usage), (click.exceptions.Abort, typer.Abort)


def main() -> None:
    usage_errors, aborts = _click_exceptions()
    try:
        code = app(standalone_mode=False)
    except PrivauditError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, *aborts):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except usage_errors as exc:  # unknown option or command, a value of the wrong type: the user's to fix
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
