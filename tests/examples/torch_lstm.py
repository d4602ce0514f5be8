"""A user's own PyTorch LSTM classifier: its own tokenizer, its own training loop, its own file format.

    privaudit mia lstm.pt --loader examples.torch_lstm:load_model --trainer examples.torch_lstm:train \
        --members members.csv --nonmembers nonmembers.csv
    privaudit canary --trainer examples.torch_lstm:train --data train.csv --template "my pin is {digit}x4"

It gives white-box access too (`encode`, `input_embeddings`, `forward_embeds`), so the canary audit's
ModIvA extraction runs on it.
"""

from __future__ import annotations

import re

import torch
from torch import nn

MAX_LEN = 24


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class LstmNet(nn.Module):
    def __init__(self, vocab_size: int, num_labels: int, dim: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_embeds(self.embedding(ids), ids != 0)

    def forward_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(embeds)
        weights = mask.unsqueeze(-1).float()
        return self.head((states * weights).sum(1) / weights.sum(1).clamp(min=1))


class LstmClassifier:
    """What privaudit needs of a model: `labels` (the logits' column order) and `logits(texts)`; for
    ModIvA also `encode`, `input_embeddings` and `forward_embeds`."""

    special_token_ids = (0, 1)  # padding, unknown word
    unknown_token_id = 1

    def __init__(self, vocab: dict[str, int], labels: list[str], net: LstmNet):
        self.vocab, self.labels, self.net = vocab, labels, net

    def token_ids(self, texts: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), MAX_LEN, dtype=torch.long)  # 0: padding, 1: unknown word
        for row, text in enumerate(texts):
            tokens = [self.vocab.get(w, 1) for w in words(text)[:MAX_LEN]] or [1]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids

    @torch.no_grad()
    def logits(self, texts: list[str]) -> torch.Tensor:
        self.net.eval()
        return self.net(self.token_ids(texts))

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.token_ids(texts)
        return ids, ids != 0

    def input_embeddings(self) -> torch.Tensor:
        return self.net.embedding.weight

    def forward_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net.forward_embeds(embeds, mask)


def train(texts: list[str], labels: list[str], seed: int, epochs: int = 10) -> LstmClassifier:
    torch.manual_seed(seed)
    vocab: dict[str, int] = {}
    for text in texts:
        for w in words(text):
            vocab.setdefault(w, len(vocab) + 2)
    names = sorted(set(labels))
    model = LstmClassifier(vocab, names, LstmNet(len(vocab) + 2, len(names)))
    ids, targets = model.token_ids(texts), torch.tensor([names.index(y) for y in labels])
    optimizer = torch.optim.Adam(model.net.parameters(), lr=3e-3)
    model.net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(texts)).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model.net(ids[batch]), targets[batch]).backward()
            optimizer.step()
    return model


def save(model: LstmClassifier, path: str) -> None:
    torch.save({"vocab": model.vocab, "labels": model.labels, "state": model.net.state_dict()}, path)


def load_model(path: str) -> LstmClassifier:
    saved = torch.load(path, weights_only=True)  # tensors, a dict and a list: no pickle needed
    net = LstmNet(len(saved["vocab"]) + 2, len(saved["labels"]))
    net.load_state_dict(saved["state"])
    return LstmClassifier(saved["vocab"], saved["labels"], net)
