"""`privaudit mia`: shadow-model membership inference against a trained classifier.

Python API:

    from privaudit.api import mia
    from privaudit.mia import MiaSettings
    result = mia("model.pt", MiaSettings(attack="lira", shadows=16))   # model.audit.json beside it
    result.attacks["lira"].auc, result.headline.text, result.to_dict()   # MiaResult; to_dict() is results.json

The audit set is the members and held-out non-members named by the model's audit manifest (or
--members / --nonmembers files). Shadow models are trained with the model's own recipe on random halves
of the population (audit set plus any --population data). Every attack is computed from the same shadow pool and its
metrics shown side by side; the one named by `attack` is shown first, and the gate checks them all.

Computed here (`run_mia` -> `MiaResult`); gated in `privaudit.gate.check_mia`; rendered by
`privaudit.reports` (the "mia" kind).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from privaudit.attacks import ATTACKS, AttackInputs
from privaudit.attacks.lira import PER_EXAMPLE_MIN_SHADOWS, fallback_examples, variance_for

from . import metrics
from .accounting import PrivacyGuarantee, default_delta
from .bundle import ModelBundle, load_bundle
from .classifier import TextClassifier
from .data import TextDataset, load_dataset
from .devices import resolve_device
from .errors import PrivauditError
from .headline import epsilon_headline
from .manifest import AuditManifest, keyed_fingerprints, new_key
from .options import check_seed
from .queries import flatten
from .queries import neighbours as query_neighbours
from .recipe import TrainingRecipe
from .results import SCHEMA_VERSION, Gate, Headline
from .shadows import BACKENDS, default_cache_dir, default_workers, train_shadows
from .source import file_source, load_source
from .tokenization import vocabulary_evidence
from .usermodel import CodeRef, UserModel, UserTrainer, load_user_model
from .versions import package_versions, run_section


@dataclass
class MiaSettings:
    attack: str = "lira"
    shadows: int = 16
    seed: int = 0
    epsilon_method: str = "bonferroni"  # or "split": both are computed, this one is the headline
    workers: int | None = None  # None: 2 on a CPU, 1 on a GPU
    cache_dir: str | None = None  # None: ~/.cache/privaudit
    device: str = "auto"  # resolved by run_mia (privaudit.devices)
    show_text: bool = False
    n_vulnerable: int = 10
    bootstrap: int = 1000
    queries: int = 4  # query neighbours per example (privaudit.queries), for the augmented and label-only attacks
    backend: str = "local"  # where shadows train: "local" (worker processes) or "ray" (privaudit.shadows)
    ray_address: str | None = None  # with backend "ray": the cluster; None: a local Ray instance

    def validate(self) -> None:
        if self.attack not in ATTACKS:
            raise PrivauditError(f"unknown attack {self.attack!r} (choose from {', '.join(ATTACKS)})")
        if self.epsilon_method not in metrics.EPSILON_METHODS:
            raise PrivauditError("epsilon method must be split or bonferroni")
        if self.shadows < 0:
            raise PrivauditError("--shadows must be 0 or more")
        if self.queries < 0:
            raise PrivauditError("--queries must be 0 or more")
        if self.backend not in BACKENDS:
            raise PrivauditError(f"unknown backend {self.backend!r} (choose from {', '.join(BACKENDS)})")
        if self.ray_address is not None and self.backend != "ray":
            raise PrivauditError("--ray-address needs --backend ray")
        check_seed(self.seed)
        if ATTACKS[self.attack].needs_shadows and self.shadows < 2:
            raise PrivauditError(f"attack {self.attack!r} needs --shadows 2 or more")
        if ATTACKS[self.attack].needs_queries and self.queries == 0:
            raise PrivauditError(f"attack {self.attack!r} needs --queries 1 or more")

    def shadow_workers(self) -> int:
        """How many processes train the shadows: `workers`, or the default for the device they train on."""
        return self.workers or default_workers(resolve_device(self.device))

    def computed_attacks(self, learned_vocabulary: bool) -> list[str]:
        """Every attack the settings support (shadows for some, query neighbours for others) on a target
        whose vocabulary was (or was not) learned from its training texts."""
        return [
            name
            for name, spec in ATTACKS.items()
            if (self.shadows >= 2 or not spec.needs_shadows)
            and (self.queries > 0 or not spec.needs_queries)
            and (learned_vocabulary or not spec.needs_vocabulary)
        ]


@dataclass
class AuditTarget:
    """What membership inference audits: a model's outputs (`classifier`: labels, label_ids, logits and a
    tokenizer or None), how to train models like it (`trainer`: privaudit's recipe, the user's trainer, or
    None when no shadow model may be trained), its theoretical guarantee, and what results say of it."""

    classifier: TextClassifier | UserModel
    trainer: TrainingRecipe | UserTrainer | None
    privacy: PrivacyGuarantee | None
    description: dict[str, Any]  # results.json's "model": arch, recipe, vocabulary, metrics

    @property
    def learned_vocabulary(self) -> bool:
        """Its vocabulary was learned from its training texts (privaudit's `learned`): what the vocabulary
        attack reads. Not for a hashed or pretrained vocabulary, nor a user's model (not inspected)."""
        recipe = self.trainer
        return (
            isinstance(recipe, TrainingRecipe)
            and recipe.vocabulary == "learned"
            and self.classifier.tokenizer is not None
        )

    @classmethod
    def of_bundle(cls, bundle: ModelBundle) -> AuditTarget:
        recipe = bundle.recipe
        return cls(
            bundle.classifier,
            recipe,
            bundle.privacy,
            {
                "arch": recipe.arch,
                "recipe": recipe.to_dict(),
                "vocabulary": recipe.vocabulary_description(),
                "metrics": bundle.metrics,
            },
        )


def user_target(loader: CodeRef, trainer: CodeRef | None = None, path: str | Path | None = None) -> AuditTarget:
    """The user's own model (`privaudit.usermodel`), with their trainer for shadow models."""
    model = load_user_model(loader, path)
    return AuditTarget(
        model,
        UserTrainer(trainer) if trainer is not None else None,
        model.privacy(),
        {
            "arch": f"your model ({loader.spec})",
            "recipe": {"trainer": trainer.spec} if trainer is not None else None,
            "vocabulary": "your model's own tokenizer (not inspected: the vocabulary attack has nothing to read)",
            "metrics": {},
        },
    )


@dataclass
class AuditSet:
    """Population = audit members + audit non-members + extra population points, in that order.

    `key` keys the fingerprints that results carry (the manifest's key, or a throwaway one): without it, a
    report's per-example rows cannot be matched to any text."""

    population: TextDataset
    n_members: int
    n_nonmembers: int
    source: str
    key: str = field(default_factory=new_key)

    @property
    def n_audit(self) -> int:
        return self.n_members + self.n_nonmembers

    @property
    def is_member(self) -> np.ndarray:
        return np.r_[np.ones(self.n_members, bool), np.zeros(self.n_nonmembers, bool)]


def audit_set_from_manifest(manifest: AuditManifest, data: str | Path | None = None) -> AuditSet:
    """Find the manifest's members and held-out examples in the training data (or in `data`)."""
    if not manifest.member_fingerprints or not manifest.heldout_fingerprints:
        raise PrivauditError(
            "the audit manifest records no members or no held-out examples: give --members and --nonmembers"
        )
    source = manifest.data_source
    if data is not None:
        dataset = load_source(file_source(data, source.text_col, source.label_col))
        where = str(data)
    else:
        dataset, where = load_source(source), source.describe()
    member_fps = set(manifest.member_fingerprints)
    heldout_fps = set(manifest.heldout_fingerprints) - member_fps  # a copy of a member is no non-member
    fps = keyed_fingerprints(dataset, manifest.key)
    members = [i for i, f in enumerate(fps) if f in member_fps]
    nonmembers = [i for i, f in enumerate(fps) if f in heldout_fps]
    if len({fps[i] for i in members}) < len(member_fps):
        raise PrivauditError(
            f"{where} does not contain the model's training members "
            f"({len({fps[i] for i in members})} of {len(member_fps)} found): give the training data with --data"
        )
    return AuditSet(
        dataset.subset(members) + dataset.subset(nonmembers), len(members), len(nonmembers), where, manifest.key
    )


def audit_set_from_files(
    members: str | Path, nonmembers: str | Path, text_col: str = "text", label_col: str = "label"
) -> AuditSet:
    m = load_dataset(members, text_col, label_col)
    n = load_dataset(nonmembers, text_col, label_col)
    return AuditSet(m + n, len(m), len(n), f"{members} / {nonmembers}")


@dataclass
class AttackFigures:
    """One attack's figures over the audit set. Intervals: bootstrap over members and non-members for the
    AUC, `metrics.tpr_interval` (threshold estimation included) for the TPRs. `auc_lower_joint` and each
    TPR's `lower_joint`: one-sided lower bounds at the Bonferroni level over all attacks of the audit
    (`joint_confidence`), which the gate compares with its limits."""

    auc: float
    auc_ci: tuple[float, float]
    auc_lower_joint: float
    joint_confidence: float
    balanced_accuracy: float
    tpr_at_fpr: list[metrics.TprAtFpr]
    empirical_epsilon: dict[str, metrics.EpsilonBound]  # by threshold-selection method
    roc: dict[str, list[float]]

    def tpr_row(self, fpr: float) -> metrics.TprAtFpr:
        """The row of a grid FPR (`privaudit.gate.Thresholds` only accepts grid FPRs)."""
        return next(row for row in self.tpr_at_fpr if abs(row.fpr - fpr) < 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "auc_lower_joint": self.auc_lower_joint,
            "joint_confidence": self.joint_confidence,
            "balanced_accuracy": self.balanced_accuracy,
            "tpr_at_fpr": [row.to_dict() for row in self.tpr_at_fpr],
            "empirical_epsilon": {m: b.to_dict() for m, b in self.empirical_epsilon.items()},
            "roc": self.roc,
        }


@dataclass
class StrongestBound:
    """The largest empirical epsilon over all attacks, still valid at `confidence` (Bonferroni)."""

    attack: str
    epsilon: float
    confidence: float
    method: str


@dataclass
class MiaResult:
    """What `privaudit mia` computed; `to_dict()` is results.json (schema `SCHEMA_VERSION`, kind "mia")."""

    model: dict[str, Any]  # what was audited: path, arch, recipe, vocabulary, data, metrics
    settings: MiaSettings
    versions: dict[str, str]
    audit_set: dict[str, int]  # members, nonmembers, population, shadows
    theoretical: PrivacyGuarantee | None
    delta: float
    primary_attack: str
    attacks: dict[str, AttackFigures]
    attack_notes: dict[str, str]  # how an attack was set up where the run decided it (LiRA's variance)
    headline: Headline
    vulnerable: list[dict[str, Any]]
    per_example: dict[str, Any]  # keyed fingerprints, membership, every attack's scores
    run: dict[str, Any]
    gate: Gate = field(default_factory=Gate)
    kind: str = field(default="mia", init=False)

    def headlines(self) -> list[Headline]:
        return [self.headline]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "model": self.model,
            "settings": {k: v for k, v in asdict(self.settings).items() if k != "cache_dir"},
            "versions": self.versions,
            "audit_set": self.audit_set,
            "theoretical": self.theoretical.to_dict() if self.theoretical else None,
            "delta": self.delta,
            "primary_attack": self.primary_attack,
            "attacks": {name: figures.to_dict() for name, figures in self.attacks.items()},
            "attack_notes": self.attack_notes,
            "headline": self.headline.to_dict(),
            "vulnerable": self.vulnerable,
            "per_example": self.per_example,
            "run": self.run,
            "gate": self.gate.to_dict(),
        }


