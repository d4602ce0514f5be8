"""Training a target model with its audit manifest: `privaudit train` (re-exported by `privaudit.api`).

The manifest records, keyed, which examples were members and which were held out, so that later audits
(`privaudit mia`, a sweep's points) find them again in the data file.
"""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from .bundle import ModelBundle, save_bundle
from .data import file_sha256
from .manifest import AuditManifest, keyed_fingerprints, manifest_path, new_key, save_manifest
from .recipe import TrainingRecipe
from .source import DataSource, demo_source, file_source, load_source
from .training import train_target
from .versions import package_versions


def resolve_source(data: str | Path | None, text_col: str = "text", label_col: str = "label") -> DataSource:
    """A file source for `data`, or the built-in demo data set when no file is given."""
    return demo_source() if data is None else file_source(data, text_col, label_col)


def train(
    data: str | Path | DataSource | None,
    recipe: TrainingRecipe,
    out: str | Path | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    split_seed: int | None = None,
    compare_nondp: bool = False,
) -> ModelBundle:
    """Train on `data` (half held out as non-members by default); with `out`, save the model file and its
    audit manifest beside it (save_model). The split is secret unless `split_seed` is given. With
    `compare_nondp` (and DP-SGD) the bundle's `baseline` holds the same recipe trained without DP-SGD on
    the same members (in memory only)."""
    source = data if isinstance(data, DataSource) else resolve_source(data)
    dataset = load_source(source)
    target = train_target(dataset, recipe, device, progress, split_seed, compare_nondp)
    key = new_key()
    fingerprints = keyed_fingerprints(dataset, key)
    bundle = ModelBundle(
        classifier=target.fitted.classifier,
        recipe=target.fitted.recipe,
        training_examples=len(target.member_indices),
        privacy=target.fitted.privacy,
        metrics=target.metrics,
        versions=package_versions(),
        manifest=AuditManifest(
            source,
            key,
            [fingerprints[i] for i in target.member_indices],
            [fingerprints[i] for i in target.heldout_indices],
        ),
        baseline=target.baseline,
    )
    if out is not None:
        save_model(bundle, out)
    return bundle


def save_model(bundle: ModelBundle, path: str | Path) -> Path | None:
    """The model file at `path` and, if the bundle has one, its audit manifest beside it (returned)."""
    save_bundle(bundle, path)
    if bundle.manifest is None:
        return None
    bundle.manifest.model_sha256 = file_sha256(path)
    save_manifest(bundle.manifest, manifest_path(path))
    return manifest_path(path)
