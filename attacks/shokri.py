"""The shadow-model attack of Shokri et al. 2017 ("Membership Inference Attacks against Machine
Learning Models").

Shadow models are trained like the target; their outputs on their own training examples (IN) and on
others (OUT) train one attack classifier per class, which is then applied to the target's outputs.
The attack classifier here is a logistic regression on the sorted log-probability vector, the true
class's log-probability and its scaled confidence (standardised; L2-regularised; fitted with scipy's
L-BFGS). score = the attack classifier's log-odds of "member".
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from .base import AttackInputs, log_prob_true, scaled_confidence

L2 = 1e-3


def features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    sorted_desc = -np.sort(-log_probs, axis=-1)
    return np.concatenate(
        [sorted_desc, log_prob_true(logits, labels)[..., None], scaled_confidence(logits, labels)[..., None]],
        axis=-1,
    )


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights (d + 1,) of an L2-regularised logistic regression, bias last."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    sign = np.where(y, 1.0, -1.0)

    def objective(w):
        margin = sign * (xb @ w)
        loss = np.logaddexp(0, -margin).mean() + L2 * (w[:-1] @ w[:-1])
        grad = -(xb * (sign * np.exp(-np.logaddexp(0, margin)))[:, None]).mean(0)
        grad[:-1] += 2 * L2 * w[:-1]
        return loss, grad

    return minimize(objective, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x


def shokri_attack(inputs: AttackInputs) -> np.ndarray:
    if inputs.num_shadows == 0:
        raise ValueError("the shadow-model attack needs shadow models")
    k, n = inputs.shadow_in.shape
    train_x = features(inputs.shadow_logits, inputs.labels).reshape(k * n, -1)
    train_y = inputs.shadow_in.reshape(-1)
    train_cls = np.tile(inputs.labels, k)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    target_x = (features(inputs.target_logits, inputs.labels) - mean) / std
    train_x = (train_x - mean) / std
    scores = np.zeros(n)
    for cls in np.unique(inputs.labels):
        rows = train_cls == cls
        w = _fit_logistic(train_x[rows], train_y[rows])
        here = inputs.labels == cls
        scores[here] = target_x[here] @ w[:-1] + w[-1]
    return scores
