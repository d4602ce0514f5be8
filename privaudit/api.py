"""The Python API behind the CLI commands `train`, `info`, `epsilon`, `mia`, `canary`, `sweep` and `report`
(`privaudit audit`, which runs several of them from a config file: `privaudit.audit`).

from privaudit.api import train
from privaudit.recipe import TrainingRecipe, DPSettings
bundle = train("train.csv", TrainingRecipe(arch="cnn", dp=DPSettings(target_epsilon=4)), out="model.pt")
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import Progress

from privaudit.canaries.audit import CanaryResult, CanarySettings, run_canary

from .accounting import ACCOUNTANTS, compute_epsilon
from .bundle import FORMAT_VERSION as BUNDLE_FORMAT_VERSION
from .bundle import ModelBundle, load_bundle
from .devices import resolve_device
from .errors import PrivauditError
from .gate import Thresholds, gate
from .headline import REPRODUCIBLE_WARNING
from .manifest import AuditManifest, load_manifest, manifest_path
from .mia import (
    AuditSet,
    AuditTarget,
    MiaResult,
    MiaSettings,
    audit_set_from_files,
    audit_set_from_manifest,
    run_mia,
    user_target,
)
from .recipe import TrainingRecipe
from .results import SCHEMA_VERSION, Result
from .shadows import default_cache_dir
from .source import load_source
from .sweep import SweepResult, SweepSettings, run_sweep
from .targets import resolve_source, save_model, train
from .usermodel import CodeRef, UserTrainer
from .versions import package_versions


def bundle_summary(bundle: ModelBundle, manifest: AuditManifest | None = None) -> list[tuple[str, str]]:
    """What `privaudit info` shows, as (field, value) rows; the data rows come from the audit manifest
    (the bundle's own, or `manifest`), which the model file itself does not carry."""
    classifier, recipe = bundle.classifier, bundle.recipe
    n_params = sum(p.numel() for p in classifier.model.parameters())
    rows = [
        ("architecture", f"{recipe.arch} ({n_params:,} parameters, vocabulary {classifier.config.vocab_size:,})"),
        ("labels", ", ".join(bundle.labels)),
        ("training examples", f"{bundle.training_examples:,}" if bundle.training_examples else "not recorded"),
    ]
    manifest = manifest or bundle.manifest
    if manifest is not None:
        rows += [
            ("data (audit manifest)", manifest.data_source.describe()),
            ("members / held-out", f"{len(manifest.member_fingerprints):,} / {len(manifest.heldout_fingerprints):,}"),
        ]
    rows += [
        ("vocabulary", recipe.vocabulary_description()),
        (
            "recipe",
            f"{recipe.epochs} epochs, batch {recipe.batch_size}{_physical(recipe)}, {recipe.optimizer} lr "
            f"{recipe.lr:g}, weight decay {recipe.weight_decay:g}, dropout {recipe.dropout:g}, max length "
            f"{recipe.max_len}, trainable {recipe.trainable}, seed {recipe.seed}",
        ),
    ]
    if bundle.privacy is None:
        rows.append(("DP-SGD", "no (no theoretical privacy guarantee)"))
    else:
        p = bundle.privacy
        rows.append(
            (
                "DP-SGD",
                f"noise multiplier {p.noise_multiplier:.4g}, max grad norm {p.max_grad_norm:g}, "
                f"sample rate {p.sample_rate:.4g}, {p.steps:,} steps",
            )
        )
        rows.append(("epsilon", f"{p.epsilon:.3f} at delta {p.delta:g} ({p.accountant.upper()} accountant)"))
        rows.append(
            (
                "DP randomness",
                REPRODUCIBLE_WARNING
                if p.reproducible
                else "noise and Poisson sampling from operating-system entropy (not recorded, not replayable)",
            )
        )
    for key, value in bundle.metrics.items():
        rows.append((key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value)))
    rows.append(("created", bundle.created))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in bundle.versions.items())))
    return rows


def _physical(recipe: TrainingRecipe) -> str:
    physical = recipe.physical_batch_size
    if physical is None or recipe.batch_size is None or physical >= recipe.batch_size:
        return ""
    return f" (accumulated over passes of {physical})"


