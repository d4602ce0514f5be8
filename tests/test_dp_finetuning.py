"""DP fine-tuning (issue 16): logical batches accumulated over physical passes, the DP defaults, which
parameters train, DP-AdamBC, and `privaudit train --compare-nondp`."""

import numpy as np
import pytest
import torch

from privaudit import training
from privaudit.dpsgd import GaussianNoise, PerExampleClipper
from privaudit.optim import DPAdamBC
from privaudit.recipe import DPSettings, TrainingRecipe
from privaudit.source import demo_source, load_source
from privaudit.tokenization import encode

TINY = load_source(demo_source(size=200, seed=5))


def privatised_gradient(model, chunks, expected_batch, seed=7):
    """The gradient one dp_step hands the optimizer (seeded noise: the same in every call)."""
    clipper = PerExampleClipper(model, max_grad_norm=0.5)
    noise = GaussianNoise(clipper.parameters, std=0.5, seed=seed)
    seen = []
    try:
        optimizer = torch.optim.SGD(clipper.parameters, lr=0.0)
        training.dp_step(
            clipper,
            noise,
            model,
            optimizer,
            chunks,
            expected_batch,
            observe=lambda: seen.append([p.grad.clone() for p in clipper.parameters]),
        )
    finally:
        clipper.close()
    return seen[0]