def run_mia(
    model: str | Path | ModelBundle | AuditTarget,
    settings: MiaSettings | None = None,
    audit: AuditSet | None = None,
    population: str | Path | None = None,
    progress: Progress | None = None,
) -> MiaResult:
    """Run every attack against `model` (ungated: `privaudit.gate.gate` adds the checks)."""
    settings = settings or MiaSettings()
    settings.validate()
    settings = replace(settings, device=resolve_device(settings.device))  # results record the device used
    if isinstance(model, AuditTarget):
        target = model
    else:
        target = AuditTarget.of_bundle(model if isinstance(model, ModelBundle) else load_bundle(model, settings.device))
    names = settings.computed_attacks(target.learned_vocabulary)
    if settings.attack not in names:
        raise PrivauditError(
            f"attack {settings.attack!r} needs a vocabulary learned from the training texts; this model's: "
            f"{target.description['vocabulary']}"
        )
    if audit is None:
        raise PrivauditError("no audit set: give the model's audit manifest, or --members and --nonmembers")
    if population is not None:
        extra = load_dataset(population)
        audit = AuditSet(audit.population + extra, audit.n_members, audit.n_nonmembers, audit.source)
    if audit.n_members == 0 or audit.n_nonmembers == 0:
        raise PrivauditError("the audit needs at least one member and one non-member")
    classifier = target.classifier
    labels = classifier.label_ids(audit.population.labels).cpu().numpy()  # names unknown labels, exit 2
    timings = {}

    start = time.perf_counter()
    needs_shadows = settings.shadows >= 2  # else only the attacks that need no shadow model run
    neighbours = query_neighbours(audit.population.texts, settings.queries, settings.seed)
    if needs_shadows:
        if target.trainer is None:
            raise PrivauditError("shadow models need a trainer: give --trainer (or --shadows 0 --attack loss)")
        pool = train_shadows(
            audit.population,
            classifier.labels,
            target.trainer,
            settings.shadows,
            settings.seed,
            Path(settings.cache_dir) if settings.cache_dir else default_cache_dir(),
            settings.shadow_workers(),
            settings.device,
            progress,
            neighbours,
            settings.backend,
            settings.ray_address,
        )
        shadow_logits, shadow_query_logits, shadow_in = pool.logits, pool.query_logits, pool.inclusion
        cached, repaired = pool.cached, pool.repaired
    else:
        n, c = len(audit.population), len(classifier.labels)
        shadow_logits = np.zeros((0, n, c), np.float32)
        shadow_query_logits = np.zeros((0, n, settings.queries, c), np.float32)
        shadow_in, cached, repaired = np.zeros((0, n), bool), 0, 0
    timings["shadow_training_s"] = time.perf_counter() - start

    start = time.perf_counter()
    target_logits = classifier.logits(audit.population.texts).numpy()
    target_query_logits = (
        classifier.logits(flatten(neighbours)).numpy().reshape(len(audit.population), settings.queries, -1)
        if settings.queries
        else np.zeros((len(audit.population), 0, len(classifier.labels)), np.float32)
    )
    n_audit = audit.n_audit
    extra_points = np.arange(n_audit, len(audit.population))
    inputs = AttackInputs(
        labels,
        target_logits,
        shadow_logits,
        shadow_in,
        reference_points=extra_points if len(extra_points) else np.arange(audit.n_members, n_audit),
        vocabulary_evidence=(
            vocabulary_evidence(classifier.tokenizer, audit.population.texts) if target.learned_vocabulary else None
        ),
        target_query_logits=target_query_logits,
        shadow_query_logits=shadow_query_logits,
    )
    scores = {name: ATTACKS[name].run(inputs)[:n_audit] for name in names}
    timings["scoring_s"] = time.perf_counter() - start

    start = time.perf_counter()
    privacy = target.privacy
    delta = privacy.delta if privacy else default_delta(audit.n_members)
    is_member = audit.is_member
    joint_confidence = metrics.bonferroni(0.95, len(scores))
    attacks = {name: attack_metrics(s, is_member, delta, settings, joint_confidence) for name, s in scores.items()}
    timings["metrics_s"] = time.perf_counter() - start

    strongest = strongest_bound(scores, is_member, delta, settings)
    fingerprints = keyed_fingerprints(audit.population.subset(range(n_audit)), audit.key)
    return MiaResult(
        model={
            "path": None if isinstance(model, (ModelBundle, AuditTarget)) else str(model),
            **target.description,
            "data": audit.source,
        },
        settings=settings,
        versions=package_versions(),
        audit_set={
            "members": audit.n_members,
            "nonmembers": audit.n_nonmembers,
            "population": len(audit.population),
            "shadows": settings.shadows if needs_shadows else 0,
        },
        theoretical=privacy,
        delta=delta,
        primary_attack=settings.attack,
        attacks=attacks,
        attack_notes=attack_notes(names, shadow_in),
        headline=headline(strongest, privacy),
        vulnerable=most_vulnerable(
            scores[settings.attack],
            is_member,
            fingerprints,
            audit.population.texts if settings.show_text else None,
            settings.n_vulnerable,
        ),
        per_example={
            "fingerprints": fingerprints,
            "is_member": is_member.astype(int).tolist(),
            # Full precision (JSON floats round-trip exactly): every figure can be recomputed from them.
            "scores": {name: s.tolist() for name, s in scores.items()},
        },
        run={**run_section(timings), "shadows_from_cache": cached, "damaged_cache_files_rebuilt": repaired},
    )


