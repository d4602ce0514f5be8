"""Exposure (Carlini et al. 2019, "The Secret Sharer").

The rank of the true secret among all candidate secrets of the template, ordered by how strongly the
model predicts the canary's label for the filled-in template (its scaled confidence log(p / (1 - p)),
which orders candidates like p but does not saturate):
    exposure = log2 |space| - log2 rank        (rank 1 = the model's favourite secret).
Exact enumeration when the space has at most 10^6 candidates (batched); otherwise the paper's
extrapolation: score a random sample of candidates, fit a skew-normal distribution to their scores and
read the true secret's rank off its tail, exposure ~ -log2 P(score >= true score).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import skewnorm

from privaudit.attacks.base import scaled_confidence
from privaudit.classifier import TextClassifier

from .templates import Template

MAX_ENUMERATE = 10**6


@dataclass
class Exposure:
    exposure: float  # bits
    rank: float
    space: int
    method: str  # "exact" or "extrapolated"

    def to_dict(self) -> dict:
        return asdict(self)


def candidate_scores(
    classifier: TextClassifier, template: Template, secrets, label: str, batch_size: int = 4096
) -> np.ndarray:
    """Scaled confidence of `label` for the template filled with each secret."""
    label_id = classifier.labels.index(label)
    out, chunk = [], []
    for secret in secrets:
        chunk.append(template.render(secret))
        if len(chunk) == batch_size:
            out.append(_score_texts(classifier, chunk, label_id))
            chunk = []
    if chunk:
        out.append(_score_texts(classifier, chunk, label_id))
    return np.concatenate(out) if out else np.zeros(0)


def _score_texts(classifier: TextClassifier, texts: list[str], label_id: int) -> np.ndarray:
    logits = classifier.logits(texts, batch_size=len(texts)).numpy()
    return scaled_confidence(logits, np.full(len(texts), label_id))


def rank_exposure(scores: np.ndarray, true_index: int) -> Exposure:
    """Exact exposure from every candidate's score (`scores[true_index]`: the true secret's). Candidates that
    tie with the true secret count half (its expected rank when ties are broken at random): a model that
    cannot tell the secrets apart (one that ignores the slot's tokens) must not look as if it ranked the
    secret first."""
    true = scores[true_index]
    rank = 1 + int((scores > true).sum()) + (int((scores == true).sum()) - 1) / 2
    return Exposure(math.log2(len(scores)) - math.log2(rank), rank, len(scores), "exact")


def tail_exposure(sample: np.ndarray, true: float, space: int) -> Exposure:
    """Extrapolated exposure: a skew-normal fitted to a random sample of candidates' scores, read at the
    true secret's score (never beyond log2 |space|)."""
    shape, loc, scale = skewnorm.fit(sample)
    tail = max(float(skewnorm.sf(true, shape, loc, scale)), 1.0 / space)
    return Exposure(-math.log2(tail), tail * space, space, "extrapolated")


def sampled_secrets(template: Template, seed: int, samples: int = 10_000) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.choice(a) for a in template.alphabets) for _ in range(samples)]


def exact_exposure(classifier, template: Template, secret: tuple[str, ...], label: str) -> Exposure:
    scores = candidate_scores(classifier, template, template.all_secrets(), label)
    return rank_exposure(scores, template.index(secret))


def extrapolated_exposure(
    classifier, template: Template, secret: tuple[str, ...], label: str, samples: int = 10_000, seed: int = 0
) -> Exposure:
    scores = candidate_scores(classifier, template, sampled_secrets(template, seed, samples), label)
    true = candidate_scores(classifier, template, [secret], label)[0]
    return tail_exposure(scores, float(true), template.space_size)
