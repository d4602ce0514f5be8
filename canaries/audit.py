"""`privaudit canary`: plant secrets, train, measure exposure, extract them, audit epsilon in one run.

Python API:

    from privaudit.api import canary
    from privaudit.canaries.audit import CanarySettings
    result = canary(CanarySettings(insert=20, repeats=[1, 4, 16], references=4), data="train.csv")
    group = result.by_repeat[0]                      # RepeatGroup: the 20 canaries inserted once
    group.exposure_mean, group.calibrated_top1.rate, group.calibrated_top1.interval
    result.headline.text, result.to_dict()           # CanaryResult

Computed here (`run_canary` -> `CanaryResult`); gated in `privaudit.gate.check_canary`; rendered by
`privaudit.reports` (the "canary" kind).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.progress import Progress

from privaudit.accounting import PrivacyGuarantee, default_delta
from privaudit.attacks.base import scaled_confidence
from privaudit.attacks.modiva import TemplateNotReadable, modiva_extract, slot_layout, white_box
from privaudit.data import TextDataset
from privaudit.errors import PrivauditError
from privaudit.headline import epsilon_headline
from privaudit.metrics import Rate
from privaudit.options import check_seed, comma_separated
from privaudit.recipe import TrainingRecipe
from privaudit.results import SCHEMA_VERSION, Gate, Headline
from privaudit.training import FittedModel, build_classifier, fit
from privaudit.usermodel import UserTrainer
from privaudit.versions import package_versions, run_section

from .calibration import SecretScorer, train_references
from .generate import CanaryPlan, plan_canaries
from .gradient import WhiteBoxAudit
from .onerun import OneRunAudit, one_run_audit
from .templates import DEFAULT_TEMPLATE, Template, parse_template


@dataclass
class CanarySettings:
    insert: int = 20  # canaries per repeat count: every rate is over this many
    repeats: list[int] = field(default_factory=lambda: [1, 4, 16])
    template: str = DEFAULT_TEMPLATE
    label: str | None = None
    decoys: int = 0
    audit_canaries: int = 100
    seed: int = 0
    show_secrets: bool = False
    modiva_steps: int = 200
    modiva_restarts: int = 16
    gradient_canaries: int = 100_000  # white-box audit, with DP-SGD only (0: none)
    # Models trained without the canaries, for calibrated extraction. Off by default: on SNIPS, 2 references
    # helped on one template of four and hurt on three (README), at the cost of 2 more trainings.
    references: int = 0

    def __post_init__(self) -> None:
        # Checked when the settings are made (CLI or config), before any training.
        if self.audit_canaries < 0 or self.gradient_canaries < 0 or self.gradient_canaries == 1:
            raise PrivauditError("--audit-canaries must be 0 or more, --gradient-canaries 0 or at least 2")
        if self.references < 0:
            raise PrivauditError("--references must be 0 or more")
        check_seed(self.seed)
        parse_template(self.template)  # a bad template is refused here, not after the training

    def check_fits(self, recipe: TrainingRecipe) -> None:
        """The canary text must fit in what the model reads, or its secret would be cut off."""
        template = parse_template(self.template)
        words = len(template.render(next(iter(template.all_secrets()))).split())
        if words > recipe.max_len:
            raise PrivauditError(
                f"template {self.template!r}: {words} words, more than the model reads (--max-len {recipe.max_len})"
            )


@dataclass
class ExtractionSummary:
    """One ModIvA setting's success over a group of canaries."""

    extraction: Rate
    position_accuracy: float
    median_relaxed_rank: float | None
    swap_extraction: Rate
    swap_position_accuracy: float


