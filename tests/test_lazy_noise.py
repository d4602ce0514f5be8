"""Lazily drawn table noise (dpsgd.LazyNoisyTable) must give every value training reads, and the final table,
exactly the distribution dense DP-SGD with plain SGD gives them: the clipped sums' update, plus Gaussian noise
of variance (steps so far) x (lr sigma C / B)^2 in every coordinate, fresh between reads."""

from dataclasses import replace

import dp_checks
import numpy as np
import pytest
import torch
from torch import nn

from privaudit import training
from privaudit.dpsgd import GaussianNoise, LazyNoisyTable
from privaudit.recipe import DPSettings, TrainingRecipe

VOCAB, WIDTH, STEPS, TRIALS = 30, 8, 12, 60
STD, LR, BATCH = 2.0, 0.5, 4.0  # the noise on a step's summed gradient, SGD's rate, the expected batch
PARAMETER_STD = LR * STD / BATCH  # what one step's noise moves a coordinate


def lazy_training(seed: int):
    """STEPS steps on one table; each step reads a random set of rows (some never read) in two passes, as
    training reads a logical batch, and after each pass adds known "clipped sums" to the rows it read. Returns
    (standardised noise of every read value, of the final table, of the increments between a row's reads;
    whether every step left the rows it read as they were read)."""
    rng = np.random.default_rng(seed)
    table = nn.Embedding(VOCAB, WIDTH)
    table.weight.requires_grad_(False)
    expected = table.weight.detach().clone()  # the table without noise: init minus the clipped sums' steps
    noise = GaussianNoise([], STD, seed=seed)
    lazy = LazyNoisyTable(table, noise, LR, BATCH)
    read, increments, unmoved, last_seen = [], [], [], {}
    for step in range(STEPS):
        noise.start_step()
        step_sums = torch.zeros_like(expected)
        passes = [torch.as_tensor(rng.choice(VOCAB - 5, size=(n, 4))) for n in (2, 1)]  # rows 25..29: never read
        seen = []
        for ids in passes:
            values = table(ids).detach()
            seen.append((ids, values))
            for row, value in zip(ids.flatten().tolist(), values.reshape(-1, WIDTH)):
                residual = value - expected[row]
                if step:
                    read.append(residual / (PARAMETER_STD * np.sqrt(step)))
                if row in last_seen and last_seen[row][0] < step:
                    before_step, before = last_seen[row]
                    increments.append((residual - before) / (PARAMETER_STD * np.sqrt(step - before_step)))
                last_seen[row] = (step, residual)
            # The pass's clipped sums go into the gradient before the next pass reads (a row may be in both).
            rows = torch.unique(ids)
            clipped = torch.as_tensor(rng.normal(size=(len(rows), WIDTH)), dtype=torch.float32)
            lazy.grad.index_add_(0, rows, clipped)
            step_sums.index_add_(0, rows, clipped)
        expected.add_(step_sums, alpha=-LR / BATCH)
        lazy.step()
        # The step's update waits in the gradient until the row's next read: no clipped sum in the weights
        # without its noise, between steps or between a step's passes.
        unmoved += [torch.equal(table.weight[ids], values) for ids, values in seen]
    lazy.finish()
    final = (table.weight.detach() - expected) / (PARAMETER_STD * np.sqrt(STEPS))
    return torch.stack(read).flatten(), final.flatten(), torch.stack(increments).flatten(), all(unmoved)


def test_lazy_table_noise_has_the_dense_distribution():
    parts = [lazy_training(seed) for seed in range(TRIALS)]
    assert all(p[3] for p in parts)
    for name, k in (("read values", 0), ("final table", 1), ("increments between reads", 2)):
        z = torch.cat([p[k] for p in parts]).double()
        # Thousands of standard normals each: the sample variance is within a few percent of 1.
        assert len(z) > 2000, name
        assert float(z.mean()) == pytest.approx(0.0, abs=0.1), name
        assert float(z.var()) == pytest.approx(1.0, abs=0.08), name
    # Never-read rows (25..29) hold the noise of all STEPS steps, like every other row.
    unread = torch.cat([p[1].reshape(VOCAB, WIDTH)[25:].flatten() for p in parts]).double()
    assert float(unread.var()) == pytest.approx(1.0, abs=0.15)


def test_a_dp_cnn_moves_every_table_row_by_the_noise_of_every_step():
    # Noise so large that the clipped sums do not show: every coordinate of the trained model then sits
    # N(0, steps x (lr sigma C / B)^2) from its initial value, table rows read or not.
    data = dp_checks.small_data()
    recipe = TrainingRecipe(epochs=1, batch_size=40, vocab_size=2000, dp=DPSettings(noise_multiplier=1e4))
    fitted = training.fit(data, data.label_names, recipe)
    assert fitted.recipe.optimizer == "plain-sgd"
    torch.manual_seed(fitted.recipe.seed)
    initial = training.build_classifier(fitted.recipe, data.texts, data.label_names).model.state_dict()
    steps = int(np.ceil(len(data) / 40))
    step_std = fitted.recipe.lr * 1e4 * 1.0 / 40
    for name, after in fitted.classifier.model.state_dict().items():
        if after.dtype.is_floating_point and after.numel() >= 1000:
            ratio = float((after - initial[name]).std()) / (step_std * np.sqrt(steps))
            assert ratio == pytest.approx(1.0, abs=0.1), name


@pytest.mark.parametrize(
    "recipe_change, lazy",
    [({}, True), ({"optimizer": "adam"}, False), ({"weight_decay": 0.01}, False), ({"lr": 0.1}, True)],
)
def test_tables_are_lazy_only_where_the_identity_holds(recipe_change, lazy):
    data = dp_checks.small_data()
    recipe = TrainingRecipe(vocab_size=2000, dp=DPSettings(noise_multiplier=1.0), **recipe_change).resolved(400)
    recipe = replace(recipe, lr=recipe.lr or 0.1)  # plain SGD's is set by fit, from the noise
    model = training.build_classifier(recipe, data.texts, data.label_names).model
    update = training.dp_update(model, recipe, 32, "cpu", None)
    try:
        assert bool(update.tables) == lazy
        in_noise = {id(p) for p in update.noise.parameters}
        assert (id(model.embedding.weight) in in_noise) != lazy
        in_optimizer = {id(p) for group in update.optimizer.param_groups for p in group["params"]}
        assert in_optimizer == in_noise
    finally:
        update.close()
