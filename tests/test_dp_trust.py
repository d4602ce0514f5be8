"""DP-SGD keeps its promise: unpredictable randomness, exact sensitivity, clear refusals, and a white-box
audit that does not flag the correct implementation. (Each check here also runs against deliberately
broken DP-SGD variants in test_dp_bug_zoo.py, where it must fail.)"""

import random

import dp_checks
import numpy as np
import pytest
import torch
from torch import nn

from privaudit import dpsgd, training
from privaudit.dpsgd import GaussianNoise, PerExampleClipper, reseed_from_entropy
from privaudit.errors import PrivauditError
from privaudit.headline import epsilon_headline


def test_same_seed_dp_trainings_differ():
    # The recorded --seed controls initialisation only; the noise and the batches are fresh every time.
    assert dp_checks.same_seed_weights_differ()


def test_noise_is_not_the_initialisation_stream(monkeypatch):
    assert dp_checks.first_noise_correlation(monkeypatch) < 0.05


def test_noise_depends_on_entropy_beyond_32_bits():
    assert dp_checks.noise_differs_beyond_32_bits_of_entropy()


def test_fresh_generator_state_is_624_words_of_entropy_that_torch_then_uses():
    # The CPU generator's Mersenne Twister gets every word of its state fresh: not a state manual_seed can make
    # (its words follow from the first by a fixed recurrence), different at (almost) every word each time, and
    # the stream torch then draws is the Mersenne Twister's over exactly those words (Python's is the same one).
    words = []
    for _ in range(2):
        generator = torch.Generator()
        reseed_from_entropy(generator)
        _, offset = dpsgd._mt19937_state_layout()
        raw = generator.get_state().numpy()[offset : offset + 8 * 624].tobytes()
        words.append([int(w) for w in np.frombuffer(raw, dtype="<u8")])
        twister = random.Random()
        twister.setstate((3, (*words[-1], 624), None))
        drawn = torch.empty(700, dtype=torch.int64).random_(0, 2**16, generator=generator).tolist()
        assert drawn == [twister.getrandbits(32) % 2**16 for _ in range(700)]
    first = words[0]
    assert first[1] != (1812433253 * (first[0] ^ (first[0] >> 30)) + 1) % 2**32
    assert sum(a != b for a, b in zip(*words)) > 600


def test_insecure_seed_is_reproducible_and_says_so():
    data = dp_checks.small_data()
    recipe = dp_checks.dp_recipe(insecure_seed=11)
    a, b = (training.fit(data, data.label_names, recipe) for _ in range(2))
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.classifier.model.state_dict().values(), b.classifier.model.state_dict().values())
    )
    assert (
        a.privacy.reproducible and not training.fit(data, data.label_names, dp_checks.dp_recipe()).privacy.reproducible
    )
    assert "TEST MODE" in epsilon_headline("x", 0.0, a.privacy).text


def test_one_example_moves_the_clipped_sum_by_at_most_the_clipping_norm():
    assert dp_checks.largest_one_example_change(0.1) == pytest.approx(0.1, rel=1e-3)


class TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, ids, mask):
        return self.head(self.lstm(self.embedding(ids))[0][:, -1])


class TiedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 2)
        self.proj = nn.Linear(2, 2)

    def forward(self, ids, mask):
        return self.proj(self.embedding(ids).mean(1)) @ self.embedding.weight[:2].T  # weight read outside its layer


@pytest.mark.parametrize("model_class, layer", [(TinyLSTM, "lstm"), (TiedHead, "embedding.weight")])
def test_clipper_refuses_parameters_it_cannot_clip(model_class, layer):
    # Before: such layers silently got a zero gradient, hence noise only.
    model = model_class()
    clipper = PerExampleClipper(model, 1.0)
    ids = torch.randint(0, 20, (3, 5))
    with pytest.raises(PrivauditError, match=layer.replace(".", r"\.")):
        with clipper.capture(3):
            nn.functional.cross_entropy(model(ids, None), torch.zeros(3, dtype=torch.long)).backward()


@pytest.mark.parametrize("seed", [0, 1])
def test_whitebox_audit_does_not_flag_correct_dp_sgd(seed):
    claimed, audit = dp_checks.whitebox_run(seed)
    assert dp_checks.whitebox_flags(claimed, audit) == []
    assert audit.sampling.dispersion == pytest.approx(1.0, abs=0.25)


@pytest.mark.slow
def test_whitebox_audit_does_not_flag_correct_dp_sgd_in_20_seeds():
    flagged = [seed for seed in range(20) if dp_checks.whitebox_flags(*dp_checks.whitebox_run(100 + seed))]
    assert flagged == []


def test_averaging_refuses_a_gradient_that_no_longer_holds_the_noise():
    # DP-SGD's 1/B is one pass over the noise buffer; a .grad replaced after the noise was written into
    # it (so the noise is gone from it) must not be averaged as if it were still noised.
    layer = nn.Linear(3, 2)
    noise = GaussianNoise(list(layer.parameters()), std=1.0)
    noise.start_step()
    noised = layer.weight.grad.clone()
    noise.divide(4.0)
    torch.testing.assert_close(layer.weight.grad, noised / 4)
    noise.start_step()
    layer.weight.grad = torch.zeros_like(layer.weight)
    with pytest.raises(RuntimeError, match="replaced"):
        noise.divide(4.0)