@dataclass
class RepeatGroup:
    """The canaries inserted `repeat` times: exposure and every extraction method's success. With
    reference models, ModIvA's objective is the calibrated one (`calibration`); `enumeration_top1` is
    then the ceiling of every uncalibrated method, `calibrated_top1` its calibrated counterpart."""

    repeat: int
    canaries: int
    exposure_mean: float
    exposure_max: float
    enumeration_top1: Rate
    calibrated_exposure_mean: float | None
    calibrated_top1: Rate | None
    chance: float
    modiva_alphabet: ExtractionSummary | None  # None: ModIvA not applicable (a black-box model)
    modiva_vocab: ExtractionSummary | None

    @property
    def best_extraction_rate(self) -> float:
        """The best of every method: enumeration (both scores), ModIvA with and without swaps, both settings."""
        rates = [self.enumeration_top1, *([self.calibrated_top1] if self.calibrated_top1 else [])]
        for m in (self.modiva_alphabet, self.modiva_vocab):
            if m is not None:
                rates += [m.extraction, m.swap_extraction]
        return max(r.rate for r in rates)


@dataclass
class CanaryResult:
    """What `privaudit canary` computed; `to_dict()` is results.json (schema `SCHEMA_VERSION`, kind "canary")."""

    model: dict[str, Any]  # what was trained: arch, recipe, data, vocabulary, training examples
    settings: CanarySettings
    versions: dict[str, str]
    template: dict[str, Any]
    theoretical: PrivacyGuarantee | None
    canaries: list[dict[str, Any]]  # per exposure canary: hash (or secret), exposure, ModIvA results
    by_repeat: list[RepeatGroup]
    decoys: int
    one_run: OneRunAudit | None  # black-box: text canaries, final model
    whitebox: WhiteBoxAudit | None  # white-box: gradient canaries, every step (DP-SGD only)
    headline: Headline
    run: dict[str, Any]
    # ModIvA's objective ("calibrated" or "target log-odds") and, where it could not run, why.
    modiva: dict[str, Any] = field(default_factory=lambda: {"objective": "target log-odds", "not_applicable": None})
    gate: Gate = field(default_factory=Gate)
    kind: str = field(default="canary", init=False)

    @property
    def max_exposure(self) -> float:
        return max(group.exposure_max for group in self.by_repeat)

    @property
    def best_extraction_rate(self) -> float:
        return max(group.best_extraction_rate for group in self.by_repeat)

    def headlines(self) -> list[Headline]:
        return [self.headline]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "model": self.model,
            "settings": asdict(self.settings),
            "versions": self.versions,
            "template": self.template,
            "theoretical": self.theoretical.to_dict() if self.theoretical else None,
            "canaries": self.canaries,
            "by_repeat": [asdict(group) for group in self.by_repeat],
            "decoys": self.decoys,
            "one_run": self.one_run.to_dict() if self.one_run else None,
            "whitebox": self.whitebox.to_dict() if self.whitebox else None,
            "headline": self.headline.to_dict(),
            "run": self.run,
            "modiva": self.modiva,
            "gate": self.gate.to_dict(),
        }


def parse_repeats(text: str) -> list[int]:
    """`--repeat 1,4,16`: how many times each group of canaries is inserted."""
    return comma_separated(text, int, "--repeat", "1,4,16")


@dataclass
class TrainedRun:
    """One model trained on the data with some of the canaries: a privaudit classifier or the user's model
    (both give `labels` and `logits(texts, batch_size)`), its guarantee, its white-box audit (DP-SGD only)."""

    model: Any
    privacy: PrivacyGuarantee | None
    whitebox: WhiteBoxAudit | None = None


