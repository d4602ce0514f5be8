"""Canary generation and insertion (the Secret Sharer's setup, Carlini et al. 2019, for a classifier).

A sentence classifier gives far weaker signal than a per-token model: if the public words alone decided
the label, the model would never need the secret. So canaries that share a template get different
labels (round robin over the labels, in a seeded order), and optional decoys (the same public words
with other random secrets under other labels) make the label depend on the secret even more. Decoys
are part of the measurement and reported with it.

Each canary is inserted `repeat` times; with several repeat counts, the canaries are split evenly among
them. A separate set of audit canaries is each inserted once with probability 1/2 (the one-run audit of
Steinke et al. 2023 needs this randomness).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from privaudit.data import TextDataset
from privaudit.errors import PrivauditError

from .templates import Template


@dataclass(frozen=True)
class Canary:
    secret: tuple[str, ...]
    label: str
    repeat: int  # times inserted; 0 for an audit canary left out
    text: str
    role: str  # "exposure" or "audit"

    def to_dict(self, show_secret: bool) -> dict:
        d = asdict(self)
        d["secret"] = list(self.secret) if show_secret else None
        # No hash of the secret either: over a space of 10^4 secrets, hashing every candidate recovers it.
        d["text"] = self.text if show_secret else None
        return d


@dataclass
class CanaryPlan:
    template: Template
    canaries: list[Canary]
    decoys: list[tuple[str, str]]  # (text, label)

    def inserted(self) -> TextDataset:
        """The training examples the canaries add: every inserted copy, and the decoys."""
        texts, labels = [], []
        for c in self.canaries:
            texts += [c.text] * c.repeat
            labels += [c.label] * c.repeat
        for text, label in self.decoys:
            texts.append(text)
            labels.append(label)
        return TextDataset(texts, labels)


def plan_canaries(
    template: Template,
    n: int,
    repeats: list[int],
    labels: list[str],
    seed: int,
    label: str | None = None,
    audit: int = 0,
    decoys: int = 0,
) -> CanaryPlan:
    if n < 1:
        raise PrivauditError("--insert must be at least 1")
    if not repeats or any(r < 1 for r in repeats):
        raise PrivauditError("--repeat takes positive counts, e.g. 1,4,16")
    if label is not None and label not in labels:
        raise PrivauditError(f"label {label!r} is not in the data (labels: {', '.join(labels)})")
    total = n + audit + n * decoys
    if total > template.space_size:
        raise PrivauditError(f"template {template.text!r} has only {template.space_size} secrets for {total} canaries")
    rng = random.Random(seed)
    secrets = _distinct_secrets(template, total, rng)
    order = list(labels)
    rng.shuffle(order)
    canaries = []
    for i in range(n):
        chosen = label if label is not None else order[i % len(order)]
        repeat = repeats[i * len(repeats) // n]
        canaries.append(Canary(secrets[i], chosen, repeat, template.render(secrets[i]), "exposure"))
    for j in range(audit):
        secret = secrets[n + j]
        chosen = label if label is not None else order[(n + j) % len(order)]
        canaries.append(Canary(secret, chosen, 1 if rng.random() < 0.5 else 0, template.render(secret), "audit"))
    decoy_rows = []
    for i in range(n * decoys):
        owner = canaries[i % n]
        others = [y for y in labels if y != owner.label] or labels
        decoy_rows.append((template.render(secrets[n + audit + i]), rng.choice(others)))
    return CanaryPlan(template, canaries, decoy_rows)


def _distinct_secrets(template: Template, count: int, rng: random.Random) -> list[tuple[str, ...]]:
    seen: set[tuple[str, ...]] = set()
    out: list[tuple[str, ...]] = []
    alphabets = template.alphabets
    while len(out) < count:
        secret = tuple(rng.choice(a) for a in alphabets)
        if secret not in seen:
            seen.add(secret)
            out.append(secret)
    return out
