"""Canary generation and insertion (the Secret Sharer's setup, Carlini et al. 2019, for a classifier).

A sentence classifier gives far weaker signal than a per-token model: if the public words alone decided
the label, the model would never need the secret. So canaries that share a template get different
labels (round robin over the labels, in a seeded order), and optional decoys (the same public words
with other random secrets under other labels) make the label depend on the secret even more. Decoys
are part of the measurement and reported with it.

Each canary is inserted `repeat` times; with several repeat counts, each count gets its own `n` canaries
(so every rate in the results is over `n` canaries, whatever the number of counts).

Canaries that share the template and a label interfere: the model learns digits (or letters, words)
that go with the label, and fillings that mix two such canaries' secrets outrank both (measured on
SNIPS with 3 canaries per label at 32 insertions: the true secret first for 5% of them; with one per
label: 100%). Extraction from a real model concerns one secret in its context, so the canaries are
spread over several training runs: within a run, no two canaries of one repeat count share a label.
`n` canaries over L labels take ceil(n / L) runs (SNIPS, 7 intents, n = 20: 3 runs); with one `--label`
for all canaries they share it in a single run.

A separate set of audit canaries, in a training run of their own (on SNIPS, 50 of them sharing a run
with exposure canaries kept 6 of 7 canaries inserted 32 times from being extracted), is each inserted
once with probability 1/2 (the one-run audit of Steinke et al. 2023 needs this randomness).

The secrets and the audit canaries' inclusion come from operating-system entropy, never from the seed: the
seed is recorded in the results (it fixes the label order and, elsewhere, the training), so anything drawn
from it could be replayed by whoever holds the report; a secret replayed is a secret extracted.
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
    run: int = 0  # the training run it is inserted in (audit canaries: a run of their own, the last)

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
    decoys: list[tuple[str, str, int]]  # (text, label, run)

    @property
    def runs(self) -> int:
        return 1 + max(c.run for c in self.canaries)

    def inserted(self, run: int = 0) -> TextDataset:
        """The training examples the canaries add to training run `run`: every inserted copy, and the decoys."""
        texts, labels = [], []
        for c in self.canaries:
            if c.run == run:
                texts += [c.text] * c.repeat
                labels += [c.label] * c.repeat
        for text, label, decoy_run in self.decoys:
            if decoy_run == run:
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
    """`n` canaries per repeat count (and `audit` audit canaries, `decoys` decoys per canary) for `template`:
    the secrets and the audit canaries' inclusion from operating-system entropy, the labels' order from `seed`."""
    if n < 1:
        raise PrivauditError("--insert must be at least 1")
    if not repeats or any(r < 1 for r in repeats):
        raise PrivauditError("--repeat takes positive counts, e.g. 1,4,16")
    if label is not None and label not in labels:
        raise PrivauditError(f"label {label!r} is not in the data (labels: {', '.join(labels)})")
    n_exposure = n * len(repeats)
    total = n_exposure + audit + n_exposure * decoys
    if total > template.space_size:
        raise PrivauditError(f"template {template.text!r} has only {template.space_size} secrets for {total} canaries")
    rng = random.Random(seed)  # the public choices: the label order, the decoys' labels
    unpredictable = _unpredictable()
    secrets = _distinct_secrets(template, total, unpredictable)
    order = list(labels)
    rng.shuffle(order)
    canaries = []
    # Within a repeat count, the i-th canary takes label i mod L in run i div L: no shared (label, count) in a run.
    # One given --label for all: a single run (as many runs as canaries would be the only way around it).
    per_run = n if label is not None else len(order)
    for i in range(n_exposure):
        chosen = label if label is not None else order[i % len(order)]
        run = (i % n) // per_run
        canaries.append(Canary(secrets[i], chosen, repeats[i // n], template.render(secrets[i]), "exposure", run))
    audit_run = 1 + max(c.run for c in canaries)
    for j in range(audit):
        secret = secrets[n_exposure + j]
        chosen = label if label is not None else order[(n_exposure + j) % len(order)]
        inserted = 1 if unpredictable.random() < 0.5 else 0
        canaries.append(Canary(secret, chosen, inserted, template.render(secret), "audit", audit_run))
    decoy_rows = []
    for i in range(n_exposure * decoys):
        owner = canaries[i % n_exposure]
        others = [y for y in labels if y != owner.label] or labels
        decoy_rows.append((template.render(secrets[n_exposure + audit + i]), rng.choice(others), owner.run))
    return CanaryPlan(template, canaries, decoy_rows)


def _unpredictable() -> random.Random:
    """Where the secrets and the audit canaries' inclusion come from: operating-system entropy. (The tests put one
    fixed stream here, tests/conftest.py, so that their extraction figures do not depend on the draw.)"""
    return random.SystemRandom()


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
