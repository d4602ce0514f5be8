"""RMIA, the robust membership-inference attack (Zarifzadeh, Liu, Chang, Shokri, ICML 2024).

Likelihood ratio of x against population points z:
    LR(x, z) = [p(x | target) / p(x)] / [p(z | target) / p(z)],
where p(.) is the probability of the true class averaged over reference models, and
    score(x) = fraction of z with LR(x, z) >= gamma.
Offline (the default here, and what stays strong with 1-4 reference models): only reference models
trained without x are available, and p(x) is approximated as ((1 + a) p_OUT(x) + (1 - a)) / 2, the
paper's linear correction for the missing IN models. `a` is chosen as in the paper, by attacking one
reference model with the others and keeping the value with the best AUC. With no population points
given, z are the known non-members.
"""

from __future__ import annotations

import numpy as np

from privaudit.metrics import auc

from .base import AttackInputs, log_softmax_true

GAMMA = 1.0
A_GRID = np.round(np.linspace(0.0, 1.0, 11), 2)


def _out_mean(probs: np.ndarray, out_mask: np.ndarray) -> np.ndarray:
    count = out_mask.sum(0)
    if (count == 0).any():
        raise ValueError("RMIA needs, for every example, a reference model trained without it")
    return np.where(out_mask, probs, 0).sum(0) / count


def _scores(p_target: np.ndarray, p_out: np.ndarray, a: float, z: np.ndarray) -> np.ndarray:
    p_x = 0.5 * ((1 + a) * p_out + (1 - a))
    ratio = p_target / p_x
    ratio_z = np.sort(ratio[z])
    # fraction of z with ratio_x / ratio_z >= gamma, i.e. ratio_z <= ratio_x / gamma
    return np.searchsorted(ratio_z, ratio / GAMMA, side="right") / len(ratio_z)


def choose_a(probs: np.ndarray, shadow_in: np.ndarray) -> float:
    """The paper's procedure: treat reference model 0 as the target and attack it with the others."""
    if probs.shape[0] < 2:
        return 0.3  # the paper's value, when there is no second model to tune on
    out_others = ~shadow_in[1:]
    usable = out_others.any(0)
    labels = shadow_in[0, usable]
    if labels.all() or not labels.any():
        return 0.3
    p_out = _out_mean(probs[1:, usable], out_others[:, usable])
    z = np.flatnonzero(~labels)
    return float(max(A_GRID, key=lambda a: auc(_scores(probs[0, usable], p_out, a, z), labels)))


def rmia_offline(inputs: AttackInputs) -> np.ndarray:
    probs = np.exp(log_softmax_true(inputs.shadow_logits, inputs.labels))
    p_target = np.exp(log_softmax_true(inputs.target_logits, inputs.labels))
    a = choose_a(probs, inputs.shadow_in)
    return _scores(p_target, _out_mean(probs, ~inputs.shadow_in), a, inputs.reference_points)
