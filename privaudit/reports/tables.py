"""The figures every format shows, as (header, rows) of strings, per audit kind: the reports and the
terminal tables (privaudit.console.print_table) are built from these, so they always agree."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def vocabulary(doc: Doc) -> str:
    return doc["model"].get("vocabulary", "not recorded")


# Membership inference ("mia").


def summary_header(doc: Doc) -> list[str]:
    first = next(iter(doc["attacks"].values()))
    return [
        "attack",
        "AUC [95% CI]",
        *[f"TPR @ FPR {r['fpr']:g}" for r in first["tpr_at_fpr"]],
        "bal. acc.",
        "emp. epsilon (95%)",
    ]


def summary_rows(doc: Doc) -> list[list[str]]:
    """One row per attack."""
    method = doc["settings"]["epsilon_method"]
    return [
        [
            name + (" (selected)" if name == doc["primary_attack"] else ""),
            f"{a['auc']:.4f} [{a['auc_ci'][0]:.4f}, {a['auc_ci'][1]:.4f}]",
            *[_tpr_cell(r) for r in a["tpr_at_fpr"]],
            f"{a['balanced_accuracy']:.4f}",
            f"{a['empirical_epsilon'][method]['epsilon']:.3f}",
        ]
        for name, a in doc["attacks"].items()
    ]


def _tpr_cell(row: Doc) -> str:
    cell = f"{pct(row['tpr'])} [{pct(row['ci'][0])}, {pct(row['ci'][1])}]"
    return cell + " (too few non-members)" if row["too_few_nonmembers"] else cell


def vulnerable_table(doc: Doc) -> tuple[list[str], list[list[str]]]:
    """The training members the selected attack is most sure of (raw text only when it was asked for)."""
    with_text = any("text" in v for v in doc["vulnerable"])
    header = ["fingerprint", "score", *(["text"] if with_text else [])]
    rows = [
        [v["fingerprint"], f"{v['score']:.4g}", *([v.get("text", "")] if with_text else [])] for v in doc["vulnerable"]
    ]
    return header, rows


MIA_FOOTNOTE = (
    "Intervals (95%): for TPRs, exact bounds that account for the threshold being estimated from the "
    "non-members; for AUC, bootstrap over members and non-members. Empirical epsilon: a 95%-confidence lower "
    "bound (threshold chosen with a Bonferroni correction or on a held-apart half). Gate thresholds apply to "
    "every attack, through lower bounds valid jointly over all of them."
)


def mia_notes(doc: Doc) -> list[str]:
    """How attacks were set up where the run decided it (e.g. LiRA's variance), one line each."""
    return [f"{name}: {note}" for name, note in doc.get("attack_notes", {}).items()]


# Canaries ("canary").


def canary_header() -> list[str]:
    return [
        "repeat",
        "canaries",
        "exposure mean / max (bits)",
        "calibrated exposure mean",
        "enumeration top-1",
        "calibrated top-1",
        "ModIvA (alphabet)",
        "+ swaps",
        "ModIvA (vocabulary)",
        "+ swaps",
        "position acc. (alphabet)",
        "median relaxed rank",
        "chance",
    ]


def rate_cell(rate: Doc | None) -> str:
    """A rate over the group's canaries with its exact 95% interval."""
    if rate is None:
        return "- (no references)"
    low, high = rate["interval"]
    return f"{pct(rate['rate'])} [{100 * low:.0f}-{100 * high:.0f}%]"


NOT_APPLICABLE = {"extraction": None, "swap_extraction": None, "position_accuracy": None, "median_relaxed_rank": None}


def extraction_cell(rate: Doc | None) -> str:
    """A ModIvA rate, or "n/a" where ModIvA could not run (a black-box model)."""
    return "n/a" if rate is None else rate_cell(rate)


def canary_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for g in doc["by_repeat"]:
        a, v = g["modiva_alphabet"] or NOT_APPLICABLE, g["modiva_vocab"] or NOT_APPLICABLE
        calibrated = g["calibrated_exposure_mean"]
        rows.append(
            [
                str(g["repeat"]),
                str(g["canaries"]),
                f"{g['exposure_mean']:.2f} / {g['exposure_max']:.2f}",
                "-" if calibrated is None else f"{calibrated:.2f}",
                rate_cell(g["enumeration_top1"]),
                rate_cell(g["calibrated_top1"]),
                extraction_cell(a["extraction"]),
                extraction_cell(a["swap_extraction"]),
                extraction_cell(v["extraction"]),
                extraction_cell(v["swap_extraction"]),
                "n/a" if a["position_accuracy"] is None else pct(a["position_accuracy"]),
                "-" if a["median_relaxed_rank"] is None else f"{a['median_relaxed_rank']:g}",
                f"{g['chance']:.2g}",
            ]
        )
    return rows


def onerun_header() -> list[str]:
    return ["one-run audit", "canaries", "Steinke et al. eps", "f-DP (Gaussian) eps [mu]", "guesses right"]


def onerun_rows(doc: Doc) -> list[list[str]]:
    """The one-run epsilon bounds, each at 95%, next to each other (theoretical epsilon in the headline)."""

    def row(name: str, audit: Doc, canaries: int) -> list[str]:
        s, g = audit["steinke"], audit["gdp"]
        return [
            name,
            str(canaries),
            f"{s['epsilon']:.2f}",
            f"{g['epsilon']:.2f} [{g['mu']:.2f}]",
            f"{s['correct']} / {s['guesses']}",
        ]

    rows = []
    white = doc.get("whitebox")
    if white is not None:
        rows.append(row("white-box, every step observed", white["every_step"], white["canaries"]))
        rows.append(row("white-box, final weights only", white["final_weights"], white["canaries"]))
    if doc.get("one_run") is not None:
        rows.append(row("black-box text canaries, final model", doc["one_run"], doc["one_run"]["canaries"]))
    return rows


def sampling_line(doc: Doc) -> str:
    """The white-box audit's implementation checks, in one sentence each."""
    white = doc.get("whitebox")
    if white is None:
        return ""
    check, noise = white["sampling"], white["noise"]
    verdict = "consistent with" if check["passed"] else "NOT consistent with"
    fresh = "fresh at every step" if noise["passed"] else "NOT fresh"
    return (
        f"Sampling check: included gradient canaries were sampled {check['mean_count']:.2f} times on average "
        f"(Poisson sampling expects {check['expected_count']:.2f}), dispersion {check['dispersion']:.2f} "
        f"(1 expected), p = {check['p_value']:.2g}: {verdict} the Poisson sampling the accountant assumes. "
        f"Noise check: consecutive steps' observed noise correlates {noise['correlation']:.3f}: {fresh}. "
        f"Noise the adversary measured: {white['observed_noise']:.3f} x the clipping norm."
    )


def canary_intro(doc: Doc) -> str:
    t = doc["template"]
    references = doc["settings"]["references"]
    return (
        f"Template '{t['text']}' ({t['space_size']:,} possible secrets), model `{doc['model']['arch']}` trained on "
        f"{doc['model']['data']} plus the canaries ({doc['decoys']} decoys); vocabulary {vocabulary(doc)}. "
        f"Exposure of a secret the model never saw: about 1.44 bits. Extraction = the exact secret read out, "
        f"as a share of the row's canaries with an exact (Clopper-Pearson) 95% interval. Enumeration top-1 = "
        f"the true secret is the model's favourite filling of the template (the ceiling of every method that "
        f"ranks by the target's confidence); "
        + (
            f"calibrated = ranked by how much more the target favours a secret than {references} reference models "
            f"trained without the canaries, the objective ModIvA then optimises."
            if references
            else "calibrated: off (--references 0)."
        )
        + (f" {doc['modiva']['not_applicable']}." if (doc.get("modiva") or {}).get("not_applicable") else "")
    )


# The privacy / utility / leakage sweep ("sweep").


def interval_cell(value: float, interval, digits: int = 3) -> str:
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def sweep_header(doc: Doc) -> list[str]:
    attack = doc["settings"]["attack"]
    header = [
        "epsilon",
        "theoretical eps (noise)",
        "held-out acc. [95% CI]",
        f"AUC ({attack}) [95% CI]",
        f"TPR @ FPR 0.001 ({attack})",
        f"TPR @ FPR 0.01 ({attack})",
        "emp. epsilon (95% lower bound)",
    ]
    if doc["settings"]["canary"] is not None:
        header.append("canary exposure (bits, mean at the most repeats)")
    return header + ["constraints"]


def sweep_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for p in doc["points"]:
        theoretical = (
            "none (no DP-SGD)"
            if p["theoretical_epsilon"] is None
            else f"{p['theoretical_epsilon']:.2f} ({p['noise_multiplier']:.3f})"
        )
        tprs = {row["fpr"]: row for row in p["tpr_at_fpr"]}
        row = [
            p["label"],
            theoretical,
            interval_cell(p["heldout_accuracy"]["rate"], p["heldout_accuracy"]["interval"]),
            interval_cell(p["auc"], p["auc_ci"]),
            _tpr_cell(tprs[0.001]),
            _tpr_cell(tprs[0.01]),
            f"{p['empirical_epsilon']:.3f} ({p['empirical_attack']})" + (" VIOLATION" if p["violation"] else ""),
        ]
        if doc["settings"]["canary"] is not None:
            last = p["canary"]["by_repeat"][-1]
            row.append(f"{last['exposure_mean']:.2f} of {p['canary']['space_bits']:.1f} ({last['repeat']}x)")
        missed = doc["recommendation"]["missed"][p["label"]]
        row.append("-" if not doc["recommendation"]["constraints"] else ("met" if not missed else "; ".join(missed)))
        rows.append(row)
    return rows


def group_header(doc: Doc) -> list[str]:
    return [
        "epsilon",
        doc["group_col"],
        "members / held-out",
        "held-out acc. [95% CI]",
        f"AUC ({doc['settings']['attack']}) [95% CI]",
        "TPR @ FPR 0.01",
    ]


def group_rows(doc: Doc) -> list[list[str]]:
    rows = []
    for p in doc["points"]:
        for g in p["groups"]:
            if g["too_small"]:
                size = f"{g['examples']} in all"
                rows.append([p["label"], g["group"], size, "too few examples to measure", "-", "-"])
                continue
            size = f"{g['members']} / {g['heldout']}"
            tpr = next(row for row in g["tpr_at_fpr"] if abs(row["fpr"] - 0.01) < 1e-12)
            rows.append(
                [
                    p["label"],
                    g["group"],
                    size,
                    interval_cell(g["accuracy"]["rate"], g["accuracy"]["interval"]),
                    interval_cell(g["auc"], g["auc_ci"]),
                    _tpr_cell(tpr),
                ]
            )
    return rows


def worst_off_lines(doc: Doc) -> list[str]:
    """Per epsilon: the measured group with the lowest held-out accuracy and the one with the highest AUC."""
    lines = []
    for p in doc["points"]:
        worst = p["worst_off"]
        if worst["accuracy"] is None:
            lines.append(f"epsilon {p['label']}: no group large enough to measure")
            continue
        leakage = (
            f"most membership leakage (AUC) in {worst['leakage']!r}"
            if any(not g["too_small"] and g["auc_ci"][0] > 0.5 for g in p["groups"])
            else "no group's membership leakage is distinguishable from chance (every AUC interval holds 0.5)"
        )
        lines.append(
            f"epsilon {p['label']}: lowest held-out accuracy in {doc['group_col']} {worst['accuracy']!r}; {leakage}"
        )
    return lines


SWEEP_FOOTNOTE = (
    "Every point: the same recipe and the same (secret) member split, DP-SGD calibrated to the epsilon; shadow "
    "models trained with that point's recipe. Empirical epsilon: the strongest attack's 95% lower bound "
    "(Bonferroni over the attacks); a DP model's true epsilon lies above it, so it must stay below the "
    "theoretical one. Per group: the selected attack's figures with the threshold set on the group's own "
    "held-out examples; groups with fewer than 25 members or held-out examples are flagged, not measured. "
    "A TPR constraint counts as missed when the audit shows it crossed at 95% confidence (as the gate reads it)."
)


# The gate (every kind).


def gate_table(doc: Doc) -> tuple[list[str], list[list[str]]]:
    checks = (doc.get("gate") or {}).get("checks", [])
    rows = [
        [
            c["metric"] + (f" ({c['detail']})" if c.get("detail") else ""),
            f"{c['value']:.4g}",
            f"{c['limit']:g}",
            "pass" if c["passed"] else "FAIL",
        ]
        for c in checks
    ]
    return ["check", "value", "limit", "result"], rows


def gate_verdict(doc: Doc) -> str:
    return "passed" if doc["gate"]["passed"] else "FAILED"
