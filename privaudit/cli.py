"""The `privaudit` command line: parses options and dispatches to the Python API; no logic here.

Exit codes: 0 success (all thresholds hold), 1 a threshold crossed, 2 bad input or usage,
3 internal error, 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from privaudit.attacks import ATTACKS

from .accounting import ACCOUNTANTS
from .console import err_console, make_progress, out_console, print_rows, print_table
from .devices import DEVICE_HELP
from .errors import PrivauditError
from .fileio import check_outputs
from .metrics import EPSILON_METHODS
from .options import comma_separated
from .recipe import OPTIMIZERS, VOCABULARIES, TrainingRecipe, dp_options
from .reports import FORMATS
from .results import Result

app = typer.Typer(
    name="privaudit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Audit trained text classifiers for privacy leakage. Exit codes: 0 ok, 1 a threshold crossed, "
    "2 bad input or usage, 3 internal error.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print ratios measured side by side.")
app.add_typer(bench_app, name="bench")


def print_machine() -> None:
    """A benchmark's first line: the machine its figures belong to (ratios change from one CPU to another)."""
    from .devices import machine_description

    out_console.print(f"machine: {machine_description()}", highlight=False, markup=False)


# Choices as Enums, so --help lists them and typer refuses the others. They repeat the library's own
# lists (checked just below), because a type checker needs each member written out.
class Optimizer(StrEnum):
    ADAM = "adam"
    ADAM_BC = "adam-bc"
    SGD = "sgd"
    PLAIN_SGD = "plain-sgd"


class Backend(StrEnum):
    LOCAL = "local"
    RAY = "ray"


class Vocabulary(StrEnum):
    LEARNED = "learned"
    HASHED = "hashed"


class Accountant(StrEnum):
    PLD = "pld"
    RDP = "rdp"


class Attack(StrEnum):
    LOSS = "loss"
    VOCABULARY = "vocabulary"
    SHADOW = "shadow"
    LIRA = "lira"
    LIRA_OFFLINE = "lira-offline"
    RMIA = "rmia"
    RMIA_OFFLINE = "rmia-offline"
    LIRA_VOCABULARY = "lira-vocabulary"
    LIRA_AUGMENTED = "lira-augmented"
    RMIA_AUGMENTED = "rmia-augmented"
    LABEL_ONLY = "label-only"


class EpsilonMethod(StrEnum):
    SPLIT = "split"
    BONFERRONI = "bonferroni"


class Format(StrEnum):
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"
    JUNIT = "junit"


for _enum, _library in (
    (Optimizer, OPTIMIZERS),
    (Vocabulary, VOCABULARIES),
    (Accountant, ACCOUNTANTS),
    (Attack, ATTACKS),
    (EpsilonMethod, EPSILON_METHODS),
    (Format, FORMATS),
):
    assert [e.value for e in _enum] == list(_library), f"{_enum.__name__} differs from the library's choices"

# Enum defaults, made once (a call in a signature's defaults would run at import anyway).
PLD, LIRA, BONFERRONI, LOCAL = Accountant("pld"), Attack("lira"), EpsilonMethod("bonferroni"), Backend("local")
JSON, HTML = Format("json"), Format("html")

# Options shared by several commands, declared once.
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
WorkersOpt = Annotated[Optional[int], typer.Option(help="Parallel shadow trainings (default: 2 on a CPU).")]
ArchOpt = Annotated[str, typer.Option(help="cnn, bert-tiny or hf:PATH (a local Hugging Face model directory).")]
EpochsOpt = Annotated[Optional[int], typer.Option(help="Training epochs (default 20).")]
BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        help="Batch size; with DP-SGD the expected (logical) batch, Poisson sampling rate x data size "
        "(default 64; DP-SGD on bert-tiny and hf:PATH: 1024, at most a quarter of the data)."
    ),
]
PhysicalBatchOpt = Annotated[
    Optional[int], typer.Option(help="Examples per forward/backward pass; larger batches are accumulated (default 64).")
]
TrainableOpt = Annotated[
    str,
    typer.Option(help="What trains: all, head (the classification layer) or top:K (a transformer's last K layers)."),
]
LrOpt = Annotated[
    Optional[float], typer.Option(help="Learning rate (default: the architecture's, with or without DP-SGD).")
]
DropoutOpt = Annotated[float, typer.Option(help="Dropout (a defence the ModIvA paper measured; compare with 0).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of initialisation, shuffling and the audit (never of DP noise).")]
DpOpt = Annotated[bool, typer.Option("--dp", help="Train with DP-SGD.")]
NoiseOpt = Annotated[Optional[float], typer.Option(help="DP-SGD noise multiplier.")]
TargetEpsilonOpt = Annotated[Optional[float], typer.Option(help="Calibrate the noise to reach this epsilon.")]
MaxGradNormOpt = Annotated[float, typer.Option(help="DP-SGD per-example clipping norm.")]
DeltaOpt = Annotated[Optional[float], typer.Option(help="DP delta (default: 1e-5, or less for large data).")]
AccountantOpt = Annotated[Accountant, typer.Option(help="Privacy accountant.")]
InsecureSeedOpt = Annotated[
    Optional[int],
    typer.Option(
        help="TESTS ONLY: seed DP-SGD's noise and sampling (reproducible, but no guarantee against whoever knows "
        "the seed)."
    ),
]
ReportOpt = Annotated[Optional[Path], typer.Option(help="Folder for results.json, report.md and report.html.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write results.json here.")]
MaxEpsilonOpt = Annotated[Optional[float], typer.Option(help="Exit 1 if the empirical epsilon bound exceeds this.")]
MaxAucOpt = Annotated[
    Optional[float], typer.Option(help="Exit 1 if some attack's AUC exceeds this (95% lower bound, all attacks).")
]
MaxExposureOpt = Annotated[Optional[float], typer.Option(help="Exit 1 if any canary's exposure (bits) exceeds this.")]
MaxExtractionOpt = Annotated[Optional[float], typer.Option(help="Exit 1 if any extraction rate exceeds this.")]


