"""The CI gate: thresholds checked against an audit's results.

Each configured threshold becomes one check (metric, value, limit, passed). Any failed check makes the
command exit with code 1 and print one line per crossing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import PrivauditError
from .metrics import FPR_GRID


@dataclass
class Thresholds:
    max_auc: float | None = None
    max_tpr_at_fpr: list[tuple[float, float]] = field(default_factory=list)  # (fpr, max tpr)
    max_empirical_epsilon: float | None = None

    def __post_init__(self) -> None:
        check_limits({"max-auc": self.max_auc, "max-empirical-epsilon": self.max_empirical_epsilon})
        for fpr, tpr in self.max_tpr_at_fpr:
            _on_grid(fpr)
            check_limits({f"max-tpr-at-fpr {fpr:g}": tpr})

    def any(self) -> bool:
        return self.max_auc is not None or bool(self.max_tpr_at_fpr) or self.max_empirical_epsilon is not None


@dataclass
class Check:
    metric: str
    value: float
    limit: float
    passed: bool

    def line(self) -> str:
        return f"{self.metric} = {self.value:.4g} exceeds the limit {self.limit:g}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_limits(limits: dict[str, float | None]) -> None:
    """A threshold must be a finite number of at least 0: NaN would fail every check, inf pass every one."""
    for name, value in limits.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise PrivauditError(f"--{name.replace('_', '-')} must be a finite number of at least 0, got {value}")


def _on_grid(fpr: float) -> None:
    """Refused before any work: the TPR is reported only at these FPRs."""
    if not any(abs(fpr - g) < 1e-12 for g in FPR_GRID):
        raise PrivauditError(f"--max-tpr-at-fpr: FPR {fpr:g} is not on the reported grid "
                             f"({', '.join(f'{g:g}' for g in FPR_GRID)})")


def parse_tpr_at_fpr(text: str) -> tuple[float, float]:
    """'0.01:0.05' -> (0.01, 0.05): at FPR 1%, the TPR must stay at or below 5%."""
    try:
        fpr, tpr = (float(x) for x in text.split(":"))
    except ValueError:
        raise PrivauditError(f"--max-tpr-at-fpr expects FPR:TPR such as 0.01:0.05, got {text!r}") from None
    if not (0 < fpr < 1 and 0 <= tpr <= 1):
        raise PrivauditError(f"--max-tpr-at-fpr {text}: FPR must be in (0, 1) and TPR in [0, 1]")
    return fpr, tpr


def check_mia(result: dict, thresholds: Thresholds) -> list[Check]:
    """AUC and TPR checks on the primary attack; the epsilon check on the strongest attack's bound
    (Bonferroni-corrected over all attacks, so it is a valid 95% lower bound)."""
    attack = result["primary_attack"]
    figures = result["attacks"][attack]
    checks = []
    if thresholds.max_auc is not None:
        checks.append(_check(f"{attack} AUC", figures["auc"], thresholds.max_auc))
    for fpr, limit in thresholds.max_tpr_at_fpr:
        tpr = _tpr_at(figures, fpr)
        checks.append(_check(f"{attack} TPR at FPR {fpr:g}", tpr, limit))
    if thresholds.max_empirical_epsilon is not None:
        head = result["headline"]
        checks.append(_check(f"empirical epsilon (strongest attack: {head['attack']}, 95% lower bound)",
                             head["empirical_epsilon"], thresholds.max_empirical_epsilon))
    return checks


def _tpr_at(figures: dict, fpr: float) -> float:
    """The reported TPR at `fpr`, which Thresholds has checked is on the grid."""
    return next(row["tpr"] for row in figures["tpr_at_fpr"] if abs(row["fpr"] - fpr) < 1e-12)


def _check(metric: str, value: float, limit: float) -> Check:
    return Check(metric, float(value), float(limit), bool(value <= limit))


def gate_section(checks: list[Check]) -> dict:
    return {"checks": [c.to_dict() for c in checks], "passed": all(c.passed for c in checks)}
