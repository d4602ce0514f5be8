"""LiRA, the likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks From First
Principles").

For each example, the shadow models trained with it (IN) and without it (OUT) give two samples of its
scaled confidence phi = log(p / (1 - p)); each is fitted with a Gaussian.
- online: score = log N(phi_target; mu_in, sigma_in) - log N(phi_target; mu_out, sigma_out);
- offline (OUT models only): a one-sided test, score = -log P(Z > phi_target), Z ~ N(mu_out, sigma_out).
Per-example variances need a few models on each side; the "fixed" variants use one global variance
(the mean of the per-example variances), which the paper recommends when shadows are few.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .base import AttackInputs, scaled_confidence

_MIN_STD = 1e-3


def _gaussians(phi: np.ndarray, mask: np.ndarray, fixed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and std of phi (K, N) over the models where mask (K, N) holds."""
    count = mask.sum(0)
    if (count == 0).any():
        raise ValueError("every example needs at least one shadow model on each side (IN and OUT)")
    mean = np.where(mask, phi, 0).sum(0) / count
    var = np.where(mask, (phi - mean) ** 2, 0).sum(0) / np.maximum(count - 1, 1)
    if fixed or (count < 2).any():
        var = np.full_like(mean, np.mean(var[count >= 2]) if (count >= 2).any() else np.var(phi[mask]))
    return mean, np.maximum(np.sqrt(var), _MIN_STD)


def _phis(inputs: AttackInputs) -> tuple[np.ndarray, np.ndarray]:
    return (
        scaled_confidence(inputs.target_logits, inputs.labels),
        scaled_confidence(inputs.shadow_logits, inputs.labels),
    )


def lira_online(inputs: AttackInputs, fixed_variance: bool = False) -> np.ndarray:
    target, shadows = _phis(inputs)
    mu_in, sd_in = _gaussians(shadows, inputs.shadow_in, fixed_variance)
    mu_out, sd_out = _gaussians(shadows, ~inputs.shadow_in, fixed_variance)
    return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)


def lira_offline(inputs: AttackInputs, fixed_variance: bool = False) -> np.ndarray:
    target, shadows = _phis(inputs)
    mu_out, sd_out = _gaussians(shadows, ~inputs.shadow_in, fixed_variance)
    return -norm.logsf(target, mu_out, sd_out)
