"""Attacks. Membership inference, all behind one protocol (see base.py): higher score = more likely
member; every one is computed from the same shadow pool in one run, so all are shown side by side.
White-box canary extraction: `modiva.modiva_extract` (ModIvA).
"""

from dataclasses import dataclass
from functools import partial

from .base import Attack, AttackInputs
from .label_only import label_only_attack
from .lira import lira_offline, lira_online
from .loss import loss_attack
from .rmia import rmia_offline, rmia_online
from .shokri import shokri_attack
from .vocabulary import lira_with_vocabulary, vocabulary_attack


@dataclass(frozen=True)
class AttackSpec:
    run: Attack
    needs_shadows: bool
    needs_queries: bool = False  # computed only when the audit queries neighbours (privaudit.queries)
    needs_vocabulary: bool = False  # computed only when the vocabulary was learned from the training texts


#: name -> attack. "lira" is online LiRA (variance by number of shadows, see lira.py); "-augmented"
#: variants also query each example's neighbours; "label-only" sees only predicted labels;
#: "lira-vocabulary" adds the tokenizer's evidence to LiRA's.
ATTACKS: dict[str, AttackSpec] = {
    "loss": AttackSpec(loss_attack, False),
    "vocabulary": AttackSpec(vocabulary_attack, False),
    "shadow": AttackSpec(shokri_attack, True),
    "lira": AttackSpec(lira_online, True),
    "lira-offline": AttackSpec(lira_offline, True),
    "rmia": AttackSpec(rmia_online, True),
    "rmia-offline": AttackSpec(rmia_offline, True),
    "lira-vocabulary": AttackSpec(lira_with_vocabulary, True, needs_vocabulary=True),
    "lira-augmented": AttackSpec(partial(lira_online, queries=True), True, True),
    "rmia-augmented": AttackSpec(partial(rmia_online, queries=True), True, True),
    "label-only": AttackSpec(label_only_attack, False, True),
}

__all__ = ["ATTACKS", "Attack", "AttackInputs", "AttackSpec"]
