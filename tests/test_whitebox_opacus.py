"""The white-box audit on a second DP-SGD implementation: Opacus's DPOptimizer in an ordinary torch loop,
with the canaries inserted through Opacus's own per-sample gradients and clipping (attach_to_opacus)."""

import pytest
import torch
from torch import nn

from privaudit.accounting import compute_epsilon
from privaudit.canaries.gradient import GradientCanaries, attach_to_opacus
from privaudit.demo import demo_dataset
from privaudit.tokenization import hashed_tokenizer, pad_batch, token_ids


class BagOfWords(nn.Module):
    def __init__(self, vocab: int, labels: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 32)
        self.head = nn.Linear(32, labels)

    def forward(self, ids):
        return self.head(self.embedding(ids).mean(1))


def opacus_run(noise_multiplier: float, epochs: int = 3, actual_noise: float | None = None):
    """Train with Opacus at `noise_multiplier` (or, broken, with `actual_noise` while the audit and the
    returned claim still assume `noise_multiplier`); returns (claimed epsilon, white-box audit)."""
    torch.manual_seed(0)
    data = demo_dataset(1000, seed=2)
    tokenizer = hashed_tokenizer("word", 2048)
    ids, _ = pad_batch(token_ids(tokenizer, data.texts, 16), 0)
    labels = torch.tensor([data.label_names.index(y) for y in data.labels])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, labels), batch_size=50)
    model = BagOfWords(2048, len(data.label_names))
    # Imported here, not at collection: opacus takes 1.6 s to import, paid by every test worker otherwise.
    opacus = pytest.importorskip("opacus")
    engine = opacus.PrivacyEngine()
    model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=1.0,
        poisson_sampling=True,
    )
    canaries = GradientCanaries(optimizer.params, 2000, 1.0, loader.sample_rate, optimizer.expected_batch_size)
    attach_to_opacus(optimizer, canaries)
    if actual_noise is not None:
        optimizer.noise_multiplier = actual_noise
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    claimed = compute_epsilon(noise_multiplier, loader.sample_rate, canaries.steps, 1e-5)
    return claimed, canaries.finish(1e-5)


def test_whitebox_audit_through_opacus():
    claimed, audit = opacus_run(noise_multiplier=0.8)
    assert audit.steps == 3 * 20 and audit.canaries == 2000
    assert audit.sampling.passed
    assert 0.0 < audit.every_step.gdp.epsilon and audit.epsilon <= claimed  # sees leakage, never above Opacus's


def test_whitebox_audit_catches_quartered_noise_in_opacus():
    claimed, audit = opacus_run(noise_multiplier=2.0, epochs=1, actual_noise=0.5)
    assert audit.epsilon > claimed, (audit.epsilon, claimed)
