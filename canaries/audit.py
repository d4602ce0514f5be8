"""`privaudit canary`: plant secrets, train, measure exposure, extract them, audit epsilon in one run.

Python API:

    from privaudit.canaries.audit import CanarySettings, run_canary
    result = run_canary(CanarySettings(insert=20, repeats=[1, 4, 16]), data="train.csv")
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.progress import Progress

from privaudit.accounting import default_delta
from privaudit.attacks.base import scaled_confidence
from privaudit.attacks.modiva import modiva_extract, slot_layout
from privaudit.data import TextDataset
from privaudit.headline import epsilon_headline
from privaudit.recipe import TrainingRecipe
from privaudit.training import fit
from privaudit.versions import package_versions, run_section

from .exposure import exposure
from .generate import plan_canaries
from .onerun import one_run_audit
from .templates import DEFAULT_TEMPLATE, parse_template

SCHEMA_VERSION = 1


@dataclass
class CanarySettings:
    insert: int = 20
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


def run_canary(settings: CanarySettings, data: TextDataset, recipe: TrainingRecipe, data_description: str,
               device: str = "cpu", progress: Progress | None = None) -> dict:
    template = parse_template(settings.template)
    labels = data.label_names
    plan = plan_canaries(template, settings.insert, settings.repeats, labels, settings.seed, settings.label,
                         settings.audit_canaries, settings.decoys)
    timings = {}
    start = time.perf_counter()
    fitted = fit(data + plan.inserted(), labels, recipe, device, progress, "training with canaries",
                 gradient_canaries=settings.gradient_canaries if recipe.dp is not None else 0)
    timings["training_s"] = time.perf_counter() - start
    classifier = fitted.classifier
    slot_layout(classifier, template)  # every alphabet symbol must be a vocabulary token (else exit 2)

    start = time.perf_counter()
    exposure_canaries = [c for c in plan.canaries if c.role == "exposure"]
    task = progress.add_task("exposure and extraction", total=len(exposure_canaries)) if progress else None
    rows = []
    spent = {"exposure": 0.0, "alphabet": 0.0, "vocab": 0.0}
    for i, c in enumerate(exposure_canaries):
        clock = time.perf_counter()
        e = exposure(classifier, template, c.secret, c.label, seed=settings.seed + i)
        spent["exposure"] += time.perf_counter() - clock
        extractions = {}
        for setting in ("alphabet", "vocab"):
            clock = time.perf_counter()
            extractions[setting] = modiva_extract(classifier, template, c.secret, c.label, setting,
                                                  settings.modiva_steps, settings.modiva_restarts,
                                                  seed=settings.seed + i).to_dict()
            spent[setting] += time.perf_counter() - clock
        rows.append({**c.to_dict(settings.show_secrets), "exposure": e.to_dict(), "modiva": extractions})
        if task is not None:
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
        scores = _membership_scores(classifier, template, audit_canaries, settings.seed)
        one_run = one_run_audit(scores, np.array([c.repeat > 0 for c in audit_canaries]), delta).to_dict()
    timings["one_run_audit_s"] = time.perf_counter() - start

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "canary",
        "model": {"arch": fitted.recipe.arch, "recipe": fitted.recipe.to_dict(), "data": data_description,
                  "vocabulary": fitted.recipe.vocabulary_description(),
                  "training_examples": len(data) + len(plan.inserted())},
        "settings": asdict(settings),
        "versions": package_versions(),
        "template": {"text": template.text, "space_size": template.space_size, "slots": template.slots},
        "theoretical": privacy.to_dict() if privacy else None,
        "canaries": rows,
        "by_repeat": summarise(rows, settings.repeats, template.space_size),
        "decoys": len(plan.decoys),
        "one_run": one_run,
        "whitebox": fitted.whitebox.to_dict() if fitted.whitebox is not None else None,
        "headline": headline(one_run, fitted.whitebox, privacy),
        "run": run_section(timings),
    }


def check_canary(result: dict, max_exposure: float | None, max_extraction_rate: float | None,
                 max_empirical_epsilon: float | None):
    """Gate checks: the largest exposure of any canary, the best extraction rate of any method at any
    repeat count, and the one-run epsilon bound."""
    from privaudit.gate import Check

    checks = []
    if max_exposure is not None:
        value = max(row["exposure"]["exposure"] for row in result["canaries"])
        checks.append(Check("canary exposure (max, bits)", value, max_exposure, value <= max_exposure))
    if max_extraction_rate is not None:
        value = max(max(g["enumeration_top1_rate"], *(g[f"modiva_{s}"][k] for s in ("alphabet", "vocab")
                                                      for k in ("extraction_rate", "swap_extraction_rate")))
                    for g in result["by_repeat"])
        checks.append(Check("canary extraction rate (best method, any repeat count)", value, max_extraction_rate,
                            value <= max_extraction_rate))
    bounds = [s["epsilon"] for s in (result["one_run"], result.get("whitebox")) if s is not None]
    if max_empirical_epsilon is not None and bounds:
        value = max(bounds)
        checks.append(Check("one-run empirical epsilon (95% lower bound)", value, max_empirical_epsilon,
                            value <= max_empirical_epsilon))
    if result.get("whitebox") is not None:
        # A DP-SGD that breaks its own promise fails the gate whatever the thresholds say.
        failed = int(result["headline"]["violation"])
        checks.append(Check("DP-SGD implementation (bound above theoretical epsilon, or a sampling or noise check failed)",
                            failed, 0, failed == 0))
    return checks


def _membership_scores(classifier, template, canaries, seed: int, reference: int = 500) -> np.ndarray:
    """Each canary's confidence in its label, standardised against random secrets under that label."""
    rng = np.random.default_rng(seed)
    label_stats = {}
    for label in sorted({c.label for c in canaries}):
        secrets = [tuple(a[j] for a, j in zip(template.alphabets, rng.integers(0, [len(a) for a in template.alphabets])))
                   for _ in range(reference)]
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


