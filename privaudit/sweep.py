"""`privaudit sweep`: the privacy / utility / leakage trade-off over several epsilons, overall and per group.

    import math
    from privaudit.api import sweep
    from privaudit.sweep import SweepSettings
    result = sweep("train.csv", SweepSettings(epsilons=[1, 4, math.inf], shadows=4, min_accuracy=0.9))
    result.recommended, [p.heldout_accuracy.rate for p in result.points], result.to_dict()

For each epsilon (`inf`: no DP-SGD) the target is trained with one recipe otherwise and one secret member
split for the whole sweep (`privaudit.targets.train`), audited with every membership-inference attack from
a shadow pool trained with that epsilon's recipe (`privaudit.mia.run_mia`) and, with canaries, by the
canary audit (`privaudit.canaries.audit.run_canary`). Each finished point is written to the sweep's folder
(owner-only: it holds the models and their audit manifests): a sweep interrupted at epsilon 4 restarts at
epsilon 4, and a sweep given one more epsilon trains only that one.

Per group (`group_col`, by default the label): held-out accuracy and membership leakage of the selected
attack (AUC, TPR at low FPR), each with its interval; groups too small for a figure are flagged, not
shown. DP-SGD costs accuracy unevenly across groups (Bagdasaryan, Poursaeed, Shmatikov 2019, "Differential
privacy has disparate impact on model accuracy"), and membership leakage is uneven too: both are shown
side by side, and the worst-off group at each epsilon is named.

The recommendation is the smallest epsilon meeting every constraint given (`min_accuracy` on held-out
accuracy, `max_tpr_at_fpr`), overall and in every group large enough to be measured; the sweep's gate fails
when no epsilon does.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from privaudit.canaries.audit import CanaryResult, CanarySettings, run_canary

from . import metrics
from .bundle import ModelBundle, load_bundle
from .data import TextDataset, load_column
from .devices import resolve_device
from .errors import PrivauditError
from .fileio import write_text_atomic
from .gate import Thresholds, check_mia
from .manifest import AuditManifest, keyed_fingerprints, load_manifest, manifest_path
from .mia import MiaSettings, audit_set_from_manifest, run_mia
from .recipe import DPSettings, TrainingRecipe
from .reports.jsondoc import render_json
from .results import SCHEMA_VERSION, Gate, GateCheck, Headline
from .shadows import default_cache_dir
from .source import DataSource, load_source
from .targets import train
from .versions import package_versions, run_section

POINT_FORMAT = 3  # a point written by another format is computed again (from its cached models), not read
# A group needs this many members and this many held-out examples for its figures to be shown: below it an
# AUC's interval spans most of [0, 1] and an accuracy's +-20 points.
MIN_GROUP_EXAMPLES = 25


@dataclass
class SweepSettings:
    epsilons: list[float] = field(default_factory=lambda: [1.0, 4.0, math.inf])  # inf: no DP-SGD
    shadows: int = 8
    attack: str = "lira"  # whose AUC and TPRs are shown per point and per group (the gate checks all)
    queries: int = 4
    canary: CanarySettings | None = None  # None: no canary audit
    group_col: str | None = None  # None: the label
    min_accuracy: float | None = None  # held-out, overall and in every group
    max_tpr_at_fpr: tuple[tuple[float, float], ...] = ()  # overall (every attack) and in every group
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        # Checked when the settings are made (CLI or config), before any training.
        self.epsilons = sorted({float(e) for e in self.epsilons})
        if not self.epsilons or any(not e > 0 for e in self.epsilons):
            raise PrivauditError("--epsilons: give one or more positive values (inf: no DP-SGD)")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise PrivauditError("--min-accuracy must be in [0, 1]")
        self.max_tpr_at_fpr = Thresholds(max_tpr_at_fpr=self.max_tpr_at_fpr).max_tpr_at_fpr
        self.mia_settings().validate()

    def mia_settings(self) -> MiaSettings:
        return MiaSettings(
            attack=self.attack,
            shadows=self.shadows,
            seed=self.seed,
            workers=self.workers,
            cache_dir=self.cache_dir,
            device=self.device,
            queries=self.queries,
        )

    def point_key(self) -> str:
        """What a point's figures depend on besides its model: a cached point with another key is redone
        (its model and shadows are reused)."""
        mia = asdict(self.mia_settings())
        for unused in ("workers", "cache_dir", "device"):
            del mia[unused]
        payload = {
            "format": POINT_FORMAT,
            "mia": mia,
            "canary": asdict(self.canary) if self.canary else None,
            "group_col": self.group_col,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def epsilon_label(epsilon: float) -> str:
    return "no DP" if math.isinf(epsilon) else f"{epsilon:g}"


def recipe_at(base: TrainingRecipe, epsilon: float) -> TrainingRecipe:
    """The base recipe at `epsilon`: DP-SGD calibrated to it (the base's clipping norm, delta and accountant
    kept), or none for inf."""
    if math.isinf(epsilon):
        return replace(base, dp=None)
    dp = base.dp or DPSettings()
    return replace(base, dp=replace(dp, target_epsilon=epsilon, noise_multiplier=None))


@dataclass
class GroupFigures:
    """One group at one epsilon. Figures are None for a group too small to support them (`too_small`), and
    so is its split into members and held-out examples: a group of one would otherwise show whether its
    one example was a member, in a report meant to be shared."""

    group: str
    examples: int
    members: int | None
    heldout: int | None
    accuracy: metrics.Rate | None  # held-out accuracy
    auc: float | None
    auc_ci: tuple[float, float] | None
    tpr_at_fpr: list[metrics.TprAtFpr]  # at every grid FPR (any constraint's), threshold from the group's own
    too_small: bool

    def tpr_row(self, fpr: float) -> metrics.TprAtFpr:
        return next(row for row in self.tpr_at_fpr if abs(row.fpr - fpr) < 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accuracy": asdict(self.accuracy) if self.accuracy else None,
            "tpr_at_fpr": [row.to_dict() for row in self.tpr_at_fpr],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GroupFigures:
        return cls(
            d["group"],
            d["examples"],
            d["members"],
            d["heldout"],
            _rate(d["accuracy"]) if d["accuracy"] else None,
            d["auc"],
            tuple(d["auc_ci"]) if d["auc_ci"] else None,
            [_tpr(row) for row in d["tpr_at_fpr"]],
            d["too_small"],
        )


@dataclass
class SweepPoint:
    """One epsilon's figures. `mia_results`: the full membership audit's results.json in the sweep folder."""

    epsilon: float  # the target epsilon asked for (inf: no DP-SGD)
    theoretical_epsilon: float | None  # what the accountant says the model has
    noise_multiplier: float | None
    train_accuracy: float
    heldout_accuracy: metrics.Rate
    attack: str
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: list[metrics.TprAtFpr]  # the selected attack's, at every grid FPR
    empirical_epsilon: float  # strongest attack, 95% lower bound (Bonferroni over the attacks)
    empirical_attack: str
    violation: bool  # the empirical bound exceeds the theoretical epsilon
    mia_checks: list[GateCheck]  # the TPR constraints, every attack (privaudit.gate.check_mia)
    groups: list[GroupFigures]
    canary: dict[str, Any] | None  # per repeat count: mean exposure, top-1 extraction; the one-run bound
    mia_results: str
    timings: dict[str, float]

    def tpr_row(self, fpr: float) -> metrics.TprAtFpr:
        return next(row for row in self.tpr_at_fpr if abs(row.fpr - fpr) < 1e-12)

    def measured_groups(self) -> list[GroupFigures]:
        return [g for g in self.groups if not g.too_small]

    def worst_off(self) -> dict[str, str | None]:
        """The measured group with the lowest held-out accuracy, and the one with the highest AUC."""
        groups = self.measured_groups()
        accuracy = min(groups, key=lambda g: g.accuracy.rate if g.accuracy else 1.0, default=None)
        leakage = max(groups, key=lambda g: g.auc if g.auc is not None else 0.0, default=None)
        return {"accuracy": accuracy.group if accuracy else None, "leakage": leakage.group if leakage else None}

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "epsilon": _json_float(self.epsilon),
            "label": epsilon_label(self.epsilon),
            "heldout_accuracy": asdict(self.heldout_accuracy),
            "tpr_at_fpr": [row.to_dict() for row in self.tpr_at_fpr],
            "mia_checks": [c.to_dict() for c in self.mia_checks],
            "groups": [g.to_dict() for g in self.groups],
            "worst_off": self.worst_off(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepPoint:
        return cls(
            epsilon=float(d["epsilon"]),
            theoretical_epsilon=d["theoretical_epsilon"],
            noise_multiplier=d["noise_multiplier"],
            train_accuracy=d["train_accuracy"],
            heldout_accuracy=_rate(d["heldout_accuracy"]),
            attack=d["attack"],
            auc=d["auc"],
            auc_ci=tuple(d["auc_ci"]),
            tpr_at_fpr=[_tpr(row) for row in d["tpr_at_fpr"]],
            empirical_epsilon=d["empirical_epsilon"],
            empirical_attack=d["empirical_attack"],
            violation=d["violation"],
            mia_checks=[GateCheck(**c) for c in d["mia_checks"]],
            groups=[GroupFigures.from_dict(g) for g in d["groups"]],
            canary=d["canary"],
            mia_results=d["mia_results"],
            timings=d["timings"],
        )


def _json_float(value: float) -> float | str:
    """JSON has no infinity: inf is written "inf" (float("inf") reads it back)."""
    return "inf" if math.isinf(value) else value


def _rate(d: dict[str, Any]) -> metrics.Rate:
    return metrics.Rate(d["rate"], tuple(d["interval"]), d["successes"], d["trials"])


def _tpr(d: dict[str, Any]) -> metrics.TprAtFpr:
    return metrics.TprAtFpr(**{**d, "ci": tuple(d["ci"]), "threshold": float(d["threshold"])})


@dataclass
class SweepResult:
    """What `privaudit sweep` computed; `to_dict()` is results.json (kind "sweep")."""

    data: str
    recipe: dict[str, Any]  # the base recipe (DP settings per point)
    settings: SweepSettings
    group_col: str
    points: list[SweepPoint]
    recommended: float | None  # the smallest epsilon meeting every constraint; None: none does (or none given)
    reasons: dict[str, list[str]]  # by epsilon label: the constraints it misses
    versions: dict[str, str]
    run: dict[str, Any]
    headline: Headline
    gate: Gate = field(default_factory=Gate)
    kind: str = field(default="sweep", init=False)

    def headlines(self) -> list[Headline]:
        return [self.headline]

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["epsilons"] = [_json_float(e) for e in self.settings.epsilons]
        del settings["cache_dir"]
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "data": self.data,
            "recipe": self.recipe,
            "settings": settings,
            "group_col": self.group_col,
            "points": [p.to_dict() for p in self.points],
            "recommendation": {
                "epsilon": None if self.recommended is None else _json_float(self.recommended),
                "constraints": constraint_names(self.settings),
                "missed": self.reasons,
            },
            "versions": self.versions,
            "run": self.run,
            "headline": self.headline.to_dict(),
            "gate": self.gate.to_dict(),
        }


def constraint_names(settings: SweepSettings) -> list[str]:
    names = [f"held-out accuracy >= {settings.min_accuracy:g}"] if settings.min_accuracy is not None else []
    return names + [f"TPR at FPR {fpr:g} <= {tpr:g}" for fpr, tpr in settings.max_tpr_at_fpr]


def sweep_folder(source: DataSource, base: TrainingRecipe, settings: SweepSettings) -> Path:
    """One folder per (data, base recipe, seed), whatever the epsilons: points are shared between sweeps.
    The base recipe's DP settings other than the epsilon (clipping norm, delta, accountant) are in the key."""
    key = hashlib.sha256(
        json.dumps([source.to_dict(), recipe_at(base, 1.0).to_dict(), settings.seed], sort_keys=True).encode()
    ).hexdigest()[:24]
    return Path(settings.cache_dir or default_cache_dir()) / "sweeps" / key


