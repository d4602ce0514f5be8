"""The one line every audit leads with: the theoretical epsilon next to the empirical lower bound."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import Headline

if TYPE_CHECKING:
    from .accounting import PrivacyGuarantee

REPRODUCIBLE_WARNING = (
    "TEST MODE: DP noise and sampling were seeded (dp.insecure_seed); the guarantee does not "
    "hold against anyone who knows the seed"
)


def epsilon_headline(
    evidence: str, empirical: float, privacy: PrivacyGuarantee | None, confidence: float = 0.95, detail: str = ""
) -> Headline:
    """e.g. "theoretical epsilon 4.00; strongest attack (lira) shows at least 0.31 (95% confidence)".

    An empirical bound above the theoretical epsilon is flagged loudly: it means the DP-SGD
    implementation or its accounting is broken, or the model was not trained as recorded."""
    shown = f"{evidence} shows at least {empirical:.2f} ({confidence:.0%} confidence{detail})"
    if privacy is None:
        return Headline(f"no theoretical epsilon (trained without DP-SGD); {shown}", empirical, None, confidence)
    violation = empirical > privacy.epsilon
    text = f"theoretical epsilon {privacy.epsilon:.2f}; {shown}"
    if privacy.reproducible:
        text += f" -- {REPRODUCIBLE_WARNING}"
    if violation:
        text += (
            " -- THE EMPIRICAL BOUND EXCEEDS THE THEORETICAL EPSILON: the DP-SGD implementation or its "
            "accounting is broken, or the model was not trained as recorded"
        )
    return Headline(text, empirical, privacy.epsilon, confidence, violation)
