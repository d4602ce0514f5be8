"""RMIA, the robust membership-inference attack (Zarifzadeh, Liu, Chang, Shokri, ICML 2024).

Likelihood ratio of x against population points z:
    LR(x, z) = [p(x | target) / p(x)] / [p(z | target) / p(z)],
where p(x | model) is the probability the model gives x's true class, p(x) its average over reference
models, and
    score(x) = fraction of the population points z other than x with LR(x, z) > gamma (gamma = 1),
a strict comparison, as in the paper: ties (identical ratios, such as x's own) never count for x.
- `rmia` (online): p(x) averages all reference models, those trained with x and those without; the
  balanced shadow design gives every x both, already with 2 reference models.
- `rmia-offline`: only models trained without x; p(x) is approximated as ((1 + a) p_OUT(x) + (1 - a)) / 2,
  the paper's linear correction for the missing IN models.
The average over reference models is the paper's 20% trimmed mean (`TRIM`: the highest and lowest 20%
of the models' values left out, per example), which an outlying reference model cannot drag.
Probabilities are taken from a softmax at temperature T (as RMIA implementations do): text classifiers
give their members p(y|x) within 1e-6 of 1, where ratios of probabilities at T = 1 lose their
resolution. T (and a) are chosen as the paper chooses a: reference model 0 is attacked, offline, with
the others, and the values with the best AUC are kept. With no population data given, z are the known
non-members. Everything is computed in log space from q = 1 - p, so that confident examples keep
distinct scores. With query neighbours (`privaudit.queries`), the augmented variant averages the log
ratio p(x | target) / p(x) over x and its queries (and likewise for z) before comparing.
"""

from __future__ import annotations

import numpy as np

from privaudit.metrics import auc

from .base import AttackInputs, log_prob_other, log_prob_true

GAMMA = 1.0
TRIM = 0.2
A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
T_GRID = (1.0, 2.0, 4.0, 8.0)
DEFAULT_A, DEFAULT_T = 0.3, 2.0  # used when there is no second reference model to tune on


def trimmed_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per example, the mean of values (K, ..., N) over the models where mask (K, N) holds, leaving out
    floor(TRIM * count) of them at each end."""
    mask = np.broadcast_to(mask.reshape(mask.shape[:1] + (1,) * (values.ndim - 2) + mask.shape[1:]), values.shape)
    count = mask.sum(0)
    if (count == 0).any():
        raise ValueError("RMIA needs, for every example, a reference model of the required kind")
    ordered = np.sort(np.where(mask, values, np.inf), axis=0)  # the models left out sort last
    cut = np.floor(TRIM * count).astype(int)
    rank = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
    keep = (rank >= cut) & (rank < count - cut)
    return np.where(keep, ordered, 0).sum(0) / keep.sum(0)


def fractions(log_ratio: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Fraction of the points z (other than x itself) with LR(x, z) > gamma, i.e.
    log_ratio_z < log_ratio_x - log(gamma), for every x."""
    ratio_z = np.sort(log_ratio[z])
    beaten = np.searchsorted(ratio_z, log_ratio - np.log(GAMMA), side="left")
    in_z = np.zeros(len(log_ratio), bool)
    in_z[z] = True
    return beaten / np.maximum(len(z) - in_z, 1)  # x's own ratio is never strictly below itself


def _scores(log_ratio: np.ndarray, z: np.ndarray) -> np.ndarray:
    """RMIA's score: the fraction, with examples of the same fraction ordered by their own ratio. The
    fraction cannot tell apart the examples above the highest population point (all beat every z), and
    those are the ones that matter at the lowest FPRs. The ratio's rank enters below the fraction's
    resolution (distinct fractions differ by more than 1 / #z^2), so it orders ties and nothing else."""
    tie_order = np.argsort(np.argsort(log_ratio, kind="stable"), kind="stable") / len(log_ratio)
    return fractions(log_ratio, z) + tie_order / (4.0 * len(z) ** 2)


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
        q_out = trimmed_mean(q[1:], out_others[:, usable])
        for a in A_GRID:
            value = auc(_scores(log_p[0] - _offline_log_p_x(q_out, a), z), members)
            if value > best_auc:
                best, best_auc = (t, float(a)), value
    return best


def _views(inputs: AttackInputs, queries: bool) -> tuple[np.ndarray, np.ndarray]:
    """Target logits (V, N, C) and shadow logits (K, V, N, C) over V views (the example, its queries)."""
    if queries:
        return inputs.target_views(), inputs.shadow_views()
    return inputs.target_logits[None], inputs.shadow_logits[:, None]


def rmia_online(inputs: AttackInputs, queries: bool = False) -> np.ndarray:
    temperature, _ = tune(inputs.shadow_logits, inputs.labels, inputs.shadow_in)
    target, shadows = _views(inputs, queries)
    _, q = _signals(shadows, inputs.labels, temperature)
    log_p_target, _ = _signals(target, inputs.labels, temperature)
    every_model = np.ones_like(inputs.shadow_in)
    log_ratio = (log_p_target - np.log1p(-trimmed_mean(q, every_model))).mean(0)
    return _scores(log_ratio, inputs.reference_points)


def rmia_offline(inputs: AttackInputs, queries: bool = False) -> np.ndarray:
    temperature, a = tune(inputs.shadow_logits, inputs.labels, inputs.shadow_in)
    target, shadows = _views(inputs, queries)
    _, q = _signals(shadows, inputs.labels, temperature)
    log_p_target, _ = _signals(target, inputs.labels, temperature)
    log_ratio = (log_p_target - _offline_log_p_x(trimmed_mean(q, ~inputs.shadow_in), a)).mean(0)
    return _scores(log_ratio, inputs.reference_points)
