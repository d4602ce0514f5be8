"""The CI gate, for every audit kind: one thresholds type, one function per kind, one result shape.

Each configured threshold becomes one `GateCheck` (metric, value, limit, passed) on the result's
`gate`. Any failed check makes the command exit with code 1 and print one line per crossing. Limits
are checked when `Thresholds` is built, before any training, not after minutes of work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from privaudit.canaries.audit import CanaryResult

from .errors import PrivauditError
from .metrics import FPR_GRID
from .mia import MiaResult
from .results import Gate, GateCheck, Result


@dataclass(frozen=True)
class Thresholds:
    """Limits on the empirical leakage; None (or empty) means unchecked.

    Membership inference uses max_auc, max_tpr_at_fpr and max_empirical_epsilon; canaries use
    max_exposure, max_extraction_rate and max_empirical_epsilon (the one-run bound)."""

    max_auc: float | None = None
    max_tpr_at_fpr: tuple[tuple[float, float], ...] = field(default=())  # (fpr, max tpr), fpr on FPR_GRID
    max_empirical_epsilon: float | None = None
    max_exposure: float | None = None  # bits
    max_extraction_rate: float | None = None

    def __post_init__(self) -> None:
        # Stored as a tuple of pairs whatever sequence was given (a TOML list of lists, a CLI list).
        object.__setattr__(self, "max_tpr_at_fpr", tuple((float(f), float(t)) for f, t in self.max_tpr_at_fpr))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "max_tpr_at_fpr":
                _check_limit(f.name, value)
        for fpr, tpr in self.max_tpr_at_fpr:
            _check_on_grid(fpr)
            _check_limit(f"max_tpr_at_fpr {fpr:g}", tpr)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Thresholds:
        """From a [tool.privaudit.thresholds] table (keys already checked by privaudit.config)."""
        return cls(**{k: v for k, v in values.items() if v is not None})

    def replaced(self, overrides: Mapping[str, Any]) -> Thresholds:
        """These thresholds with the given (not None) values replacing them, e.g. CLI flags over a file."""
        return Thresholds.from_mapping(
            {
                **{f.name: getattr(self, f.name) for f in fields(self)},
                **{k: v for k, v in overrides.items() if v is not None},
            }
        )


def _check_limit(name: str, value: float | None) -> None:
    """A threshold must be a finite number of at least 0: NaN would fail every check, inf pass every one."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise PrivauditError(f"--{name.replace('_', '-')} must be a finite number of at least 0, got {value}")


def _check_on_grid(fpr: float) -> None:
    """Refused before any work: the TPR is reported only at these FPRs."""
    if not any(abs(fpr - g) < 1e-12 for g in FPR_GRID):
        raise PrivauditError(
            f"--max-tpr-at-fpr: FPR {fpr:g} is not on the reported grid ({', '.join(f'{g:g}' for g in FPR_GRID)})"
        )


def parse_tpr_at_fpr(text: str) -> tuple[float, float]:
    """'0.01:0.05' -> (0.01, 0.05): at FPR 1%, the TPR must stay at or below 5%."""
    try:
        fpr, tpr = (float(x) for x in text.split(":"))
    except ValueError:
        raise PrivauditError(f"--max-tpr-at-fpr expects FPR:TPR such as 0.01:0.05, got {text!r}") from None
    if not (0 < fpr < 1 and 0 <= tpr <= 1):
        raise PrivauditError(f"--max-tpr-at-fpr {text}: FPR must be in (0, 1) and TPR in [0, 1]")
    return fpr, tpr


def check_mia(result: MiaResult, thresholds: Thresholds) -> list[GateCheck]:
    """Every threshold against every attack computed, not only the one shown first: a check fails when
    some attack shows more than the limit at 95% confidence jointly over all the attacks (each attack's
    one-sided lower bound at the Bonferroni level, `AttackFigures.auc_lower_joint` and `lower_joint`),
    and names that attack. Picking the strongest of many noisy estimates would otherwise fail models
    that leak nothing. The epsilon check uses the headline's bound, corrected the same way."""
    checks = []
    family = f"95% lower bound jointly over {len(result.attacks)} attacks"
    if thresholds.max_auc is not None:
        name, figures = max(result.attacks.items(), key=lambda item: item[1].auc_lower_joint)
        checks.append(
            _check(
                "AUC",
                figures.auc_lower_joint,
                thresholds.max_auc,
                f"strongest attack: {name}, estimate {figures.auc:.4f}; {family}",
            )
        )
    for fpr, limit in thresholds.max_tpr_at_fpr:
        rows = {name: figures.tpr_row(fpr) for name, figures in result.attacks.items()}
        name, row = max(rows.items(), key=lambda item: item[1].lower_joint or 0.0)
        checks.append(
            _check(
                f"TPR at FPR {fpr:g}",
                row.lower_joint or 0.0,
                limit,
                f"strongest attack: {name}, estimate {row.tpr:.4f}; {family}",
            )
        )
    if thresholds.max_empirical_epsilon is not None and result.headline.empirical_epsilon is not None:
        checks.append(
            _check(
                "empirical epsilon",
                result.headline.empirical_epsilon,
                thresholds.max_empirical_epsilon,
                f"strongest attack: {result.headline.attack}; 95% lower bound ({result.headline.method})",
            )
        )
    return checks


def check_canary(result: CanaryResult, thresholds: Thresholds) -> list[GateCheck]:
    """The largest exposure of any canary, the best extraction rate of any method at any repeat count,
    the larger one-run epsilon bound (black-box and white-box), and the DP-SGD implementation checks."""
    checks = []
    if thresholds.max_exposure is not None:
        checks.append(_check("canary exposure (max, bits)", result.max_exposure, thresholds.max_exposure))
    if thresholds.max_extraction_rate is not None:
        checks.append(
            _check(
                "canary extraction rate (best method, any repeat count)",
                result.best_extraction_rate,
                thresholds.max_extraction_rate,
            )
        )
    bounds = [audit.epsilon for audit in (result.one_run, result.whitebox) if audit is not None]
    if thresholds.max_empirical_epsilon is not None and bounds:
        checks.append(
            _check("one-run empirical epsilon (95% lower bound)", max(bounds), thresholds.max_empirical_epsilon)
        )
    if result.whitebox is not None:
        # A DP-SGD that breaks its own promise fails the gate whatever the thresholds say.
        checks.append(
            _check(
                "DP-SGD implementation (bound above theoretical epsilon, or a sampling or noise check failed)",
                int(result.headline.violation),
                0,
            )
        )
    return checks


def gate(result: Result, thresholds: Thresholds) -> Gate:
    """Check `result` against `thresholds` and record the checks on it (returned too)."""
    if isinstance(result, MiaResult):
        checks = check_mia(result, thresholds)
    elif isinstance(result, CanaryResult):
        checks = check_canary(result, thresholds)
    else:
        raise TypeError(f"no gate for results of kind {result.kind!r}")
    result.gate = Gate(checks)
    return result.gate


def combined(sections: Mapping[str, Result]) -> Gate:
    """The checks of several gated results, each named after its section (`privaudit audit`)."""
    return Gate(
        [
            GateCheck(f"{name}: {c.metric}", c.value, c.limit, c.passed, c.detail)
            for name, section in sections.items()
            for c in section.gate.checks
        ]
    )


def _check(metric: str, value: float, limit: float, detail: str = "") -> GateCheck:
    return GateCheck(metric, float(value), float(limit), bool(value <= limit), detail)
