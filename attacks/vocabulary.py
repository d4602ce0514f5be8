"""The vocabulary attack: membership from the tokenizer alone, no model output needed.

A vocabulary learned from the training texts holds every word of every member, so a text with a word the
vocabulary lacks (an [UNK]) is almost surely not a member; a WordPiece vocabulary splits members' words
into fewer pieces. Score = -(unknown tokens * 1000 + word pieces beyond the first), higher = more likely a
member. Against a data-independent vocabulary (hashed, or a pretrained model's) it has nothing to find:
its AUC is 0.5 by construction. On SNIPS, 47% of non-members contain a word a learned vocabulary lacks
against 0% of members: that alone proves a large epsilon, whatever noise DP-SGD added to the weights.
"""

from __future__ import annotations

import numpy as np

from .base import AttackInputs


def vocabulary_attack(inputs: AttackInputs) -> np.ndarray:
    if inputs.vocabulary_misses is None:
        return np.zeros(len(inputs.labels))
    return -np.asarray(inputs.vocabulary_misses, dtype=float)
