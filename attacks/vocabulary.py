"""The vocabulary attack: membership from the tokenizer alone, no model output needed.

A vocabulary learned from the training texts holds every word of every member and no other word. So
against the population the auditor holds, a text with a word the vocabulary lacks (an [UNK]) is not a
member, and a text with a word that is in the vocabulary and in no other text of the population is one.
Score: `privaudit.tokenization.vocabulary_evidence`, a log-likelihood ratio. On SNIPS, 48% of non-members
contain a word a learned vocabulary lacks (against 0% of members) and 37% of members a word only they
use (against 0% of non-members): that alone finds a third of the members at no false positive, whatever
noise DP-SGD added to the weights. Against a data-independent vocabulary (hashed, or a pretrained
model's) it has nothing to find: its AUC is 0.5 by construction.
"""

from __future__ import annotations

import numpy as np

from .base import AttackInputs
from .lira import lira_online


def vocabulary_attack(inputs: AttackInputs) -> np.ndarray:
    if inputs.vocabulary_evidence is None:
        return np.zeros(len(inputs.labels))
    return np.asarray(inputs.vocabulary_evidence, dtype=float)


def lira_with_vocabulary(inputs: AttackInputs) -> np.ndarray:
    """Online LiRA plus the vocabulary's evidence. Both are log-likelihood ratios of member against
    non-member, one from the model's outputs, one from its tokenizer, so their sum is the evidence of
    both taken as independent (naive Bayes): what an attacker holding the model file and shadow models
    has. The vocabulary decides where it is certain; LiRA orders every other text."""
    evidence = inputs.vocabulary_evidence
    return lira_online(inputs) + (0.0 if evidence is None else np.asarray(evidence, dtype=float))
