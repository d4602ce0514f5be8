"""RMIA, the robust membership-inference attack (Zarifzadeh, Liu, Chang, Shokri, ICML 2024).

Likelihood ratio of x against population points z:
    LR(x, z) = [p(x | target) / p(x)] / [p(z | target) / p(z)],
where p(x | model) is the probability the model gives x's true class, p(x) its average over reference
models, and
    score(x) = fraction of z with LR(x, z) >= gamma (gamma = 1).
- `rmia` (online): p(x) averages all reference models, those trained with x and those without; the
  balanced shadow design gives every x both, already with 2 reference models.
- `rmia-offline`: only models trained without x; p(x) is approximated as ((1 + a) p_OUT(x) + (1 - a)) / 2,
  the paper's linear correction for the missing IN models.
Probabilities are taken from a softmax at temperature T (as RMIA implementations do): text classifiers
give their members p(y|x) within 1e-6 of 1, where ratios of probabilities at T = 1 lose their
resolution. T (and a) are chosen as the paper chooses a: reference model 0 is attacked, offline, with
the others, and the values with the best AUC are kept. With no population data given, z are the known
non-members. Everything is computed in log space from q = 1 - p, so that confident examples keep
distinct scores.
"""

from __future__ import annotations

import numpy as np

from privaudit.metrics import auc

from .base import AttackInputs, log_prob_other, log_prob_true

GAMMA = 1.0
A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
T_GRID = (1.0, 2.0, 4.0, 8.0)
DEFAULT_A, DEFAULT_T = 0.3, 2.0  # used when there is no second reference model to tune on


def _mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the reference models where mask holds, per example."""
    count = mask.sum(0)
    if (count == 0).any():
        raise ValueError("RMIA needs, for every example, a reference model of the required kind")
    return np.where(mask, values, 0).sum(0) / count


def _scores(log_p_target: np.ndarray, log_p_x: np.ndarray, z: np.ndarray) -> np.ndarray:
    log_ratio = log_p_target - log_p_x
    ratio_z = np.sort(log_ratio[z])
    # fraction of z with LR(x, z) >= gamma, i.e. log_ratio_z <= log_ratio_x - log(gamma)
    return np.searchsorted(ratio_z, log_ratio - np.log(GAMMA), side="right") / len(ratio_z)


def _offline_log_p_x(q_out: np.ndarray, a: float) -> np.ndarray:
    # p(x) = ((1 + a)(1 - q_out) + (1 - a)) / 2 = 1 - (1 + a) q_out / 2
    return np.log1p(-(1 + a) * q_out / 2)


def _signals(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """log p and q = 1 - p of the true class at the given softmax temperature."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return log_prob_true(scaled, labels), np.exp(log_prob_other(scaled, labels))


def tune(shadow_logits: np.ndarray, labels: np.ndarray, shadow_in: np.ndarray) -> tuple[float, float]:
    """(temperature, a) with the best AUC when reference model 0 is attacked offline with the others."""
    if shadow_logits.shape[0] < 2:
        return DEFAULT_T, DEFAULT_A
    out_others = ~shadow_in[1:]
    usable = out_others.any(0)
    members = shadow_in[0, usable]
    if members.all() or not members.any():
        return DEFAULT_T, DEFAULT_A
    z = np.flatnonzero(~members)
    best, best_auc = (DEFAULT_T, DEFAULT_A), -1.0
    for t in T_GRID:
        log_p, q = _signals(shadow_logits[:, usable], labels[usable], t)
        q_out = _mean(q[1:], out_others[:, usable])
        for a in A_GRID:
            value = auc(_scores(log_p[0], _offline_log_p_x(q_out, a), z), members)
            if value > best_auc:
                best, best_auc = (t, float(a)), value
    return best


def rmia_online(inputs: AttackInputs) -> np.ndarray:
    temperature, _ = tune(inputs.shadow_logits, inputs.labels, inputs.shadow_in)
    _, q = _signals(inputs.shadow_logits, inputs.labels, temperature)
    log_p_target, _ = _signals(inputs.target_logits, inputs.labels, temperature)
    return _scores(log_p_target, np.log1p(-q.mean(0)), inputs.reference_points)


def rmia_offline(inputs: AttackInputs) -> np.ndarray:
    temperature, a = tune(inputs.shadow_logits, inputs.labels, inputs.shadow_in)
    _, q = _signals(inputs.shadow_logits, inputs.labels, temperature)
    log_p_target, _ = _signals(inputs.target_logits, inputs.labels, temperature)
    q_out = _mean(q, ~inputs.shadow_in)
    return _scores(log_p_target, _offline_log_p_x(q_out, a), inputs.reference_points)
