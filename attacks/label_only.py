"""Label-only membership inference (Choquette-Choo, Tramer, Carlini, Papernot, ICML 2021, "Label-Only
Membership Inference Attacks"): for an API that returns only the predicted label.

Their data-augmentation attack: a model keeps the true label on perturbed copies of its training
examples more often than on unseen ones. The perturbations here are the query neighbours
(`privaudit.queries`: word deletions, swaps and substitutions). score = how many of the example's views
(the example and its Q neighbours) the target labels correctly, minus the same count averaged over the
shadow models trained without the example (difficulty calibration: some texts are easy for any model;
the shadows are queried for labels only too). Without shadow models: the raw count.
"""

from __future__ import annotations

import numpy as np

from .base import AttackInputs


def label_only_attack(inputs: AttackInputs) -> np.ndarray:
    correct = (inputs.target_views().argmax(-1) == inputs.labels).sum(0).astype(np.float64)
    if inputs.num_shadows == 0:
        return correct
    shadow_correct = (inputs.shadow_views().argmax(-1) == inputs.labels).sum(1)  # (K, N)
    out = ~inputs.shadow_in
    return correct - (shadow_correct * out).sum(0) / np.maximum(out.sum(0), 1)
