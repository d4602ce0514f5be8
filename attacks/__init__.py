"""Attacks. Membership inference, all behind one protocol (see base.py): higher score = more likely
member; every one is computed from the same shadow pool in one run, so all are shown side by side.
White-box canary extraction: `modiva.modiva_extract` (ModIvA).
"""

from functools import partial

from .base import Attack, AttackInputs
from .lira import lira_offline, lira_online
from .loss import loss_attack
from .rmia import rmia_offline, rmia_online
from .shokri import shokri_attack
from .vocabulary import vocabulary_attack

#: name -> (attack, needs shadow models). "lira" is online LiRA with per-example variances.
ATTACKS: dict[str, tuple[Attack, bool]] = {
    "loss": (loss_attack, False),
    "vocabulary": (vocabulary_attack, False),
    "shadow": (shokri_attack, True),
    "lira": (lira_online, True),
    "lira-fixed": (partial(lira_online, fixed_variance=True), True),
    "lira-offline": (lira_offline, True),
    "lira-offline-fixed": (partial(lira_offline, fixed_variance=True), True),
    "rmia": (rmia_online, True),
    "rmia-offline": (rmia_offline, True),
}

__all__ = ["ATTACKS", "Attack", "AttackInputs"]
