"""The loss-threshold attack (Yeom et al. 2018): members tend to have lower loss.

score = log p(y | x) under the target = -loss (computed without rounding p to 1). Needs no shadow model.
"""

import numpy as np

from .base import AttackInputs, log_prob_true


def loss_attack(inputs: AttackInputs) -> np.ndarray:
    return log_prob_true(inputs.target_logits, inputs.labels)