def test_a_logical_batch_accumulated_over_passes_is_one_dp_step():
    recipe = TrainingRecipe(arch="bert-tiny", dropout=0.0).resolved(len(TINY))
    torch.manual_seed(0)
    classifier = training.build_classifier(recipe, TINY.texts, TINY.label_names)
    model = classifier.model.eval()
    ids, mask = encode(classifier.tokenizer, TINY.texts[:24], 32, classifier.config.pad_id)
    targets = classifier.label_ids(TINY.labels[:24])
    whole = privatised_gradient(model, [(ids, mask, targets)], 24)
    passes = [(ids[k : k + 5], mask[k : k + 5], targets[k : k + 5]) for k in range(0, 24, 5)]
    accumulated = privatised_gradient(model, passes, 24)
    # Noise drawn once per step, every pass's clipped sum added to it: the same gradient to float tolerance
    # (noise drawn per pass, or a pass overwriting the last, would differ by the noise's whole size).
    for a, b in zip(whole, accumulated):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_plain_sgd_from_the_undivided_sum_is_torchs_sgd_step():
    # NoisedSumSGD's fused step (no observer: W -= lr / B x (noise + clipped sum) in one add) and the 1/B pass
    # then torch's SGD step (taken when an observer reads the gradient) must move the parameters alike.
    recipe = TrainingRecipe(arch="cnn", dropout=0.0).resolved(len(TINY))
    moved = []
    for observe in (None, lambda: None):
        torch.manual_seed(0)
        classifier = training.build_classifier(recipe, TINY.texts, TINY.label_names)
        model = classifier.model.eval()
        ids, mask = encode(classifier.tokenizer, TINY.texts[:24], 32, classifier.config.pad_id)
        targets = classifier.label_ids(TINY.labels[:24])
        clipper = PerExampleClipper(model, max_grad_norm=0.5)
        before = [p.detach().clone() for p in clipper.parameters]
        noise = GaussianNoise(clipper.parameters, std=0.5, seed=3)
        try:
            optimizer = training.NoisedSumSGD(noise, lr=0.3)
            training.dp_step(clipper, noise, model, optimizer, [(ids, mask, targets)], 24, observe=observe)
        finally:
            clipper.close()
        moved.append([p.detach() - b for p, b in zip(clipper.parameters, before)])
    assert all(float(d.abs().max()) > 0 for d in moved[0])
    for fused, stepped in zip(*moved):
        torch.testing.assert_close(fused, stepped, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch", ["cnn", "bert-tiny"])
def test_ignored_padding_rows_leave_the_dp_step_unchanged(arch):
    recipe = TrainingRecipe(arch=arch, dropout=0.0).resolved(len(TINY))
    torch.manual_seed(0)
    classifier = training.build_classifier(recipe, TINY.texts, TINY.label_names)
    model = classifier.model.eval()
    ids, mask = encode(classifier.tokenizer, TINY.texts[:21], 32, classifier.config.pad_id)
    chunk = (ids, mask, classifier.label_ids(TINY.labels[:21]))
    padded = training.with_ignored_rows(chunk, 64)
    assert len(padded[2]) == 32 and (padded[2] == training.IGNORED).sum() == 11
    for a, b in zip(privatised_gradient(model, [chunk], 21), privatised_gradient(model, [padded], 21)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert len(training.with_ignored_rows(chunk, 24)[2]) == 24  # never past the physical batch


def test_training_passes_never_exceed_the_physical_batch(monkeypatch):
    sizes = []
    real_step = training.dp_step

    def recording_step(clipper, noise, model, optimizer, chunks, *args, **kwargs):
        sizes.append([int((targets != training.IGNORED).sum()) for _, _, targets in chunks])
        assert all(len(targets) <= 8 for _, _, targets in chunks)
        return real_step(clipper, noise, model, optimizer, chunks, *args, **kwargs)

    monkeypatch.setattr(training, "dp_step", recording_step)
    recipe = TrainingRecipe(epochs=3, batch_size=40, physical_batch_size=8, dp=DPSettings(noise_multiplier=1.0))
    fitted = training.fit(TINY, TINY.label_names, recipe)
    assert max(max(step, default=0) for step in sizes) <= 8
    per_step = [sum(step) for step in sizes]
    assert len(per_step) == fitted.privacy.steps == 3 * 5
    # Poisson batches of expected size 40 (q = 0.2 of 200), not 8: the accountant's q is the logical one.
    assert fitted.privacy.sample_rate == pytest.approx(0.2) and 25 < np.mean(per_step) < 55


def test_a_step_of_several_passes_takes_its_examples_shortest_first(monkeypatch):
    # Each pass pads to its own longest text, not the step's: on SNIPS bert-tiny's default DP recipe (1,024
    # in passes of 64) trained in 0.67x the time. The step's gradient is the same sum (the test above).
    steps = []
    real_step = training.dp_step

    def recording_step(clipper, noise, model, optimizer, chunks, *args, **kwargs):
        steps.append([(mask.shape[1], mask[targets != training.IGNORED].sum(1)) for _, mask, targets in chunks])
        return real_step(clipper, noise, model, optimizer, chunks, *args, **kwargs)

    monkeypatch.setattr(training, "dp_step", recording_step)
    recipe = TrainingRecipe(epochs=1, batch_size=80, physical_batch_size=16, dp=DPSettings(noise_multiplier=1.0))
    training.fit(TINY, TINY.label_names, recipe)
    several = [step for step in steps if len(step) > 1]
    assert several
    for step in several:
        lengths = torch.cat([own for _, own in step])
        assert torch.equal(lengths, lengths.sort().values)  # shortest first, across the step's passes
        assert all(padded == int(own.max()) for padded, own in step)  # each pass padded to its own longest


def test_dp_defaults_follow_the_architecture_and_non_dp_ones_are_unchanged():
    snips_size = 6892
    for arch in ("cnn", "bert-tiny"):
        plain = TrainingRecipe(arch=arch).resolved(snips_size)
        assert (plain.epochs, plain.batch_size, plain.lr, plain.optimizer) == (20, 64, 1e-3, "adam")
    cnn = TrainingRecipe(dp=DPSettings(target_epsilon=8)).resolved(snips_size)
    # Plain SGD, its learning rate set with the calibrated noise: the steps Adam at 1e-3 would take.
    assert (cnn.batch_size, cnn.lr, cnn.optimizer) == (64, None, "plain-sgd")
    fitted = training.fit(TINY, TINY.label_names, TrainingRecipe(epochs=1, dp=DPSettings(noise_multiplier=2.0)))
    assert fitted.recipe.lr == pytest.approx(1e-3 * fitted.recipe.batch_size / 2.0)
    assert TrainingRecipe(lr=0.5, dp=DPSettings(noise_multiplier=2.0)).resolved(snips_size).lr == 0.5
    bert = TrainingRecipe(arch="bert-tiny", dp=DPSettings(target_epsilon=8)).resolved(snips_size)
    assert bert.batch_size == 1024 and bert.physical_batch_size == 64 and bert.optimizer == "adam-bc"
    # A small data set's default logical batch is a quarter of it (never under the physical batch).
    assert TrainingRecipe(arch="bert-tiny", dp=DPSettings(target_epsilon=8)).resolved(1000).batch_size == 250
    # What the user sets stays; without DP the rest falls back to the non-DP defaults.
    mine = TrainingRecipe(arch="bert-tiny", lr=5e-3, dp=DPSettings(target_epsilon=8))
    assert mine.resolved(snips_size).lr == 5e-3
    assert mine.without_dp().resolved(snips_size).batch_size == 64


def test_trainable_top_layers_freeze_everything_below_them():
    recipe = TrainingRecipe(arch="bert-tiny", epochs=2, seed=4, trainable="top:1", dp=DPSettings(noise_multiplier=1.0))
    fitted = training.fit(TINY, TINY.label_names, recipe)
    torch.manual_seed(4)
    initial = training.build_classifier(fitted.recipe, TINY.texts, TINY.label_names).model.state_dict()
    after = fitted.classifier.model.state_dict()
    changed = {name for name in after if not torch.equal(after[name], initial[name])}
    top = ("hf.bert.encoder.layer.1.", "hf.bert.pooler", "hf.classifier")
    assert changed and all(name.startswith(top) for name in changed)
    assert any(name.startswith("hf.bert.encoder.layer.1.") for name in changed)
    assert all(p.requires_grad for p in fitted.classifier.model.parameters()), "restored after training"


def test_trainable_head_trains_only_the_classification_layer_and_noises_only_it(monkeypatch):
    noised = []
    real_noise = training.GaussianNoise

    def recording_noise(parameters, *args, **kwargs):
        noised.append(sum(p.numel() for p in parameters))
        return real_noise(parameters, *args, **kwargs)

    monkeypatch.setattr(training, "GaussianNoise", recording_noise)
    recipe = TrainingRecipe(epochs=2, trainable="head", dp=DPSettings(noise_multiplier=1.0))
    fitted = training.fit(TINY, TINY.label_names, recipe)
    head = fitted.classifier.model.classifier
    assert noised == [head.weight.numel() + head.bias.numel()]


def test_adam_bc_restores_adams_step_where_dp_noise_dominates():
    """A coordinate whose gradient (1e-3) is far below the noise (std 1e-2): Adam's step shrinks ~10x (its
    second moment is the noise's variance), DP-AdamBC's stays near Adam's noiseless step."""
    torch.manual_seed(0)
    phi = 1e-4
    moved = {}
    for name in ("adam", "adam-bc"):
        w = torch.zeros(20_000, requires_grad=True)
        opt = torch.optim.Adam([w], lr=1e-3) if name == "adam" else DPAdamBC([w], lr=1e-3, noise_variance=phi)
        for _ in range(300):
            w.grad = torch.full_like(w, 1e-3) + torch.randn_like(w) * phi**0.5
            opt.step()
        moved[name] = -w.detach().mean().item()
    assert moved["adam"] < 0.05 and moved["adam-bc"] > 0.15  # noiseless Adam would move 0.3


def test_adam_bc_without_noise_is_adam():
    torch.manual_seed(0)
    a, b = torch.randn(50, requires_grad=True), None
    b = a.detach().clone().requires_grad_(True)
    adam, bc = torch.optim.Adam([a], lr=1e-2), DPAdamBC([b], lr=1e-2, noise_variance=0.0)
    for _ in range(20):
        g = torch.randn(50)
        a.grad, b.grad = g.clone(), g.clone()
        adam.step(), bc.step()
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cli_compare_nondp_shows_both_accuracies_and_saves_neither_baseline(run_cli, tiny_csv, tmp_path):
    out = tmp_path / "dp.pt"
    args = ["train", tiny_csv, "--out", out, "--epochs", "2", "--dp", "--target-epsilon", "8", "--compare-nondp"]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "without DP-SGD" in stdout and "DP / non-DP held-out accuracy" in stdout
    assert "with DP-SGD:" in stdout
    code, info, err = run_cli("info", out)
    assert code == 0 and "with DP-SGD:" not in info and "DP / non-DP" not in info


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compare-nondp"], "--compare-nondp needs --dp"),
        (["--trainable", "top:2"], "needs a transformer"),
        (["--trainable", "bottom"], "unknown --trainable"),
        (["--arch", "bert-tiny", "--trainable", "top:3"], "has 2 transformer layers"),
        (["--physical-batch-size", "0"], "physical-batch-size must be at least 1"),
    ],
)
def test_cli_refuses_bad_fine_tuning_options(run_cli, tiny_csv, tmp_path, args, message):
    code, _, err = run_cli("train", tiny_csv, "--out", tmp_path / "m.pt", "--epochs", "1", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


def test_shadows_and_sweep_points_train_with_the_targets_resolved_recipe():
    import math

    from privaudit.sweep import recipe_at

    target = TrainingRecipe(arch="bert-tiny", dp=DPSettings(target_epsilon=8)).resolved(6892)
    # A shadow trains on another number of examples: the recorded recipe must not change with it.
    assert target.resolved(3446) == target and target.resolved(100) == target
    base = TrainingRecipe(arch="bert-tiny")
    dp_point, plain_point = recipe_at(base, 8.0).resolved(6892), recipe_at(base, math.inf).resolved(6892)
    assert (dp_point.batch_size, dp_point.optimizer) == (1024, "adam-bc")
    assert (plain_point.batch_size, plain_point.optimizer) == (64, "adam")
