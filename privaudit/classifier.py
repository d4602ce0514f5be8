"""A trained text classifier: model + tokenizer + label map, with batched inference."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import PrivauditError
from .models import ModelConfig
from .tokenization import AnyTokenizer, encode


def label_indices(model_labels: list[str], labels: list[str]) -> list[int]:
    """Each label's column in a model's logits; a label the model does not know is named (exit 2)."""
    index = {name: i for i, name in enumerate(model_labels)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise PrivauditError(
            f"label(s) {', '.join(map(repr, unknown[:5]))} are not among the model's labels ({', '.join(model_labels)})"
        )
    return [index[y] for y in labels]


@dataclass
class TextClassifier:
    model: nn.Module
    tokenizer: AnyTokenizer
    config: ModelConfig
    labels: list[str]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = encode(self.tokenizer, texts, self.config.max_len, self.config.pad_id)
        return ids.to(self.device), mask.to(self.device)

    def label_ids(self, labels: list[str]) -> torch.Tensor:
        return torch.tensor(label_indices(self.labels, labels), dtype=torch.long, device=self.device)

    @torch.no_grad()
    def logits(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        """Logits (N, num_labels) in eval mode, on the CPU."""
        was_training = self.model.training
        self.model.eval()
        try:
            out = [
                self.model(*self.encode(texts[i : i + batch_size])).float().cpu()
                for i in range(0, len(texts), batch_size)
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def accuracy(self, texts: list[str], labels: list[str]) -> float:
        if not texts:
            return float("nan")
        predictions = self.logits(texts).argmax(1)
        return float((predictions == self.label_ids(labels).cpu()).float().mean())