def run_canary(
    settings: CanarySettings,
    data: TextDataset,
    recipe: TrainingRecipe,
    data_description: str,
    device: str = "cpu",
    progress: Progress | None = None,
    trainer: UserTrainer | None = None,
) -> CanaryResult:
    """Plant the canaries in `data`, train with `recipe` (or the user's own `trainer`, which `recipe` then does
    not describe), then measure (ungated: `privaudit.gate` checks)."""
    if trainer is None:
        settings.check_fits(recipe)
    template = parse_template(settings.template)
    labels = data.label_names
    plan = plan_canaries(
        template,
        settings.insert,
        settings.repeats,
        labels,
        settings.seed,
        settings.label,
        settings.audit_canaries,
        settings.decoys,
    )
    timings: dict[str, float] = {}
    if trainer is None:
        runs, references, model = _train_with_recipe(settings, data, recipe, template, plan, device, progress, timings)
    else:
        runs, references, model = _train_with_user_code(settings, data, trainer, plan, progress, timings)
    fitted = runs[0]
    model.update(data=data_description, training_examples=len(data) + len(plan.inserted()), training_runs=plan.runs)

    start = time.perf_counter()
    scorers = [SecretScorer(run.model, references, template) for run in runs]
    # ModIvA needs white-box access and, for the calibrated objective, references that share the target's
    # token ids: privaudit's models share one vocabulary; a user's models may each build their own.
    exposure_canaries = [c for c in plan.canaries if c.role == "exposure"]
    extracted_runs = {c.run for c in exposure_canaries}
    not_applicable = [
        _modiva_not_applicable(run.model, template) if i in extracted_runs else None for i, run in enumerate(runs)
    ]
    modiva_references = references if trainer is None else []
    task = progress.add_task("exposure and extraction", total=len(exposure_canaries)) if progress else None
    rows = []
    spent = {"exposure": 0.0, "alphabet": 0.0, "vocab": 0.0}
    for i, c in enumerate(exposure_canaries):
        clock = time.perf_counter()
        exposures = scorers[c.run].exposures(c.secret, c.label, seed=settings.seed + i)
        spent["exposure"] += time.perf_counter() - clock
        extractions: dict[str, Any] | None = None
        if not_applicable[c.run] is None:
            extractions = {}
            for setting in ("alphabet", "vocab"):
                clock = time.perf_counter()
                extractions[setting] = modiva_extract(
                    runs[c.run].model,
                    template,
                    c.secret,
                    c.label,
                    setting,
                    settings.modiva_steps,
                    settings.modiva_restarts,
                    seed=settings.seed + i,
                    references=modiva_references,
                ).to_dict()
                spent[setting] += time.perf_counter() - clock
        calibrated = exposures.get("calibrated")
        rows.append(
            {
                **c.to_dict(settings.show_secrets),
                "exposure": exposures["target"].to_dict(),
                "calibrated_exposure": calibrated.to_dict() if calibrated else None,
                "modiva": extractions,
            }
        )
        if progress is not None and task is not None:
            progress.advance(task)
    timings["exposure_and_extraction_s"] = time.perf_counter() - start
    per_canary = max(1, len(exposure_canaries))
    timings["exposure_s_per_canary"] = spent["exposure"] / per_canary
    timings["modiva_alphabet_s_per_canary"] = spent["alphabet"] / per_canary
    timings["modiva_vocab_s_per_canary"] = spent["vocab"] / per_canary

    start = time.perf_counter()
    audit_canaries = [c for c in plan.canaries if c.role == "audit"]
    privacy = fitted.privacy
    delta = privacy.delta if privacy else default_delta(len(data))
    one_run = None
    if audit_canaries:
        audited = runs[audit_canaries[0].run].model
        scores = _membership_scores(audited, template, audit_canaries, settings.seed)
        one_run = one_run_audit(scores, np.array([c.repeat > 0 for c in audit_canaries]), delta)
    timings["one_run_audit_s"] = time.perf_counter() - start
    notes = sorted({reason for reason in not_applicable if reason is not None})

    return CanaryResult(
        model=model,
        settings=settings,
        versions=package_versions(),
        template={"text": template.text, "space_size": template.space_size, "slots": template.slots},
        theoretical=privacy,
        canaries=rows,
        by_repeat=summarise(rows, settings.repeats, template.space_size),
        decoys=len(plan.decoys),
        one_run=one_run,
        whitebox=fitted.whitebox,
        headline=headline(one_run, fitted.whitebox, privacy),
        run=run_section(timings),
        modiva={
            "objective": "calibrated" if modiva_references else "target log-odds",
            "not_applicable": "; ".join(notes) or None,
        },
    )