def summarise(rows: list[dict], repeats: list[int], space: int) -> list[dict]:
    out = []
    for r in sorted(set(repeats)):
        group = [row for row in rows if row["repeat"] == r]
        if not group:
            continue
        exposures = [row["exposure"]["exposure"] for row in group]
        summary = {
            "repeat": r, "canaries": len(group),
            "exposure_mean": float(np.mean(exposures)), "exposure_max": float(np.max(exposures)),
            "enumeration_top1_rate": float(np.mean([row["exposure"]["rank"] == 1 for row in group])),
            "chance": 1.0 / space,
        }
        for setting in ("alphabet", "vocab"):
            ex = [row["modiva"][setting] for row in group]
            ranks = [e["relaxed_rank"] for e in ex if e["relaxed_rank"] is not None]
            summary[f"modiva_{setting}"] = {
                "extraction_rate": float(np.mean([e["success"] for e in ex])),
                "position_accuracy": float(np.mean([e["position_accuracy"] for e in ex])),
                "median_relaxed_rank": float(np.median(ranks)) if ranks else None,
                "swap_extraction_rate": float(np.mean([e["swap_success"] for e in ex])),
                "swap_position_accuracy": float(np.mean([e["swap_position_accuracy"] for e in ex])),
            }
        out.append(summary)
    return out


def headline(one_run: dict | None, whitebox, privacy) -> dict:
    """The theoretical epsilon next to the white-box bound (gradient canaries, every step observed: the
    strongest adversary DP admits) and the black-box one (text canaries, final model only)."""
    if whitebox is None and one_run is None:
        return {"text": "no audit canaries: no one-run epsilon bound", "empirical_epsilon": None,
                "theoretical_epsilon": privacy.epsilon if privacy else None, "violation": False}
    black = (f"black-box canaries (final model) at least {one_run['epsilon']:.2f}, {one_run['correct']} of "
             f"{one_run['guesses']} guesses right" if one_run is not None else "")
    if whitebox is None:
        return epsilon_headline("one-run canary audit", one_run["epsilon"], privacy, one_run["confidence"],
                                f", {one_run['correct']} of {one_run['guesses']} guesses right")
    bound = whitebox.epsilon  # the strongest adversary's; the black-box bound is shown beside it, not maxed in
    detail = (f"; white-box {whitebox.every_step.steinke.epsilon:.2f} (Steinke et al.), "
              f"{whitebox.every_step.gdp.epsilon:.2f} (f-DP, Gaussian) from {whitebox.canaries:,} gradient canaries"
              + (f"; {black}" if black else ""))
    result = epsilon_headline("white-box one-run audit", bound, privacy, whitebox.confidence, detail)
    failures = whitebox.check_failures()  # a bound above the claim is flagged by epsilon_headline itself
    if failures:
        result["violation"] = True
        result["text"] += " -- " + "; ".join(failures).upper()
    return result
