"""The Python API behind the CLI commands `train`, `info` and `epsilon`.

    from privaudit.api import train
    from privaudit.recipe import TrainingRecipe, DPSettings
    bundle = train("train.csv", TrainingRecipe(arch="cnn", dp=DPSettings(target_epsilon=4)), out="model.pt")
"""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from .accounting import ACCOUNTANTS, compute_epsilon
from .bundle import ModelBundle, save_bundle
from .recipe import TrainingRecipe
from .source import DataSource, demo_source, file_source, load_source
from .training import train_target
from .versions import package_versions


def resolve_source(data: str | Path | None, text_col: str = "text", label_col: str = "label") -> DataSource:
    """A file source for `data`, or the built-in demo data set when no file is given."""
    return demo_source() if data is None else file_source(data, text_col, label_col)


def train(data: str | Path | DataSource | None, recipe: TrainingRecipe, out: str | Path | None = None,
          device: str = "cpu", progress: Progress | None = None) -> ModelBundle:
    """Train on `data` (half held out as non-members by default), and save the bundle to `out` if given."""
    source = data if isinstance(data, DataSource) else resolve_source(data)
    dataset = load_source(source)
    target = train_target(dataset, recipe, device, progress)
    fingerprints = dataset.fingerprints()
    bundle = ModelBundle(
        classifier=target.fitted.classifier,
        recipe=target.fitted.recipe,
        data_source=source,
        member_fingerprints=[fingerprints[i] for i in target.member_indices],
        heldout_fingerprints=[fingerprints[i] for i in target.heldout_indices],
        privacy=target.fitted.privacy,
        metrics=target.metrics,
        versions=package_versions(),
    )
    if out is not None:
        save_bundle(bundle, out)
    return bundle


def bundle_summary(bundle: ModelBundle) -> list[tuple[str, str]]:
    """What `privaudit info` shows, as (field, value) rows."""
    classifier, recipe = bundle.classifier, bundle.recipe
    n_params = sum(p.numel() for p in classifier.model.parameters())
    rows = [
        ("architecture", f"{recipe.arch} ({n_params:,} parameters, vocabulary {classifier.config.vocab_size:,})"),
        ("labels", ", ".join(bundle.labels)),
        ("data", bundle.data_source.describe() if bundle.data_source else "not recorded"),
        ("members / held-out", f"{len(bundle.member_fingerprints):,} / {len(bundle.heldout_fingerprints):,}"),
        ("recipe", f"{recipe.epochs} epochs, batch {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}, "
                   f"weight decay {recipe.weight_decay:g}, dropout {recipe.dropout:g}, max length "
                   f"{recipe.max_len}, seed {recipe.seed}"),
    ]
    if bundle.privacy is None:
        rows.append(("DP-SGD", "no (no theoretical privacy guarantee)"))
    else:
        p = bundle.privacy
        rows.append(("DP-SGD", f"noise multiplier {p.noise_multiplier:.4g}, max grad norm {p.max_grad_norm:g}, "
                               f"sample rate {p.sample_rate:.4g}, {p.steps:,} steps"))
        rows.append(("epsilon", f"{p.epsilon:.3f} at delta {p.delta:g} ({p.accountant.upper()} accountant)"))
    for key, value in bundle.metrics.items():
        rows.append((key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value)))
    rows.append(("created", bundle.created))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in bundle.versions.items())))
    return rows


def epsilon_table(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict[str, float]:
    """epsilon by every supported accountant (the first, PLD, is the default one)."""
    return {name: compute_epsilon(noise_multiplier, sample_rate, steps, delta, name) for name in ACCOUNTANTS}


__all__ = ["train", "bundle_summary", "epsilon_table", "resolve_source"]