def split_seed(folder: Path) -> int:
    """The sweep's member split, the same at every epsilon: drawn from operating-system entropy once and
    kept in the (owner-only) sweep folder. Never derived from --seed, which the results record: whoever
    holds them and the data could otherwise recompute who was a member."""
    path = folder / "split-seed"
    if not path.is_file():
        write_text_atomic(path, str(secrets.randbits(63)), private=True)
    return int(path.read_text(encoding="utf-8"))


def run_sweep(
    source: DataSource, base: TrainingRecipe, settings: SweepSettings, progress: Progress | None = None
) -> SweepResult:
    """Train and audit at every epsilon (cached points reused), then recommend (`recommend`)."""
    for epsilon in settings.epsilons:  # every point's recipe is checked before any training
        recipe_at(base, epsilon).validate()
    if settings.canary is not None:
        settings.canary.check_fits(base)
    settings = replace(settings, device=resolve_device(settings.device))  # the results record the device used
    dataset = load_source(source)  # checks the data before any training, as is the group column:
    groups = None
    if settings.group_col is not None:
        if source.path is None:
            raise PrivauditError("--group-col needs a data file (the built-in demo data has only text and label)")
        groups = load_column(source.path, settings.group_col)
    folder = sweep_folder(source, base, settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    seed = split_seed(folder)
    task = progress.add_task("sweep", total=len(settings.epsilons)) if progress is not None else None
    points, cached = [], 0
    start = time.perf_counter()
    for epsilon in settings.epsilons:
        where = folder / f"eps-{epsilon_label(epsilon).replace(' ', '-')}"
        point = _cached_point(where, settings)
        if point is None:
            point = _compute_point(source, dataset, base, settings, epsilon, seed, where, groups, progress)
            write_text_atomic(
                where / "point.json", render_json({"key": settings.point_key(), "point": point.to_dict()}), True
            )
        else:
            cached += 1
        points.append(point)
        if progress is not None and task is not None:
            progress.advance(task)
    recommended, reasons = recommend(points, settings)
    result = SweepResult(
        data=source.describe(),
        recipe=base.to_dict(),
        settings=settings,
        group_col=settings.group_col or "label",
        points=points,
        recommended=recommended,
        reasons=reasons,
        versions=package_versions(),
        run={**run_section({"sweep_s": time.perf_counter() - start}), "points_from_cache": cached},
        headline=sweep_headline(points, recommended, settings),
    )
    result.gate = sweep_gate(result)
    return result


def _cached_point(where: Path, settings: SweepSettings) -> SweepPoint | None:
    path = where / "point.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return SweepPoint.from_dict(doc["point"]) if doc.get("key") == settings.point_key() else None
    except (ValueError, KeyError, TypeError):  # damaged: computed again (its model and shadows are reused)
        return None


def _compute_point(
    source: DataSource,
    dataset: TextDataset,
    base: TrainingRecipe,
    settings: SweepSettings,
    epsilon: float,
    split: int,
    where: Path,
    groups: list[str] | None,
    progress: Progress | None,
) -> SweepPoint:
    recipe = recipe_at(base, epsilon)
    model = where / "model.pt"
    timings = {}
    clock = time.perf_counter()
    if not model.is_file() or not manifest_path(model).is_file():  # both written: the target is finished
        train(source, recipe, out=model, device=settings.device, progress=progress, split_seed=split)
    timings["target_s"] = time.perf_counter() - clock
    bundle = load_bundle(model, settings.device)
    manifest = load_manifest(manifest_path(model), model)
    audit = audit_set_from_manifest(manifest)

    clock = time.perf_counter()
    mia = run_mia(bundle, settings.mia_settings(), audit, progress=progress)  # the bundle loaded once
    mia.model["path"] = str(model)
    mia_checks = check_mia(mia, Thresholds(max_tpr_at_fpr=settings.max_tpr_at_fpr))
    timings["mia_s"] = time.perf_counter() - clock
    write_text_atomic(where / "mia.json", render_json(mia.to_dict()), private=True)

    canary = None
    if settings.canary is not None:
        clock = time.perf_counter()
        canary = canary_summary(
            run_canary(settings.canary, dataset, recipe, source.describe(), settings.device, progress)
        )
        timings["canary_s"] = time.perf_counter() - clock

    audited = audit.population.subset(range(audit.n_audit))  # the order of the membership audit's scores
    is_member = audit.is_member
    correct = _correct(bundle, audited)
    tags = audited.labels if groups is None else _group_tags(dataset, groups, manifest, audited)
    scores = np.asarray(mia.per_example["scores"][settings.attack], float)
    figures = mia.attacks[settings.attack]
    privacy = bundle.privacy
    return SweepPoint(
        epsilon=epsilon,
        theoretical_epsilon=privacy.epsilon if privacy else None,
        noise_multiplier=privacy.noise_multiplier if privacy else None,
        train_accuracy=bundle.metrics["train_accuracy"],
        heldout_accuracy=metrics.Rate.of(correct[~is_member]),
        attack=settings.attack,
        auc=figures.auc,
        auc_ci=figures.auc_ci,
        tpr_at_fpr=figures.tpr_at_fpr,
        empirical_epsilon=float(mia.headline.empirical_epsilon or 0.0),
        empirical_attack=mia.headline.attack or settings.attack,
        violation=mia.headline.violation,
        mia_checks=mia_checks,
        groups=group_figures(np.asarray(tags), is_member, scores, correct, settings),
        canary=canary,
        mia_results=str(where / "mia.json"),
        timings=timings,
    )


def _correct(bundle: ModelBundle, data: TextDataset) -> np.ndarray:
    """Whether the model classifies each example right."""
    predictions = bundle.classifier.logits(data.texts).argmax(1).numpy()
    return predictions == bundle.classifier.label_ids(data.labels).cpu().numpy()


def _group_tags(dataset: TextDataset, groups: list[str], manifest: AuditManifest, audited: TextDataset) -> list[str]:
    """Each audited example's tag in the data file's group column (found by its keyed fingerprint; a
    duplicated example keeps its first row's tag)."""
    by_fingerprint: dict[str, str] = {}
    for fp, tag in zip(keyed_fingerprints(dataset, manifest.key), groups):
        by_fingerprint.setdefault(fp, tag)
    return [by_fingerprint[fp] for fp in keyed_fingerprints(audited, manifest.key)]


def group_figures(
    tags: np.ndarray, is_member: np.ndarray, scores: np.ndarray, correct: np.ndarray, settings: SweepSettings
) -> list[GroupFigures]:
    """Held-out accuracy and the selected attack's leakage within each group: AUC (bootstrap interval)
    and TPR at low FPR with the threshold set on the group's own held-out examples."""
    figures = []
    for tag in sorted(set(tags.tolist())):
        inside = tags == tag
        members, heldout = int((inside & is_member).sum()), int((inside & ~is_member).sum())
        if min(members, heldout) < MIN_GROUP_EXAMPLES:
            figures.append(GroupFigures(tag, members + heldout, None, None, None, None, None, [], True))
            continue
        s, m = scores[inside], is_member[inside]
        aucs = metrics.auc_bootstrap(s, m, 1000, seed=settings.seed)
        figures.append(
            GroupFigures(
                tag,
                members + heldout,
                members,
                heldout,
                metrics.Rate.of(correct[inside & ~is_member]),
                metrics.auc(s, m),
                (float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))),
                [metrics.tpr_at_fpr(s, m, fpr) for fpr in metrics.FPR_GRID],
                False,
            )
        )
    return figures