def _train_with_recipe(
    settings: CanarySettings,
    data: TextDataset,
    recipe: TrainingRecipe,
    template: Template,
    plan: CanaryPlan,
    device: str,
    progress: Progress | None,
    timings: dict[str, float],
) -> tuple[list[TrainedRun], list[Any], dict[str, Any]]:
    """privaudit's own training: every run and reference model on one vocabulary, the recipe's."""
    labels = data.label_names
    # Every run reads one vocabulary (the first run's: the template's words and, required, its alphabet),
    # so one set of reference models calibrates them all and ModIvA's tokens mean the same in each. Built
    # first, so that a symbol that is not one token is refused before any training.
    first = data + plan.inserted(0)
    vocabulary = build_classifier(recipe.resolved(len(first)), first.texts, labels, required_tokens=template.symbols)
    slot_layout(vocabulary, template)
    start = time.perf_counter()
    runs: list[FittedModel] = []
    for run in range(plan.runs):
        runs.append(
            fit(
                data + plan.inserted(run),
                labels,
                recipe,
                device,
                progress,
                f"training with canaries (run {run + 1} of {plan.runs})",
                # The white-box audit (gradient canaries) lives in the first run.
                gradient_canaries=settings.gradient_canaries if recipe.dp is not None and run == 0 else 0,
                tokenizer=vocabulary.tokenizer,
            )
        )
    _timed_training(timings, start, plan.runs)
    start = time.perf_counter()
    references = train_references(data, labels, recipe, runs[0].classifier, settings.references, device, progress)
    timings["references_s"] = time.perf_counter() - start
    fitted = runs[0]
    model = {
        "arch": fitted.recipe.arch,
        "recipe": fitted.recipe.to_dict(),
        "vocabulary": fitted.recipe.vocabulary_description(),
    }
    return [TrainedRun(r.classifier, r.privacy, r.whitebox) for r in runs], references, model


def _train_with_user_code(
    settings: CanarySettings,
    data: TextDataset,
    trainer: UserTrainer,
    plan: CanaryPlan,
    progress: Progress | None,
    timings: dict[str, float],
) -> tuple[list[TrainedRun], list[Any], dict[str, Any]]:
    """The user's own trainer, called as for shadow models: the data with each run's canaries (seed
    `settings.seed`), and the reference models on the data alone (other seeds)."""
    total = plan.runs + settings.references
    task = progress.add_task("training with your trainer (canary runs, references)", total=total) if progress else None

    def trained(dataset: TextDataset, seed: int) -> Any:
        model = trainer.train(dataset, seed)
        if progress is not None and task is not None:
            progress.advance(task)
        return model

    start = time.perf_counter()
    runs = []
    for run in range(plan.runs):
        model = trained(data + plan.inserted(run), settings.seed)
        runs.append(TrainedRun(model, model.privacy()))
    _timed_training(timings, start, plan.runs)
    start = time.perf_counter()
    references = [trained(data, settings.seed + 1 + k) for k in range(settings.references)]
    timings["references_s"] = time.perf_counter() - start
    model = {"arch": "your trainer", "trainer": trainer.identity()["trainer"], "vocabulary": "your model's own"}
    return runs, references, model


def _timed_training(timings: dict[str, float], start: float, runs: int) -> None:
    timings["training_s"] = time.perf_counter() - start
    timings["training_s_per_run"] = timings["training_s"] / runs


def _modiva_not_applicable(model: Any, template) -> str | None:
    """Why ModIvA cannot run on `model` (None: it can): no white-box access, or a symbol that is not one
    of its tokens (a user's tokenizer may not hold every symbol)."""
    if white_box(model) is None:
        return "ModIvA not applicable: the model gives no white-box access (encode, input_embeddings, forward_embeds)"
    try:
        slot_layout(model, template)
    except TemplateNotReadable as exc:  # an exception in the user's own code is reported as theirs, not here
        return f"ModIvA not applicable: {exc}"
    return None


def _membership_scores(classifier, template, canaries, seed: int, reference: int = 500) -> np.ndarray:
    """Each canary's confidence in its label, standardised against random secrets under that label."""
    rng = np.random.default_rng(seed)
    label_stats = {}
    for label in sorted({c.label for c in canaries}):
        secrets = [
            tuple(a[j] for a, j in zip(template.alphabets, rng.integers(0, [len(a) for a in template.alphabets])))
            for _ in range(reference)
        ]
        phi = _phi(classifier, [template.render(s) for s in secrets], label)
        label_stats[label] = (phi.mean(), phi.std() + 1e-9)
    scores = []
    for c in canaries:
        mean, std = label_stats[c.label]
        scores.append((_phi(classifier, [c.text], c.label)[0] - mean) / std)
    return np.array(scores)