def epsilon_table(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict[str, float]:
    """epsilon by every supported accountant (the first, PLD, is the default one)."""
    return {name: compute_epsilon(noise_multiplier, sample_rate, steps, delta, name) for name in ACCOUNTANTS}


def demo_model(cache_dir: str | Path | None = None, progress: Progress | None = None) -> Path:
    """A non-DP cnn trained on the built-in demo data set, cached (it is the same model every time)."""
    # The bundle format's version is in the name: a cached model of an older format is never picked up.
    path = Path(cache_dir or default_cache_dir()) / f"demo-target-cnn-v{BUNDLE_FORMAT_VERSION}.pt"
    if not path.is_file() or not manifest_path(path).is_file():
        # Public demo data: a fixed split keeps the demo model the same every time.
        train(None, TrainingRecipe(), out=path, progress=progress, split_seed=0)
    return path


def hf_target(path: str | Path, base_model: str | Path | None, max_len: int = 64) -> ModelBundle:
    """A fine-tuned Hugging Face directory as an audit target. Its members must be given as files, and
    shadow models can only be trained "like the target" from the checkpoint it was fine-tuned from."""
    from .training import load_hf_directory

    classifier = load_hf_directory(str(path), None, max_len)
    recipe = TrainingRecipe(arch=f"hf:{base_model}" if base_model else f"hf:{path}", max_len=max_len)
    return ModelBundle(classifier, recipe.resolved(), None, None, versions=package_versions())


def mia(
    model: str | Path | None,
    settings: MiaSettings | None = None,
    thresholds: Thresholds | None = None,
    data: str | Path | None = None,
    members: str | Path | None = None,
    nonmembers: str | Path | None = None,
    population: str | Path | None = None,
    demo: bool = False,
    progress: Progress | None = None,
    base_model: str | Path | None = None,
    manifest: str | Path | None = None,
    loader: str | None = None,
    trainer: str | None = None,
    code_folder: str | Path | None = None,
) -> MiaResult:
    """`privaudit mia`: run every membership-inference attack and check the gate's thresholds.

    `model` is a bundle, whose members the audit manifest beside it names (or `manifest`), or a fine-tuned
    Hugging Face directory (with `members`/`nonmembers` files and, for shadow models, `base_model`: the
    checkpoint it was fine-tuned from). With `loader` ("package.module:function", found on the Python path
    or in `code_folder`), the model is the user's own (`privaudit.usermodel`): `loader(model)` (or `loader()`)
    returns it, `trainer` trains its shadow models, and `members`/`nonmembers` name its audit set."""
    settings = settings or MiaSettings()
    settings.validate()  # before any training, as is the device:
    resolve_device(settings.device)
    if (members is None) != (nonmembers is None):
        raise PrivauditError("--members and --nonmembers go together")
    target: ModelBundle | AuditTarget
    if loader is not None:
        target, audit_set = _user_model_audit(model, settings, members, nonmembers, loader, trainer, code_folder)
    else:
        if trainer is not None:
            raise PrivauditError("--trainer trains shadow models of your own model: give --loader too")
        if demo:
            model = demo_model(settings.cache_dir, progress)
        if model is None:
            raise PrivauditError("give a model file or demo=True")
        if Path(model).is_dir():
            if members is None:
                raise PrivauditError(f"{model} is a Hugging Face directory: give --members and --nonmembers")
            if settings.shadows >= 2 and base_model is None:
                raise PrivauditError(
                    "shadow models must be trained like the target, from the checkpoint it was "
                    "fine-tuned from: give --base-model DIR (or --shadows 0 --attack loss)"
                )
            target = hf_target(model, base_model)
        else:
            target = load_bundle(model, settings.device)
        if members is not None and nonmembers is not None:
            audit_set = audit_set_from_files(members, nonmembers)
        else:
            audit_set = audit_set_from_manifest(load_manifest(manifest or manifest_path(model), model), data)
    result = run_mia(target, settings, audit_set, population=population, progress=progress)
    result.model["path"] = None if model is None else str(model)
    gate(result, thresholds or Thresholds())
    return result


def _user_model_audit(
    model: str | Path | None,
    settings: MiaSettings,
    members: str | Path | None,
    nonmembers: str | Path | None,
    loader: str,
    trainer: str | None,
    code_folder: str | Path | None,
) -> tuple[AuditTarget, AuditSet]:
    """The user's own model (its loader and trainer checked first, then the audit set's files) and its audit set."""
    folder = str(Path(code_folder or Path.cwd()).resolve())
    loader_ref, trainer_ref = CodeRef(loader, folder), CodeRef(trainer, folder) if trainer else None
    if members is None or nonmembers is None:
        raise PrivauditError("your own model's audit set: give --members and --nonmembers (files of labelled texts)")
    if settings.shadows >= 2 and trainer is None:
        raise PrivauditError(
            "shadow models are trained by your own trainer, as the target was: give --trainer package.module:function "
            "(or --shadows 0 for the attacks that need none)"
        )
    audit_set = audit_set_from_files(members, nonmembers)  # the files are checked before the user's code runs
    return user_target(loader_ref, trainer_ref, model), audit_set


def canary(
    settings: CanarySettings,
    data: str | Path | None = None,
    recipe: TrainingRecipe | None = None,
    model: str | Path | None = None,
    thresholds: Thresholds | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    trainer: str | None = None,
    code_folder: str | Path | None = None,
) -> CanaryResult:
    """`privaudit canary`: insert canaries into `data` (or the bundle's data), train with `recipe` (or the
    bundle's recipe), then measure exposure, extraction and the one-run epsilon bound. With `trainer`
    ("package.module:function", found on the Python path or in `code_folder`), the user's own trainer trains
    every model (`privaudit.usermodel`), on `data` with the canaries planted."""
    if trainer is not None:
        if model is not None or recipe is not None:
            raise PrivauditError(
                "--trainer: your trainer trains the canary models, so --model and privaudit's training options "
                "(--arch, --epochs, --dp, ...) do not apply"
            )
        folder = str(Path(code_folder or Path.cwd()).resolve())
        source = resolve_source(data)
        dataset = load_source(source)  # the data are checked before the user's code runs
        user_trainer = UserTrainer(CodeRef(trainer, folder))
        user_trainer.trainer.function()  # imported now: a wrong import path is refused before any progress bar
        result = run_canary(
            settings, dataset, TrainingRecipe(), source.describe(), progress=progress, trainer=user_trainer
        )
    else:
        if model is not None:
            if recipe is not None:
                # Never train silently without the DP asked for: with a model, the model's own recipe decides.
                raise PrivauditError(
                    "--model retrains with that model's own recipe (DP settings included): drop the "
                    "DP options, or give --data with --dp instead of --model"
                )
            bundle = load_bundle(model)
            source = (
                resolve_source(data) if data is not None else load_manifest(manifest_path(model), model).data_source
            )
            recipe = bundle.recipe
        else:
            source = resolve_source(data)
        dataset = load_source(source)
        result = run_canary(
            settings, dataset, recipe or TrainingRecipe(), source.describe(), resolve_device(device), progress
        )
    gate(result, thresholds or Thresholds())
    return result


def sweep(
    data: str | Path | None,
    settings: SweepSettings | None = None,
    recipe: TrainingRecipe | None = None,
    progress: Progress | None = None,
    text_col: str = "text",
    label_col: str = "label",
) -> SweepResult:
    """`privaudit sweep`: train and audit `recipe` (its DP settings replaced by each epsilon's) on `data` (None:
    the built-in demo data set) at every epsilon of `settings`, then recommend the smallest epsilon that
    meets the constraints (`result.recommended`; `result.gate` fails when none does)."""
    return run_sweep(
        resolve_source(data, text_col, label_col), recipe or TrainingRecipe(), settings or SweepSettings(), progress
    )


# What a --report folder holds: file name and format.
REPORT_FILES = (("results.json", "json"), ("report.md", "markdown"), ("report.html", "html"))


def write_results(
    result: Result, report: str | Path | None = None, output: str | Path | None = None, output_format: str = "json"
) -> None:
    """`output` in `output_format` (results.json by default) and, in a `report` folder, results.json,
    report.md and report.html: all of them or none (a disk that fills up midway leaves what was there)."""
    from .fileio import write_texts_together
    from .reports import render

    doc = result.to_dict()
    files = {} if output is None else {Path(output): render(doc, output_format)}
    if report is not None:
        files.update({Path(report) / name: render(doc, fmt) for name, fmt in REPORT_FILES})
    write_texts_together(files)


def render_results(results: str | Path, fmt: str) -> str:
    """`privaudit report`: render a results.json in another format."""
    from .reports import render

    path = Path(results)
    if not path.is_file():
        raise PrivauditError(f"results file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrivauditError(f"{path}: not a results.json ({exc})") from None
    if not isinstance(doc, dict) or "schema_version" not in doc or "kind" not in doc:
        raise PrivauditError(f"{path}: not a privaudit results file")
    try:
        return render(doc, fmt)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a damaged file, or an older schema's
        raise PrivauditError(
            f"{path}: a {doc['kind']!r} results file (schema {doc['schema_version']}) without the figures this "
            f"privaudit (schema {SCHEMA_VERSION}) renders ({type(exc).__name__}: {exc}); rerun the audit"
        ) from None


__all__ = [
    "train",
    "save_model",
    "bundle_summary",
    "epsilon_table",
    "resolve_source",
    "mia",
    "canary",
    "sweep",
    "write_results",
    "render_results",
    "demo_model",
]
