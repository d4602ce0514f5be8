"""The typed pieces every audit result shares: its headline and its gate checks.

Each audit kind has its own result dataclass, defined where it is computed (`privaudit.mia.MiaResult`,
`privaudit.canaries.audit.CanaryResult`, and `privaudit.audit.AuditResult`, which
gathers them for `privaudit audit`), gated in one place
(`privaudit.gate`) and rendered from its JSON form (`privaudit.reports`). A result becomes JSON only at
the edges, through `to_dict()`: results.json is that dict, under a versioned schema (`SCHEMA_VERSION`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# 2: membership inference gained lower bounds valid jointly over all attacks (`auc_lower_joint`, TPR rows'
# `lower_joint`), `attack_notes`, the augmented and label-only attacks, full-precision scores, TPR
# intervals that include the threshold's estimation; `lira-fixed` became `lira`; gate checks a `detail`.
# 3: canary results: every extraction rate an object {rate, interval, successes, trials}; calibrated
# exposure and top-1 (reference models); each canary's training `run`. Reports render membership results
# of versions 2 and 3; an older canary file is refused with exit 2 (rerun the audit).
SCHEMA_VERSION = 3


@dataclass
class Headline:
    """The line every audit leads with: theoretical epsilon next to the empirical lower bound.

    `violation` is True when the empirical bound exceeds the theoretical epsilon (or an implementation
    check failed): the DP-SGD implementation or its accounting is broken."""

    text: str
    empirical_epsilon: float | None
    theoretical_epsilon: float | None
    confidence: float | None = None
    violation: bool = False
    attack: str | None = None  # membership inference: the attack whose bound is shown
    method: str | None = None  # membership inference: how the bound was computed

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for optional in ("confidence", "attack", "method"):
            if doc[optional] is None:
                del doc[optional]
        return doc


@dataclass
class GateCheck:
    """One configured threshold checked against one figure. `metric` names the threshold and stays the same
    from run to run (a CI's test-case name); `detail` says where this run's value came from."""

    metric: str
    value: float
    limit: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """'metric = value > limit (detail)', the line a crossing prints."""
        line = f"{self.metric} = {self.value:.4g} {'<=' if self.passed else '>'} {self.limit:g}"
        return f"{line} ({self.detail})" if self.detail else line


@dataclass
class Gate:
    """Every check of one audit; it passes when every check does (no checks: passed)."""

    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [c.to_dict() for c in self.checks], "passed": self.passed}


class Result(Protocol):
    """What every result offers the gate, the CLI and the report writers."""

    kind: str
    gate: Gate

    def headlines(self) -> list[Headline]: ...

    def to_dict(self) -> dict[str, Any]: ...
