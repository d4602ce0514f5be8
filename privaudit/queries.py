"""Query neighbours for membership inference: a few word-level edits of each example, sent to the
target and to every shadow model alongside the example itself.

A model's behaviour around a training example differs from its behaviour around an unseen one, not only
at the example: LiRA queries augmented copies of each image and averages the per-query likelihood ratios
(Carlini et al. 2022, Sec. VI); the label-only attack of Choquette-Choo et al. (2021) counts how many
perturbed copies keep the true label, which needs only the predicted label. For text the neighbours are
one edit each: delete a word, swap two adjacent words, or replace a word with one drawn from the audit
population's own words. They are drawn from `seed` and the population alone, so a rerun (and the shadow
cache, keyed by `digest`) sees the same queries.
"""

from __future__ import annotations

import hashlib

import numpy as np

EDITS = ("delete", "swap", "substitute")


def neighbours(texts: list[str], count: int, seed: int) -> list[list[str]]:
    """`count` edited copies of every text (a list per text, in order)."""
    if count <= 0:
        return [[] for _ in texts]
    rng = np.random.default_rng([seed, 0x51])  # its own stream: never the shadows' or the split's
    split = [text.split() for text in texts]
    vocabulary = [word for words in split for word in words] or ["the"]
    return [[_edit(words, rng, vocabulary) for _ in range(count)] for words in split]


def _edit(words: list[str], rng: np.random.Generator, vocabulary: list[str]) -> str:
    words = list(words)
    if not words:
        return vocabulary[rng.integers(len(vocabulary))]
    edit = EDITS[rng.integers(len(EDITS))] if len(words) > 1 else "substitute"
    i = int(rng.integers(len(words)))
    if edit == "delete":
        del words[i]
    elif edit == "swap":
        i = min(i, len(words) - 2)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        words[i] = vocabulary[rng.integers(len(vocabulary))]
    return " ".join(words)


def flatten(queries: list[list[str]]) -> list[str]:
    return [q for per_text in queries for q in per_text]


def digest(queries: list[list[str]]) -> str:
    """Identifies a query set (the shadow cache keeps each shadow's outputs per query set)."""
    h = hashlib.sha256()
    for per_text in queries:
        h.update("\x1f".join(per_text).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:24]