def _report_files(report: Path | None) -> list[Path]:
    """The files a --report folder gets (api.write_results)."""
    from .api import REPORT_FILES

    return [] if report is None else [report / name for name, _ in REPORT_FILES]


@app.command()
def train(
    data: Annotated[Optional[Path], typer.Argument(help="CSV, TSV or JSONL file of labelled texts.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the model bundle.")] = ...,  # type: ignore[assignment]
    demo: Annotated[bool, typer.Option("--demo", help="Use the built-in demo data set (no file needed).")] = False,
    arch: ArchOpt = "cnn",
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    physical_batch_size: PhysicalBatchOpt = None,
    trainable: TrainableOpt = "all",
    lr: LrOpt = None,
    optimizer: Annotated[
        Optional[Optimizer],
        typer.Option(
            help="adam, adam-bc (Adam corrected for DP-SGD's noise; without DP it is Adam), sgd (momentum 0.9) or "
            "plain-sgd (no momentum; with DP-SGD and no --lr, the steps Adam would take). Default: adam; with "
            "DP-SGD, plain-sgd on the cnn and adam-bc on bert-tiny and hf:PATH."
        ),
    ] = None,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 0.0,
    dropout: DropoutOpt = 0.1,
    max_len: Annotated[int, typer.Option(help="Tokens kept per text.")] = 64,
    vocab_size: Annotated[Optional[int], typer.Option(help="Vocabulary size (default: the architecture's).")] = None,
    vocabulary: Annotated[
        Optional[Vocabulary],
        typer.Option(
            help="learned (from the texts; not covered by DP) or hashed (data-independent). Default: hashed with --dp."
        ),
    ] = None,
    seed: SeedOpt = 0,
    heldout_fraction: Annotated[float, typer.Option(help="Part of the data held out as non-members.")] = 0.5,
    text_col: Annotated[str, typer.Option(help="Column of the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column of the labels.")] = "label",
    dp: DpOpt = False,
    noise_multiplier: NoiseOpt = None,
    target_epsilon: TargetEpsilonOpt = None,
    max_grad_norm: MaxGradNormOpt = 1.0,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = PLD,
    insecure_dp_seed: InsecureSeedOpt = None,
    compare_nondp: Annotated[
        bool,
        typer.Option(
            "--compare-nondp",
            help="With --dp: also train without DP-SGD on the same members and show both held-out accuracies.",
        ),
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Train a text classifier (optionally with DP-SGD) and save it as a model bundle."""
    from . import api
    from .manifest import manifest_path

    if demo == (data is not None):
        raise PrivauditError("give a data file or --demo (exactly one)")
    check_outputs([out, manifest_path(out)], [data])
    recipe = TrainingRecipe(
        arch,
        epochs,
        batch_size,
        lr,
        optimizer.value if optimizer else None,
        weight_decay,
        dropout,
        max_len,
        vocab_size,
        vocabulary.value if vocabulary else None,
        seed,
        heldout_fraction,
        dp_options(dp, noise_multiplier, target_epsilon, max_grad_norm, delta, accountant.value, insecure_dp_seed),
        physical_batch_size,
        trainable,
    )
    if compare_nondp and recipe.dp is None:
        raise PrivauditError("--compare-nondp needs --dp (it trains the same recipe without DP-SGD beside it)")
    source = api.resolve_source(data, text_col, label_col)
    with make_progress() as progress:
        bundle = api.train(source, recipe, out, device, progress, compare_nondp=compare_nondp)
    print_rows(f"model saved to {out}", api.bundle_summary(bundle))
    if bundle.baseline is not None:
        print_rows("the same recipe without DP-SGD (same members; shown here only, not saved)", bundle.baseline.rows())
    out_console.print(
        f"audit manifest (who the members are: keep it with the training data, do not ship it): {manifest_path(out)}",
        highlight=False,
        markup=False,
    )


@app.command()
def info(model: Annotated[Path, typer.Argument(help="A model bundle written by `privaudit train`.")]) -> None:
    """Show what a model bundle holds: architecture, data, recipe, DP parameters, epsilon."""
    from .api import bundle_summary
    from .bundle import load_bundle
    from .manifest import load_manifest, manifest_path

    bundle = load_bundle(model)
    manifest = load_manifest(manifest_path(model), model) if manifest_path(model).is_file() else None
    print_rows(str(model), bundle_summary(bundle, manifest))


@app.command()
def epsilon(
    noise_multiplier: Annotated[float, typer.Option(help="Gaussian noise std / clipping norm.")],
    sample_rate: Annotated[float, typer.Option(help="Poisson sampling rate q = batch size / data size.")],
    steps: Annotated[int, typer.Option(help="Number of DP-SGD steps.")],
    delta: Annotated[float, typer.Option(help="DP delta.")] = 1e-5,
) -> None:
    """Theoretical epsilon of DP-SGD from its parameters, by the PLD (default) and RDP accountants."""
    from .api import epsilon_table

    values = epsilon_table(noise_multiplier, sample_rate, steps, delta)
    print_table(
        f"DP-SGD: noise {noise_multiplier:g}, sample rate {sample_rate:g}, {steps:,} steps, delta {delta:g}",
        ["accountant", "epsilon"],
        [
            [name.upper() + (" (default)" if i == 0 else ""), f"{value:.4f}"]
            for i, (name, value) in enumerate(values.items())
        ],
    )


@app.command()
def mia(
    model: Annotated[
        Optional[Path],
        typer.Argument(
            help="A model bundle written by `privaudit train`, a fine-tuned Hugging Face directory (with --members), "
            "or what --loader loads."
        ),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Audit a model trained on the built-in demo data.")] = False,
    loader: Annotated[
        Optional[str],
        typer.Option(help="Your own model: package.module:function returning it, called with MODEL (if given)."),
    ] = None,
    trainer: Annotated[
        Optional[str],
        typer.Option(help="Your own trainer for shadow models: package.module:function(texts, labels, seed)."),
    ] = None,
    base_model: Annotated[
        Optional[Path],
        typer.Option(
            help="For a Hugging Face directory: the checkpoint it was fine-tuned from, to train shadow models from."
        ),
    ] = None,
    attack: Annotated[Attack, typer.Option(help="The attack shown first; all are computed, shown and gated.")] = LIRA,
    shadows: Annotated[int, typer.Option(help="Shadow/reference models (trained with the model's recipe).")] = 16,
    queries: Annotated[
        int, typer.Option(help="Word-edit neighbours queried per example (augmented and label-only attacks; 0: none).")
    ] = 4,
    data: Annotated[Optional[Path], typer.Option(help="The training data, if it moved since training.")] = None,
    manifest: Annotated[
        Optional[Path], typer.Option(help="The model's audit manifest (default: MODEL.audit.json beside the model).")
    ] = None,
    members: Annotated[Optional[Path], typer.Option(help="File of known members (with --nonmembers).")] = None,
    nonmembers: Annotated[Optional[Path], typer.Option(help="File of known non-members (with --members).")] = None,
    population: Annotated[Optional[Path], typer.Option(help="Extra population data for shadow models.")] = None,
    report: ReportOpt = None,
    output: OutputOpt = None,
    max_auc: MaxAucOpt = None,
    max_empirical_epsilon: MaxEpsilonOpt = None,
    max_tpr_at_fpr: Annotated[
        Optional[list[str]], typer.Option(help="FPR:TPR, e.g. 0.01:0.05 (repeatable). Exit 1 if exceeded.")
    ] = None,
    epsilon_method: Annotated[
        EpsilonMethod, typer.Option(help="Threshold selection for the epsilon bound.")
    ] = BONFERRONI,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    backend: Annotated[
        Backend, typer.Option(help="Where shadows train: local worker processes, or Ray tasks (privaudit[ray]).")
    ] = LOCAL,
    ray_address: Annotated[
        Optional[str], typer.Option(help="With --backend ray: the cluster's address (default: a local Ray instance).")
    ] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Shadow-model cache (default ~/.cache/privaudit).")] = None,
    show_text: Annotated[
        bool, typer.Option("--show-text", help="Show the raw text of the most exposed members.")
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Membership inference with shadow models: LiRA, RMIA, Shokri, loss; empirical vs theoretical epsilon."""
    from . import api
    from .gate import Thresholds, parse_tpr_at_fpr
    from .mia import MiaSettings

    if demo == (model is not None or loader is not None):
        raise PrivauditError("give a model file (or --loader) or --demo (exactly one)")
    check_outputs([output, *_report_files(report)], [model, data, members, nonmembers, population, manifest])
    settings = MiaSettings(
        attack.value,
        shadows,
        seed,
        epsilon_method.value,
        workers,
        str(cache_dir) if cache_dir else None,
        device,
        show_text,
        queries=queries,
        backend=backend.value,
        ray_address=ray_address,
    )
    thresholds = Thresholds(max_auc, tuple(parse_tpr_at_fpr(t) for t in max_tpr_at_fpr or []), max_empirical_epsilon)
    with make_progress() as progress:
        result = api.mia(
            model,
            settings,
            thresholds,
            data=data,
            members=members,
            nonmembers=nonmembers,
            population=population,
            demo=demo,
            progress=progress,
            base_model=base_model,
            manifest=manifest,
            loader=loader,
            trainer=trainer,
        )
    _print_mia(result)
    api.write_results(result, report=report, output=output)
    _exit_on_crossings(result)


def _print_headlines(result: Result) -> None:
    for headline in result.headlines():
        out_console.print(
            headline.text, style="bold red" if headline.violation else "bold", highlight=False, markup=False
        )


def _print_mia(result: Result) -> None:
    from .reports.tables import summary_header, summary_rows

    doc = result.to_dict()  # the tables are the reports' own rows, read from the results document
    print_table("membership inference (higher score = more likely member)", summary_header(doc), summary_rows(doc))
    _print_headlines(result)
    t, run = doc["run"]["timings"], doc["run"]
    rebuilt = run.get("damaged_cache_files_rebuilt", 0)
    err_console.print(
        f"time: shadow training {t['shadow_training_s']:.1f} s "
        f"({run['shadows_from_cache']} of {doc['audit_set']['shadows']} from cache"
        f"{f'; {rebuilt} damaged cache files rebuilt' if rebuilt else ''}), "
        f"scoring {t['scoring_s']:.1f} s, metrics {t['metrics_s']:.1f} s",
        highlight=False,
    )


def _exit_on_crossings(result: Result) -> None:
    for c in result.gate.failed:
        err_console.print(f"threshold crossed: {c.describe()}", highlight=False, markup=False)
    if not result.gate.passed:
        raise typer.Exit(1)


@app.command()
def canary(
    insert: Annotated[int, typer.Option(help="Canaries (secrets) to plant for each repeat count.")] = 20,
    repeat: Annotated[str, typer.Option(help="Insertion counts; each gets --insert canaries.")] = "1,4,16",
    template: Annotated[
        str, typer.Option(help="Public words with {digit}, {letter} or {word} slots ({digit}x10 repeats).")
    ] = "my pin code is {digit} {digit} {digit} {digit}",
    label: Annotated[Optional[str], typer.Option(help="Label of every canary (default: labels in turn).")] = None,
    decoys: Annotated[int, typer.Option(help="Decoys per canary: same words, other secret, other label.")] = 0,
    audit_canaries: Annotated[
        int,
        typer.Option(
            help="Extra canaries, each inserted with probability 1/2, for the one-run epsilon audit (0: none)."
        ),
    ] = 100,
    data: Annotated[Optional[Path], typer.Option(help="Training data (default with --model: the bundle's).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Retrain with this bundle's recipe (and data).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Use the built-in demo data set.")] = False,
    trainer: Annotated[
        Optional[str],
        typer.Option(
            help="Your own trainer trains every model: package.module:function(texts, labels, seed), with --data."
        ),
    ] = None,
    arch: ArchOpt = "cnn",
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    physical_batch_size: PhysicalBatchOpt = None,
    trainable: TrainableOpt = "all",
    lr: LrOpt = None,
    dropout: DropoutOpt = 0.1,
    seed: SeedOpt = 0,
    dp: DpOpt = False,
    noise_multiplier: NoiseOpt = None,
    target_epsilon: TargetEpsilonOpt = None,
    max_grad_norm: MaxGradNormOpt = 1.0,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = PLD,
    insecure_dp_seed: InsecureSeedOpt = None,
    gradient_canaries: Annotated[
        int,
        typer.Option(
            help="With --dp: Dirac gradient canaries for the white-box one-run audit (0: none; at most the model's "
            "coordinates)."
        ),
    ] = 100_000,
    modiva_steps: Annotated[int, typer.Option(help="ModIvA optimisation steps per restart.")] = 200,
    modiva_restarts: Annotated[int, typer.Option(help="ModIvA random restarts per canary.")] = 16,
    references: Annotated[
        int,
        typer.Option(
            help="Models trained like the target without the canaries; extraction ranks secrets by how much more "
            "the target favours them (0: uncalibrated only)."
        ),
    ] = 0,
    max_exposure: MaxExposureOpt = None,
    max_extraction_rate: MaxExtractionOpt = None,
    max_empirical_epsilon: MaxEpsilonOpt = None,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="Put the secrets in the results (else hashes).")
    ] = False,
    report: ReportOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Plant secret canaries, train, measure exposure, extract them (ModIvA), audit epsilon in one run."""
    from . import api
    from .canaries.audit import CanarySettings, parse_repeats
    from .gate import Thresholds

    if sum([data is not None or model is not None, demo]) != 1:
        raise PrivauditError("give --data, --model or --demo")
    check_outputs([output, *_report_files(report)], [data, model])
    dp_settings = dp_options(
        dp, noise_multiplier, target_epsilon, max_grad_norm, delta, accountant.value, insecure_dp_seed
    )
    settings = CanarySettings(
        insert,
        parse_repeats(repeat),
        template,
        label,
        decoys,
        audit_canaries,
        seed,
        show_secrets,
        modiva_steps,
        modiva_restarts,
        gradient_canaries,
        references,
    )
    given = [epochs, batch_size, lr, physical_batch_size, dp_settings]
    changed = [arch != "cnn", trainable != "all", dropout != 0.1]
    if trainer is not None and (any(o is not None for o in given) or any(changed)):
        raise PrivauditError(
            "--trainer: your trainer trains the canary models; privaudit's training options (--arch, --epochs, "
            "--dp, ...) do not apply"
        )
    # With --model the model's own recipe is used; a DP option then is refused by api.canary, not ignored.
    recipe = (
        TrainingRecipe(
            arch,
            epochs,
            batch_size,
            lr,
            dropout=dropout,
            seed=seed,
            dp=dp_settings,
            physical_batch_size=physical_batch_size,
            trainable=trainable,
        )
        if (model is None and trainer is None) or dp_settings is not None
        else None
    )
    thresholds = Thresholds(
        max_empirical_epsilon=max_empirical_epsilon, max_exposure=max_exposure, max_extraction_rate=max_extraction_rate
    )
    with make_progress() as progress:
        result = api.canary(settings, data, recipe, model, thresholds, device, progress, trainer=trainer)
    _print_canary(result)
    api.write_results(result, report=report, output=output)
    _exit_on_crossings(result)


def _print_canary(result: Result) -> None:
    from .reports.tables import canary_header, canary_rows, onerun_header, onerun_rows, sampling_line

    doc = result.to_dict()
    print_table(
        f"canaries: {doc['template']['text']!r}, {doc['template']['space_size']:,} secrets",
        canary_header(),
        canary_rows(doc),
    )
    print_table("one-run epsilon lower bounds (95%)", onerun_header(), onerun_rows(doc))
    _print_headlines(result)
    if sampling_line(doc):
        out_console.print(sampling_line(doc), highlight=False, markup=False)
    t = doc["run"]["timings"]
    references = doc["settings"]["references"]
    cost = (
        f", {references} reference models {t['references_s']:.1f} s "
        f"({t['references_s'] / t['training_s_per_run']:.2f}x one target training)"
        if references
        else ""
    )
    err_console.print(
        f"time: training {t['training_s']:.1f} s ({doc['model']['training_runs']} runs){cost}, exposure and extraction "
        f"{t['exposure_and_extraction_s']:.1f} s (per canary: exposure {t['exposure_s_per_canary']:.2f} s,"
        f" ModIvA + swaps {t['modiva_alphabet_s_per_canary']:.2f} s over the alphabet, "
        f"{t['modiva_vocab_s_per_canary']:.2f} s over the vocabulary), one-run audit "
        f"{t['one_run_audit_s']:.1f} s",
        highlight=False,
    )


@app.command()
def sweep(
    data: Annotated[
        Optional[Path], typer.Argument(help="CSV, TSV or JSONL file of labelled texts (default: the demo data set).")
    ] = None,
    epsilons: Annotated[str, typer.Option(help="Comma-separated target epsilons; inf: without DP-SGD.")] = "1,4,inf",
    arch: ArchOpt = "cnn",
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    physical_batch_size: PhysicalBatchOpt = None,
    trainable: TrainableOpt = "all",
    lr: LrOpt = None,
    dropout: DropoutOpt = 0.1,
    vocabulary: Annotated[
        Optional[Vocabulary],
        typer.Option(help="learned or hashed. Default: hashed at the DP epsilons, learned without DP."),
    ] = None,
    max_grad_norm: MaxGradNormOpt = 1.0,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = PLD,
    shadows: Annotated[int, typer.Option(help="Shadow models per epsilon (trained with its recipe).")] = 8,
    attack: Annotated[Attack, typer.Option(help="The attack shown per epsilon and per group (all are gated).")] = LIRA,
    queries: Annotated[int, typer.Option(help="Word-edit neighbours queried per example (0: none).")] = 4,
    canaries: Annotated[
        int, typer.Option(help="Canaries per repeat count for a canary audit at each epsilon (0: none).")
    ] = 0,
    repeat: Annotated[str, typer.Option(help="Canary insertion counts (with --canaries).")] = "1,4,16",
    group_col: Annotated[
        Optional[str], typer.Option(help="Column of the data to break the figures down by (default: the label).")
    ] = None,
    min_accuracy: Annotated[
        Optional[float], typer.Option(help="Constraint: held-out accuracy at least this, overall and per group.")
    ] = None,
    max_tpr_at_fpr: Annotated[
        Optional[list[str]],
        typer.Option(help="Constraint FPR:TPR, e.g. 0.01:0.05 (repeatable), overall and per group."),
    ] = None,
    text_col: Annotated[str, typer.Option(help="Column of the texts.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column of the labels.")] = "label",
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    cache_dir: Annotated[
        Optional[Path], typer.Option(help="Models, shadows and finished points (default ~/.cache/privaudit).")
    ] = None,
    report: ReportOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train and audit at several epsilons: accuracy, leakage and canary exposure, overall and per group.

    With --min-accuracy and/or --max-tpr-at-fpr: the smallest epsilon meeting every constraint; exit 1 when
    none does. Finished points are cached: an interrupted sweep resumes, a new epsilon trains only itself.
    """
    from . import api
    from .canaries.audit import CanarySettings, parse_repeats
    from .gate import parse_tpr_at_fpr
    from .recipe import DPSettings
    from .sweep import SweepSettings

    check_outputs([output, *_report_files(report)], [data])
    settings = SweepSettings(
        epsilons=comma_separated(epsilons, float, "--epsilons", "1,4,inf"),
        shadows=shadows,
        attack=attack.value,
        queries=queries,
        canary=CanarySettings(canaries, parse_repeats(repeat), seed=seed) if canaries else None,
        group_col=group_col,
        min_accuracy=min_accuracy,
        max_tpr_at_fpr=tuple(parse_tpr_at_fpr(t) for t in max_tpr_at_fpr or []),
        seed=seed,
        workers=workers,
        cache_dir=str(cache_dir) if cache_dir else None,
        device=device,
    )
    recipe = TrainingRecipe(
        arch,
        epochs,
        batch_size,
        lr,
        dropout=dropout,
        vocabulary=vocabulary.value if vocabulary else None,
        seed=seed,
        dp=DPSettings(max_grad_norm, delta=delta, accountant=accountant.value),
        physical_batch_size=physical_batch_size,
        trainable=trainable,
    )
    with make_progress() as progress:
        result = api.sweep(data, settings, recipe, progress, text_col, label_col)
    _print_sweep(result)
    api.write_results(result, report=report, output=output)
    _exit_on_crossings(result)


def _print_sweep(result: Result) -> None:
    from .reports.tables import group_header, group_rows, sweep_header, sweep_rows, worst_off_lines

    doc = result.to_dict()
    print_table("privacy / utility / leakage by epsilon", sweep_header(doc), sweep_rows(doc))
    print_table(f"by {doc['group_col']}", group_header(doc), group_rows(doc))
    for line in worst_off_lines(doc):
        out_console.print(line, highlight=False, markup=False)
    _print_headlines(result)
    err_console.print(
        f"time: {doc['run']['timings']['sweep_s']:.1f} s ({doc['run']['points_from_cache']} of {len(doc['points'])} "
        "points from cache)",
        highlight=False,
    )


@app.command()
def audit(
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", help="privaudit.toml or pyproject.toml (default: found in this folder)."),
    ] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Format of --output.")] = JSON,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the results in --format here.")
    ] = None,
    report: ReportOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="Overrides the file's model.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Overrides the file's data.")] = None,
    shadows: Annotated[Optional[int], typer.Option(help="Overrides mia.shadows.")] = None,
    max_auc: MaxAucOpt = None,
    max_empirical_epsilon: MaxEpsilonOpt = None,
    max_exposure: MaxExposureOpt = None,
    max_extraction_rate: MaxExtractionOpt = None,
    device: Annotated[Optional[str], typer.Option(help=f"Overrides the file's device: {DEVICE_HELP}")] = None,
) -> None:
    """Run the audits named in the config's \\[tool.privaudit] section and gate CI on their thresholds.

    Exit codes: 0 every threshold holds, 1 a threshold crossed (one line each), 2 bad input or usage,
    3 internal error.
    """
    from . import api
    from .audit import run_audit
    from .config import load_config

    cfg = load_config(config)
    check_outputs([output, *_report_files(report)], [cfg.path, model or cfg.model, data or cfg.data])
    overrides = {
        "model": str(model) if model else None,
        "data": str(data) if data else None,
        "device": device,
        "thresholds": {
            "max_auc": max_auc,
            "max_empirical_epsilon": max_empirical_epsilon,
            "max_exposure": max_exposure,
            "max_extraction_rate": max_extraction_rate,
        },
        "mia": {"shadows": shadows} if shadows is not None else {},
    }
    with make_progress() as progress:
        result = run_audit(cfg, overrides, progress)
    _print_headlines(result)
    api.write_results(result, report=report, output=output, output_format=format.value)
    _exit_on_crossings(result)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results.json written by an audit.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = HTML,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="File to write (default: standard output).")
    ] = None,
) -> None:
    """Render an audit's results.json as HTML, Markdown, JUnit or JSON."""
    from .api import render_results

    check_outputs([output], [results])
    text = render_results(results, format.value)
    if output is None:
        sys.stdout.write(text)
    else:
        from .fileio import write_texts_together

        write_texts_together({output: text})


