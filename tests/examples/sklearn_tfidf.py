"""A user's scikit-learn pipeline: TF-IDF features and logistic regression. Black-box only: privaudit reads
its decision scores as logits (membership inference works; ModIvA, which needs gradients, does not apply).

    privaudit mia tfidf.joblib --loader examples.sklearn_tfidf:load_model --trainer examples.sklearn_tfidf:train \
        --members members.csv --nonmembers nonmembers.csv
"""

from __future__ import annotations

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


class TfidfClassifier:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.labels = [str(c) for c in pipeline.classes_]

    def logits(self, texts: list[str]) -> np.ndarray:
        scores = self.pipeline.decision_function(texts)
        return np.c_[-scores / 2, scores / 2] if scores.ndim == 1 else scores  # two classes: one score


def train(texts: list[str], labels: list[str], seed: int) -> TfidfClassifier:
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("logreg", LogisticRegression(C=20.0, max_iter=2000, random_state=seed)),
        ]
    )
    return TfidfClassifier(pipeline.fit(texts, labels))


def save(model: TfidfClassifier, path: str) -> None:
    joblib.dump(model.pipeline, path)


def load_model(path: str) -> TfidfClassifier:
    # Your own file, read by your own code (joblib unpickles it: load only files you made). privaudit itself
    # never unpickles anything.
    return TfidfClassifier(joblib.load(path))