def _phi(classifier, texts, label) -> np.ndarray:
    logits = classifier.logits(texts).numpy()
    return scaled_confidence(logits, np.full(len(texts), classifier.labels.index(label)))


def summarise(rows: list[dict], repeats: list[int], space: int) -> list[RepeatGroup]:
    out = []
    for r in sorted(set(repeats)):
        group = [row for row in rows if row["repeat"] == r]
        if not group:
            continue
        exposures = [row["exposure"]["exposure"] for row in group]
        calibrated = [row["calibrated_exposure"] for row in group if row["calibrated_exposure"] is not None]
        out.append(
            RepeatGroup(
                repeat=r,
                canaries=len(group),
                exposure_mean=float(np.mean(exposures)),
                exposure_max=float(np.max(exposures)),
                enumeration_top1=Rate.of([row["exposure"]["rank"] == 1 for row in group]),
                calibrated_exposure_mean=float(np.mean([e["exposure"] for e in calibrated])) if calibrated else None,
                calibrated_top1=Rate.of([e["rank"] == 1 for e in calibrated]) if calibrated else None,
                chance=1.0 / space,
                modiva_alphabet=_extraction_summary([row["modiva"]["alphabet"] for row in group if row["modiva"]]),
                modiva_vocab=_extraction_summary([row["modiva"]["vocab"] for row in group if row["modiva"]]),
            )
        )
    return out


def _extraction_summary(extractions: list[dict]) -> ExtractionSummary | None:
    if not extractions:
        return None
    ranks = [e["relaxed_rank"] for e in extractions if e["relaxed_rank"] is not None]
    return ExtractionSummary(
        extraction=Rate.of([e["success"] for e in extractions]),
        position_accuracy=float(np.mean([e["position_accuracy"] for e in extractions])),
        median_relaxed_rank=float(np.median(ranks)) if ranks else None,
        swap_extraction=Rate.of([e["swap_success"] for e in extractions]),
        swap_position_accuracy=float(np.mean([e["swap_position_accuracy"] for e in extractions])),
    )


def headline(one_run: OneRunAudit | None, whitebox: WhiteBoxAudit | None, privacy: PrivacyGuarantee | None) -> Headline:
    """The theoretical epsilon next to the white-box bound (gradient canaries, every step observed: the
    strongest adversary DP admits) and the black-box one (text canaries, final model only)."""
    if whitebox is None and one_run is None:
        return Headline("no audit canaries: no one-run epsilon bound", None, privacy.epsilon if privacy else None)
    black = (
        f"black-box canaries (final model) at least {one_run.epsilon:.2f}, {one_run.steinke.correct} of "
        f"{one_run.steinke.guesses} guesses right"
        if one_run is not None
        else ""
    )
    if whitebox is None:
        assert one_run is not None
        return epsilon_headline(
            "one-run canary audit",
            one_run.epsilon,
            privacy,
            one_run.confidence,
            f", {one_run.steinke.correct} of {one_run.steinke.guesses} guesses right",
        )
    bound = whitebox.epsilon  # the strongest adversary's; the black-box bound is shown beside it, not maxed in
    detail = (
        f"; white-box {whitebox.every_step.steinke.epsilon:.2f} (Steinke et al.), "
        f"{whitebox.every_step.gdp.epsilon:.2f} (f-DP, Gaussian) from {whitebox.canaries:,} gradient canaries"
        + (f"; {black}" if black else "")
    )
    result = epsilon_headline("white-box one-run audit", bound, privacy, whitebox.confidence, detail)
    failures = whitebox.check_failures()  # a bound above the claim is flagged by epsilon_headline itself
    if failures:
        result.violation = True
        result.text += " -- " + "; ".join(failures).upper()
    return result