@bench_app.command("dp")
def bench_dp(
    archs: Annotated[str, typer.Option(help="Comma-separated architectures.")] = "cnn,bert-tiny",
    batch_size: Annotated[int, typer.Option(help="Batch size of every step.")] = 64,
    physical_batch_size: Annotated[
        Optional[int],
        typer.Option(help="Passes of at most this many examples a step, shortest first, as training takes them."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Timed steps per block (after warm-up).")] = 30,
    rounds: Annotated[
        int,
        typer.Option(
            help="Blocks per mode, alternating: the median block is the mode's time, the median round its ratio."
        ),
    ] = 5,
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Per-step time of DP-SGD (privaudit's; Opacus's with hooks and ghost clipping, when installed) against
    ordinary training of the same model on the same batches."""
    print_machine()
    from .bench import bench_dp as run

    if rounds < 1:
        raise PrivauditError("--rounds must be at least 1")
    if batch_size < 1 or (physical_batch_size is not None and physical_batch_size < 1):
        raise PrivauditError("--batch-size and --physical-batch-size must be at least 1")
    archs_list = comma_separated(archs, str.strip, "--archs", "cnn,bert-tiny")
    rows = run(archs_list, batch_size, steps, data, device, rounds, physical_batch_size)
    passes = f" in passes of {physical_batch_size}" if physical_batch_size and physical_batch_size < batch_size else ""
    print_table(
        f"step time by mode, batch {batch_size}{passes}, median of {rounds} alternating blocks of {steps} steps "
        "(ratio to non-DP: the median over rounds of each block over the round's non-DP block)",
        ["arch", "mode", "ms/step", "ratio", "rounds' ratios"],
        [
            [r["arch"], r["mode"], f"{r['ms']:.1f}", f"{r['ratio']:.2f}", "{:.2f}-{:.2f}".format(*r["ratio_range"])]
            if r["error"] is None
            else [r["arch"], r["mode"], "fails", "-", "-"]
            for r in rows
        ],
    )
    for r in rows:
        if r["error"] is not None:
            out_console.print(f"{r['mode']} on {r['arch']} fails: {r['error']}", highlight=False, markup=False)


@bench_app.command("memory")
def bench_memory(
    batches: Annotated[
        str, typer.Option(help="Comma-separated LOGICAL:PHYSICAL batch sizes.")
    ] = "64:64,1024:64,1024:1024",
    arch: ArchOpt = "bert-tiny",
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    steps: Annotated[int, typer.Option(help="DP-SGD steps per configuration (rounded to whole epochs).")] = 8,
) -> None:
    """Peak memory of DP-SGD training by logical and physical batch size, each in a fresh process."""
    print_machine()
    from .bench import bench_memory as run

    def pair(text: str) -> tuple[int, int]:
        logical, _, physical = text.partition(":")
        return int(logical), int(physical or logical)

    rows = run(comma_separated(batches, pair, "--batches", "64:64,1024:64"), arch, data, steps)
    base = rows[0]
    print_table(
        f"DP-SGD peak memory, {arch} (ratios to {base['logical']}:{base['physical']})",
        ["logical batch", "physical batch", "peak MB", "ratio", "rise in training MB", "wall s"],
        [
            [
                str(r["logical"]),
                str(r["physical"]),
                f"{r['peak_mb']:.0f}",
                f"{r['peak_mb'] / base['peak_mb']:.2f}",
                f"{r['rise_mb']:.0f}",
                f"{r['wall_s']:.0f}",
            ]
            for r in rows
        ],
    )


@bench_app.command("backends")
def bench_backends(
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    shadows: Annotated[int, typer.Option(help="Shadow models per backend.")] = 16,
    workers: Annotated[int, typer.Option(help="CPUs of both: local worker processes, local Ray instance.")] = 2,
    rounds: Annotated[int, typer.Option(help="Rounds, in alternating order (local first, Ray first).")] = 1,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs of each shadow (default 20).")] = None,
) -> None:
    """Shadow-model training on the local process pool against a local Ray instance of the same CPUs."""
    print_machine()
    from .bench import bench_backends as run

    with make_progress() as progress:
        r = run(data, shadows, workers, rounds, epochs, progress)
    print_table(
        f"{shadows} shadow models, {workers} CPUs, from empty caches",
        ["backend", "wall s (each round)", "ratio to local"],
        [
            ["local process pool", ", ".join(f"{t:.0f}" for t in r["local"]), "1.00"],
            ["local Ray instance", ", ".join(f"{t:.0f}" for t in r["ray"]), f"{r['ratio']:.2f}"],
        ],
    )


@bench_app.command("lira")
def bench_lira(
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    shadows: Annotated[int, typer.Option(help="Shadow models.")] = 16,
    workers: WorkersOpt = None,
    epochs: Annotated[
        Optional[int], typer.Option(help="Training epochs of the target and shadows (default 20).")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """LiRA end to end (train the target, then mia --attack lira --queries 0) against one target training."""
    print_machine()
    from .bench import bench_lira as run

    with make_progress() as progress:
        r = run(data, shadows, workers, epochs, device, progress)
    train_s, train_cpu = r["target_training_s"], r["target_training_cpu_s"]
    print_table(
        f"LiRA, {shadows} shadow models, from an empty cache",
        ["part", "wall s", "CPU s", "wall / one target training"],
        [
            ["target training (privaudit train)", f"{train_s:.1f}", f"{train_cpu:.1f}", "1.00"],
            [
                "privaudit mia --attack lira --queries 0",
                f"{r['mia_s']:.1f}",
                f"{r['mia_cpu_s']:.1f}",
                f"{r['mia_s'] / train_s:.2f}",
            ],
            ["  of which shadow training", f"{r['shadow_training_s']:.1f}", "", f"{r['shadows_over_target']:.2f}"],
            ["  of which scoring and metrics", f"{r['scoring_s'] + r['metrics_s']:.1f}", "", ""],
        ],
    )
    tprs = ", ".join(f"{100 * t:.2f}% at FPR {f:g}" for f, t in r["lira_tpr_at_fpr"].items())
    out_console.print(
        f"CPU time of the audit: {r['cpu_over_target']:.1f} target trainings' (each shadow trains the same recipe "
        f"on as many examples); end to end {r['mia_s']:.0f} s. LiRA: {tprs}."
    )
    if (floor := r["convolution_floor"]) is not None:
        out_console.print(
            f"The shadows' convolutions alone are {floor['tflop']:.1f} TFLOP: at this machine's one-thread rate for "
            f"matrix products of their shapes ({floor['gflops_per_core']:.0f} GFLOP/s), at least "
            f"{floor['floor_s']:.0f} s on {floor['cores']} cores, of the shadows' {r['shadow_training_s']:.0f} s."
        )


@bench_app.command("whitebox")
def bench_whitebox(
    epsilons: Annotated[str, typer.Option(help="Comma-separated theoretical epsilons.")] = "1,2,4,8",
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    arch: ArchOpt = "cnn",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    gradient_canaries: Annotated[int, typer.Option(help="Dirac gradient canaries per training.")] = 100_000,
    device: DeviceOpt = "auto",
) -> None:
    """White-box one-run DP audit (gradient canaries) at several theoretical epsilons: bounds and time."""
    print_machine()
    from .bench import bench_whitebox as run

    values = comma_separated(epsilons, float, "--epsilons", "1,2,4,8")
    with make_progress() as progress:
        rows = run(values, data, arch, epochs, gradient_canaries, device, progress)
    header = [
        "theoretical eps",
        "noise",
        "held-out acc.",
        "every step: Steinke",
        "f-DP (Gaussian)",
        "final weights: Steinke",
        "f-DP (Gaussian)",
        "sampling dispersion",
        "wall s",
    ]
    table_rows = []
    for r in rows:
        w = r["whitebox"]
        table_rows.append(
            [
                f"{r['epsilon']:.2f}",
                f"{r['noise_multiplier']:.3f}",
                f"{r['heldout_accuracy']:.3f}",
                f"{w['every_step']['steinke']['epsilon']:.2f}",
                f"{w['every_step']['gdp']['epsilon']:.2f}",
                f"{w['final_weights']['steinke']['epsilon']:.2f}",
                f"{w['final_weights']['gdp']['epsilon']:.2f}",
                f"{w['sampling']['dispersion']:.2f}",
                f"{r['wall_s']:.0f}",
            ]
        )
    print_table(
        f"white-box one-run audit, {arch}, {rows[0]['whitebox']['canaries'] if rows else 0} gradient "
        f"canaries, 95% lower bounds",
        header,
        table_rows,
    )


@bench_app.command("sweep")
def bench_sweep(
    epsilons: Annotated[str, typer.Option(help="Comma-separated target epsilons; inf: without DP-SGD.")] = "1,4,inf",
    data: Annotated[Optional[Path], typer.Option(help="Data file (default: the built-in demo data set).")] = None,
    shadows: Annotated[int, typer.Option(help="Shadow models per epsilon.")] = 4,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    workers: WorkersOpt = None,
    rounds: Annotated[int, typer.Option(help="Rounds, in alternating order (separate runs first, sweep first).")] = 2,
    device: DeviceOpt = "auto",
) -> None:
    """A sweep's wall time against the separate train + mia runs it replaces, and again from its cache."""
    print_machine()
    from .bench import bench_sweep as run

    values = comma_separated(epsilons, float, "--epsilons", "1,4,inf")
    with make_progress() as progress:
        r = run(values, data, shadows, epochs, workers, device, progress, rounds)
    labels = ", ".join("no DP" if v == float("inf") else f"{v:g}" for v in r["epsilons"])
    print_table(
        f"sweep over {labels} vs separate `train` + `mia --shadows {shadows}` runs, from empty caches",
        [
            "separate runs s (each round)",
            "sweep s (each round)",
            "ratio sweep / separate (all rounds)",
            "sweep again s",
        ],
        [
            [
                ", ".join(f"{s:.0f}" for s in r["separate_s"]),
                ", ".join(f"{s:.0f}" for s in r["sweep_s"]),
                f"{r['ratio']:.2f}",
                f"{r['rerun_s']:.1f}",
            ]
        ],
    )


def _interrupt_on(*signals: int) -> None:
    """SIGTERM (a cancelled CI job) and SIGHUP (a closed terminal) stop a run as Ctrl-C does: workers
    stopped, finished shadow models kept, nothing half-written, exit 130."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in signals:
        signal.signal(signum, interrupt)


def main() -> None:
    _interrupt_on(*(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)))
    try:
        code = app(standalone_mode=False)
    except PrivauditError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except typer.TyperException as exc:  # unknown option or command, a value of the wrong type: the user's to fix
        show = getattr(exc, "show", None)  # typer's click exceptions print their usage line
        if show is not None:
            show()
        else:
            err_console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(2)
    except Exception as exc:  # a bug: say so plainly, with enough to report it
        err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
        err_console.print("please report this with the command you ran (PRIVAUDIT_DEBUG=1 shows the traceback)")
        if os.environ.get("PRIVAUDIT_DEBUG"):
            raise
        sys.exit(3)
    if code == 130:  # typer turns a KeyboardInterrupt inside a command into exit code 130
        err_console.print("interrupted", highlight=False)
    sys.exit(code if isinstance(code, int) else 0)
