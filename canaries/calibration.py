"""Reference-calibrated extraction: how much more the target favours a secret than models that never saw it.

Ranking candidate secrets by the target's confidence in the canary's label caps extraction: a classifier
is confident about many fillings of a template (digits that the training data tie to a label, words it
has seen), not only the planted one, and the exhaustive maximiser of that objective is the ceiling of
every optimiser of it. Calibration removes what any model trained on the same data believes: K reference
models are trained with the target's recipe and vocabulary on the same data *without* the canaries, and
a candidate's calibrated score is

    target log-odds of the label  -  mean over references of their log-odds          (log-odds = log p/(1-p))

This is the extraction analogue of LiRA's per-example calibration by models trained without the example
(Carlini et al. 2022) and of the reference-model ratio used to extract training data from language
models (Carlini et al. 2021, "Extracting Training Data from Large Language Models"). It is used for exact
enumeration (the calibrated top-1) and as ModIvA's objective (`privaudit.attacks.modiva`).

Threat model: the references are trained on the audited training data minus the canaries: what the
auditor, who holds the data, can do. An outsider with only similar public data calibrates less well, so
the calibrated rate is the strong attacker's, which is what an audit should report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from rich.progress import Progress

from privaudit.classifier import TextClassifier
from privaudit.data import TextDataset
from privaudit.recipe import TrainingRecipe
from privaudit.training import fit

from .exposure import MAX_ENUMERATE, Exposure, candidate_scores, rank_exposure, sampled_secrets, tail_exposure
from .templates import Template


def train_references(
    data: TextDataset,
    labels: list[str],
    recipe: TrainingRecipe,
    target: TextClassifier,
    count: int,
    device: str = "cpu",
    progress: Progress | None = None,
) -> list[TextClassifier]:
    """`count` models trained like the target (same recipe, DP included; the target's vocabulary, so
    ModIvA's relaxed tokens mean the same in every model) on `data`, the training data without canaries.
    Seeds differ from the target's and from each other's."""
    return [
        fit(
            data,
            labels,
            replace(recipe, seed=recipe.seed + 1 + k),
            device,
            progress,
            f"reference model {k + 1} of {count} (no canaries)",
            tokenizer=target.tokenizer,
        ).classifier
        for k in range(count)
    ]


@dataclass
class SecretScorer:
    """Scores the secrets of one template under a label: the target's log-odds, and calibrated (minus the
    references' mean) when there are references. Whole-space tables are computed once per label."""

    target: TextClassifier
    references: list[TextClassifier]
    template: Template
    _tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def score(self, secrets: list[tuple[str, ...]], label: str) -> dict[str, np.ndarray]:
        """{"target": ..., "calibrated": ...} (the latter with references only), one value per secret."""
        target = candidate_scores(self.target, self.template, secrets, label)
        out = {"target": target}
        if self.references:
            reference = np.mean([candidate_scores(r, self.template, secrets, label) for r in self.references], axis=0)
            out["calibrated"] = target - reference
        return out

    def table(self, label: str) -> dict[str, np.ndarray]:
        """Scores of every secret of the template in `Template.all_secrets` order (spaces up to 10^6)."""
        if label not in self._tables:
            self._tables[label] = self.score(list(self.template.all_secrets()), label)
        return self._tables[label]

    def exposures(self, secret: tuple[str, ...], label: str, seed: int = 0) -> dict[str, Exposure]:
        """The secret's exposure under each score ("target": the Secret Sharer's definition; "calibrated"):
        exact up to 10^6 candidates, else extrapolated from a sample (`exposure.tail_exposure`)."""
        space = self.template.space_size
        if space <= MAX_ENUMERATE:
            index = self.template.index(secret)
            return {kind: rank_exposure(scores, index) for kind, scores in self.table(label).items()}
        sample = self.score(sampled_secrets(self.template, seed), label)
        true = self.score([secret], label)
        return {kind: tail_exposure(sample[kind], float(true[kind][0]), space) for kind in sample}
