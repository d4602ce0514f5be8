"""A user's DP model trained with Opacus's PrivacyEngine: the epsilon Opacus's accountant reports is handed to
privaudit (`privacy`), which shows it next to the empirical lower bound its attacks prove.

    privaudit mia dp.pt --loader examples.opacus_dp:load_model --trainer examples.opacus_dp:train \
        --members members.csv --nonmembers nonmembers.csv
"""

from __future__ import annotations

import re
import zlib

import torch
from opacus import PrivacyEngine
from torch import nn

BUCKETS, MAX_LEN, DIM = 4096, 32, 32
NOISE_MULTIPLIER, MAX_GRAD_NORM, DELTA = 1.0, 1.0, 1e-5
EPOCHS, BATCH_SIZE, LR = 10, 32, 0.5


def encode(texts: list[str]) -> torch.Tensor:
    """Words hashed into buckets: a vocabulary learned from the training texts would leak them outside DP."""
    ids = torch.zeros(len(texts), MAX_LEN, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [zlib.crc32(w.encode()) % (BUCKETS - 1) + 1 for w in re.findall(r"\w+", text.lower())][:MAX_LEN]
        ids[row, : len(tokens)] = torch.tensor(tokens or [1])
    return ids


class BagNet(nn.Module):
    def __init__(self, num_labels: int):
        super().__init__()
        self.embedding = nn.Embedding(BUCKETS, DIM)
        self.head = nn.Linear(DIM, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(-1).float()
        return self.head((self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1))


class DpBagClassifier:
    def __init__(self, labels: list[str], net: BagNet, privacy: dict):
        self.labels, self.net, self.privacy = labels, net, privacy

    @torch.no_grad()
    def logits(self, texts: list[str]) -> torch.Tensor:
        self.net.eval()
        return self.net(encode(texts))


def train(texts: list[str], labels: list[str], seed: int) -> DpBagClassifier:
    torch.manual_seed(seed)  # the initial weights only:
    names = sorted(set(labels))
    net = BagNet(len(names))
    data = torch.utils.data.TensorDataset(encode(texts), torch.tensor([names.index(y) for y in labels]))
    engine = PrivacyEngine()
    model, optimizer, loader = engine.make_private(
        module=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=LR),
        data_loader=torch.utils.data.DataLoader(data, batch_size=BATCH_SIZE),
        noise_multiplier=NOISE_MULTIPLIER,
        max_grad_norm=MAX_GRAD_NORM,
    )
    # Opacus draws its noise and Poisson batches from torch's global generator (its secure_mode needs
    # torchcsprng): re-seeded from operating-system entropy, so that `seed` cannot replay them.
    torch.seed()
    steps = 0
    for _ in range(EPOCHS):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            steps += 1
    privacy = {
        "epsilon": float(engine.get_epsilon(DELTA)),
        "delta": DELTA,
        "accountant": f"Opacus {engine.accountant.mechanism()}",
        "noise_multiplier": NOISE_MULTIPLIER,
        "sample_rate": 1 / len(loader),
        "steps": steps,
        "max_grad_norm": MAX_GRAD_NORM,
    }
    return DpBagClassifier(names, net, privacy)


def save(model: DpBagClassifier, path: str) -> None:
    torch.save({"labels": model.labels, "state": model.net.state_dict(), "privacy": model.privacy}, path)


def load_model(path: str) -> DpBagClassifier:
    saved = torch.load(path, weights_only=True)
    net = BagNet(len(saved["labels"]))
    net.load_state_dict(saved["state"])
    return DpBagClassifier(saved["labels"], net, saved["privacy"])