def canary_summary(result: CanaryResult) -> dict[str, Any]:
    """What the sweep shows of a canary audit: per repeat count, mean exposure (bits) and top-1 extraction
    by enumeration; the larger one-run epsilon bound."""
    bounds = [audit.epsilon for audit in (result.one_run, result.whitebox) if audit is not None]
    return {
        "space_bits": math.log2(result.template["space_size"]),
        "by_repeat": [
            {"repeat": g.repeat, "exposure_mean": g.exposure_mean, "top1": asdict(g.enumeration_top1)}
            for g in result.by_repeat
        ],
        "one_run_epsilon": max(bounds) if bounds else None,
    }


def misses(point: SweepPoint, settings: SweepSettings) -> list[str]:
    """The constraints `point` does not meet. Accuracy: the estimate, overall and in every measured group.
    TPR: crossed when shown at 95% confidence, as the gate reads it (overall: every attack, jointly; in a
    group: the selected attack's interval lies above the limit)."""
    missed = []
    if settings.min_accuracy is not None:
        if point.heldout_accuracy.rate < settings.min_accuracy:
            missed.append(f"held-out accuracy {point.heldout_accuracy.rate:.3f} < {settings.min_accuracy:g}")
        for g in point.measured_groups():
            if g.accuracy is not None and g.accuracy.rate < settings.min_accuracy:
                missed.append(f"group {g.group}: held-out accuracy {g.accuracy.rate:.3f} < {settings.min_accuracy:g}")
    missed += [c.describe() for c in point.mia_checks if not c.passed]
    for fpr, limit in settings.max_tpr_at_fpr:
        for g in point.measured_groups():
            row = g.tpr_row(fpr)
            if row.ci[0] > limit:
                missed.append(f"group {g.group}: TPR at FPR {fpr:g} at least {row.ci[0]:.4f} > {limit:g}")
    return missed