def attack_metrics(
    scores: np.ndarray, is_member: np.ndarray, delta: float, settings: MiaSettings, joint_confidence: float = 0.95
) -> AttackFigures:
    """One attack's figures; the `_joint` lower bounds at `joint_confidence` (one-sided)."""
    fpr, tpr, _ = metrics.roc_curve(scores, is_member)
    roc_fpr, roc_tpr = metrics.downsample_roc(fpr, tpr)
    aucs = metrics.auc_bootstrap(scores, is_member, settings.bootstrap, seed=settings.seed)
    return AttackFigures(
        auc=metrics.auc(scores, is_member),
        auc_ci=(float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))),
        auc_lower_joint=float(np.percentile(aucs, 100 * (1 - joint_confidence))),
        joint_confidence=joint_confidence,
        balanced_accuracy=metrics.balanced_accuracy(scores, is_member),
        tpr_at_fpr=[
            metrics.tpr_at_fpr(scores, is_member, f, joint_confidence=joint_confidence) for f in metrics.FPR_GRID
        ],
        empirical_epsilon={
            m: metrics.empirical_epsilon(scores, is_member, delta, m, seed=settings.seed)
            for m in metrics.EPSILON_METHODS
        },
        roc={"fpr": roc_fpr, "tpr": roc_tpr},
    )


