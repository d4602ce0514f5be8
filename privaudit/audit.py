"""`privaudit audit`: the audits a config file names (privaudit.config.AuditConfig), run and gated together.

    from privaudit.audit import run_audit
    from privaudit.config import load_config
    result = run_audit(load_config("privaudit.toml"))   # AuditResult: result.gate.passed, result.to_dict()

Computed here (`run_audit` -> `AuditResult`, one section per audit kind, each computed through
`privaudit.api`); gated by `privaudit.gate` (each section, then `combined`); rendered by
`privaudit.reports` (the "audit" kind: the sections a heading level down).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress

from privaudit.canaries.audit import CanaryResult, CanarySettings

from . import api
from .bundle import FORMAT_VERSION as BUNDLE_FORMAT_VERSION
from .bundle import load_bundle
from .config import AuditConfig
from .devices import resolve_device
from .gate import Thresholds, combined
from .manifest import manifest_path
from .mia import MiaResult, MiaSettings
from .recipe import TrainingRecipe, dp_options
from .results import SCHEMA_VERSION, Gate, Headline
from .shadows import default_cache_dir
from .sweep import SweepResult, SweepSettings
from .versions import package_versions


@dataclass
class AuditResult:
    """What `privaudit audit` computed: one gated result per configured audit kind ("mia", "canary", "sweep")."""

    config: str
    model: str
    versions: dict[str, str]
    sections: dict[str, MiaResult | CanaryResult | SweepResult]
    gate: Gate
    kind: str = field(default="audit", init=False)

    def headlines(self) -> list[Headline]:
        return [h for section in self.sections.values() for h in section.headlines()]

    def to_dict(self) -> dict[str, Any]:
        lines = [h.text for h in self.headlines()]
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "config": self.config,
            "model": self.model,
            "versions": self.versions,
            "sections": {name: section.to_dict() for name, section in self.sections.items()},
            "gate": self.gate.to_dict(),
            "headline": {
                "text": " | ".join(lines),
                "lines": lines,
                "violation": any(h.violation for h in self.headlines()),
            },
        }


def run_audit(
    config: AuditConfig, overrides: dict[str, Any] | None = None, progress: Progress | None = None
) -> AuditResult:
    """`privaudit audit`: run the audits a config names (privaudit.config.AuditConfig) and gate them.

    `overrides` holds CLI values that replace the file's: model, data, device, thresholds (a mapping of
    Thresholds fields) and mia (a mapping of MiaSettings fields)."""
    overrides = overrides or {}
    model = overrides.get("model") or config.model
    data = overrides.get("data") or config.data
    # Every threshold is checked (by Thresholds) before minutes of training, not after.
    thresholds = Thresholds.from_mapping(config.thresholds).replaced(overrides.get("thresholds", {}))
    cache_dir = config.cache_dir or str(default_cache_dir())
    device = resolve_device(overrides.get("device") or config.device)
    # Every section's settings are made, and so checked, before the model is trained, not after.
    mia_settings = canary_settings = None
    if config.mia is not None:
        mia_table = {**config.mia, **overrides.get("mia", {})}
        mia_settings = MiaSettings(seed=config.seed, cache_dir=cache_dir, device=device, **mia_table)
        mia_settings.validate()
    if config.canary is not None:
        table = dict(config.canary)
        if "repeat" in table:
            table["repeats"] = table.pop("repeat")
        canary_settings = CanarySettings(seed=config.seed, **table)
    recipe = None
    if config.train is not None:
        train_table = dict(config.train)
        dp = train_table.pop("dp", None)
        dp_settings = dp_options(True, **dp) if dp is not None else None  # `dp = {}` is refused, not dropped
        recipe = TrainingRecipe(**train_table, seed=config.seed, dp=dp_settings)
    sweep_settings = sweep_settings_from(config, cache_dir, device) if config.sweep is not None else None
    sweep_data = data
    audits_a_model = mia_settings is not None or canary_settings is not None
    # privaudit finds or trains the model, unless the user's own loader does (given `model`, if any).
    needs_a_model = audits_a_model and config.target is None
    if needs_a_model and model is None and recipe is not None:
        if canary_settings is not None:
            canary_settings.check_fits(recipe)
        source = api.resolve_source(data)
        key = hashlib.sha256(
            json.dumps([recipe.to_dict(), source.to_dict(), BUNDLE_FORMAT_VERSION], sort_keys=True).encode()
        ).hexdigest()
        model = Path(cache_dir) / f"audit-model-{key[:24]}.pt"
        if not model.is_file() or not manifest_path(model).is_file():
            api.train(source, recipe, out=model, device=device, progress=progress)
        data = None  # the model's audit manifest records its data
    elif needs_a_model and model is None:
        model = api.demo_model(cache_dir, progress)
    if canary_settings is not None and model is not None and Path(model).is_file():  # before the membership audit
        canary_settings.check_fits(load_bundle(model).recipe)
    sections: dict[str, MiaResult | CanaryResult | SweepResult] = {}
    if mia_settings is not None and config.target is not None:  # the user's own model and trainer
        sections["mia"] = api.mia(
            overrides.get("model") or config.model,
            mia_settings,
            thresholds,
            members=config.target.get("members"),
            nonmembers=config.target.get("nonmembers"),
            progress=progress,
            loader=config.target["loader"],
            trainer=config.target.get("trainer"),
            code_folder=Path(config.path).parent,
        )
    elif mia_settings is not None:
        sections["mia"] = api.mia(model, mia_settings, thresholds, data=data, progress=progress)
    if canary_settings is not None and config.target is not None:  # trained by the user's own trainer
        sections["canary"] = api.canary(
            canary_settings,
            data,
            thresholds=thresholds,
            progress=progress,
            trainer=config.target["trainer"],
            code_folder=Path(config.path).parent,
        )
    elif canary_settings is not None:
        sections["canary"] = api.canary(canary_settings, data, None, model, thresholds, device, progress)
    if sweep_settings is not None:
        # The sweep trains its own models from the train table's recipe (its DP settings but the epsilon).
        base = recipe or TrainingRecipe(seed=config.seed)
        sections["sweep"] = api.sweep(sweep_data, sweep_settings, base, progress)
    return AuditResult(str(config.path), str(model or ""), package_versions(), sections, combined(sections))


def sweep_settings_from(config: AuditConfig, cache_dir: str, device: str) -> SweepSettings:
    """The [tool.privaudit.sweep] table as SweepSettings (checked now, before any training)."""
    table = dict(config.sweep or {})
    canaries = table.pop("canaries", 0)
    repeats = table.pop("repeat", [1, 4, 16])
    canary = CanarySettings(canaries, repeats, seed=config.seed) if canaries else None
    if "max_tpr_at_fpr" in table:
        table["max_tpr_at_fpr"] = tuple(tuple(pair) for pair in table["max_tpr_at_fpr"])
    return SweepSettings(**table, canary=canary, seed=config.seed, cache_dir=cache_dir, device=device)