def recommend(points: list[SweepPoint], settings: SweepSettings) -> tuple[float | None, dict[str, list[str]]]:
    """The smallest epsilon meeting every constraint (None when none does, or no constraint was given),
    and what each epsilon misses."""
    reasons = {epsilon_label(p.epsilon): misses(p, settings) for p in points}
    if not constraint_names(settings):
        return None, reasons
    meeting = [p.epsilon for p in points if not reasons[epsilon_label(p.epsilon)]]
    return (min(meeting) if meeting else None), reasons


def sweep_headline(points: list[SweepPoint], recommended: float | None, settings: SweepSettings) -> Headline:
    violations = [p for p in points if p.violation]
    if not constraint_names(settings):
        text = f"swept {', '.join(epsilon_label(p.epsilon) for p in points)}; no constraint given, no recommendation"
    elif recommended is None:
        text = f"no epsilon swept meets every constraint ({'; '.join(constraint_names(settings))})"
    else:
        text = f"smallest epsilon meeting every constraint: {epsilon_label(recommended)}"
    if violations:
        text += (
            " -- AT EPSILON "
            + ", ".join(epsilon_label(p.epsilon) for p in violations)
            + " THE EMPIRICAL BOUND EXCEEDS THE THEORETICAL EPSILON: the DP-SGD implementation or its "
            "accounting is broken"
        )
    return Headline(text, None, None, violation=bool(violations))


def sweep_gate(result: SweepResult) -> Gate:
    """With constraints: one check that some epsilon meets them all (value: the fewest constraints any epsilon
    misses). A DP point whose empirical bound exceeds its theoretical epsilon fails the gate whatever the
    constraints say."""
    checks = []
    if constraint_names(result.settings):
        fewest = min(len(missed) for missed in result.reasons.values())
        found = "none" if result.recommended is None else epsilon_label(result.recommended)
        checks.append(
            GateCheck(
                "constraints missed at the best epsilon swept",
                fewest,
                0,
                fewest == 0,
                f"smallest epsilon meeting every constraint: {found}; {'; '.join(constraint_names(result.settings))}",
            )
        )
    if any(p.theoretical_epsilon is not None for p in result.points):
        violations = sum(p.violation for p in result.points)
        checks.append(
            GateCheck("DP points whose empirical bound exceeds the theoretical epsilon", violations, 0, violations == 0)
        )
    return Gate(checks)