def strongest_bound(
    scores: dict[str, np.ndarray], is_member: np.ndarray, delta: float, settings: MiaSettings, confidence: float = 0.95
) -> StrongestBound:
    """The largest empirical epsilon over all attacks, still valid at `confidence`: each attack's bound
    is computed at 1 - (1 - confidence) / #attacks (Bonferroni), so picking the best costs nothing."""
    each = metrics.bonferroni(confidence, len(scores))
    bounds = {
        name: metrics.empirical_epsilon(s, is_member, delta, settings.epsilon_method, each, settings.seed)
        for name, s in scores.items()
    }
    name = max(bounds, key=lambda n: bounds[n].epsilon)
    method = f"threshold by {settings.epsilon_method}, Bonferroni over {len(scores)} attacks"
    return StrongestBound(name, bounds[name].epsilon, confidence, method)


def attack_notes(names: list[str], shadow_in: np.ndarray) -> dict[str, str]:
    """What the LiRA variants chose from the number of shadows, and how many examples fell back."""
    k = shadow_in.shape[0]
    variance = variance_for(k)
    if variance == "per-example":
        fallbacks = fallback_examples(shadow_in)
        note = f"per-example variance ({k} shadows); global for the {fallbacks} examples with < 2 models on a side"
    else:
        note = f"global variance: {k} shadows, fewer than the {PER_EXAMPLE_MIN_SHADOWS} per-example variances need"
    return {name: note for name in names if name.startswith("lira")}


def headline(bound: StrongestBound, privacy: PrivacyGuarantee | None) -> Headline:
    """The strongest attack's bound next to the theoretical epsilon."""
    return replace(
        epsilon_headline(f"strongest attack ({bound.attack})", bound.epsilon, privacy, bound.confidence),
        attack=bound.attack,
        method=bound.method,
    )


def most_vulnerable(scores, is_member, fingerprints, texts, k: int) -> list[dict]:
    """The k training members the attack is most sure of (raw text only when asked for)."""
    members = np.flatnonzero(is_member)
    top = members[np.argsort(-scores[members], kind="mergesort")[:k]]
    return [
        {"fingerprint": fingerprints[i], "score": float(scores[i]), **({"text": texts[i]} if texts is not None else {})}
        for i in top
    ]
