"""The book-keeping clipper must give exactly what a plain per-example loop gives."""

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from privaudit import dpsgd, models
from privaudit.dpsgd import DiracRows, PerExampleClipper
from privaudit.models import ModelConfig, bert_tiny_config, build_model


def reference_clipped_sum(model, ids, mask, targets, max_norm):
    """One backward per example, clip, sum: slow, obviously right."""
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = {n: torch.zeros_like(p) for n, p in trained}
    norms = []
    for i in range(len(targets)):
        model.zero_grad()
        F.cross_entropy(model(ids[i : i + 1], mask[i : i + 1]), targets[i : i + 1]).backward()
        grads = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in trained}
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
        norms.append(norm)
        for n, g in grads.items():
            total[n] += g * min(1.0, max_norm / (norm.item() + 1e-6))
    model.zero_grad()
    return total, torch.stack(norms)


def clipper_clipped_sum(model, ids, mask, targets, max_norm):
    clipper = PerExampleClipper(model, max_norm)
    try:
        with clipper.capture(len(targets)):
            F.cross_entropy(model(ids, mask), targets, reduction="none").sum().backward()
        norms = clipper.clip_and_accumulate()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, norms
    finally:
        clipper.close()


def batch(vocab=40, batch_size=7, length=11, labels=4, seed=0, one_token_text=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch_size, length), generator=g)
    ids[:, 3] = ids[:, 5]  # repeated tokens: the embedding rule must add their rows up
    if one_token_text:  # every window of text 0 alike: max-pooling over windows ties
        ids[0] = ids[0, 0]
    mask = torch.ones_like(ids)
    for row, n in enumerate([11, 6, 2, 9, 1, 11, 4][:batch_size]):
        ids[row, n:] = 0
        mask[row, n:] = 0
    return ids, mask, torch.randint(0, labels, (batch_size,), generator=g)


def assert_same(model, max_norm=0.3, **kw):
    torch.manual_seed(0)
    ids, mask, targets = batch(**kw)
    model.eval()  # no dropout: both sides must see the same function
    expected, expected_norms = reference_clipped_sum(model, ids, mask, targets, max_norm)
    got, norms = clipper_clipped_sum(model, ids, mask, targets, max_norm)
    torch.testing.assert_close(norms, expected_norms, rtol=1e-4, atol=1e-5)
    assert (expected_norms > max_norm).any(), "the test must exercise clipping"
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    assert all(p.requires_grad for n, p in model.named_parameters() if n in expected), "close() restores requires_grad"
    assert not any("forward" in m.__dict__ for m in model.modules()), "close() unwraps every layer's forward"


def test_cnn_matches_per_example_loop():
    torch.manual_seed(1)
    assert_same(build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6)))


def test_cnn_with_tied_windows_matches_per_example_loop():
    # A text of one repeated token has equal windows: max-pooling's gradient goes to the one window max()
    # picked, and the norms must see exactly that gradient.
    torch.manual_seed(1)
    assert_same(build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6)), one_token_text=True)


def test_cnn_with_a_frozen_embedding_matches_per_example_loop():
    # The convolutions' input then needs no gradient: autograd stops at their pooled outputs, all the rule needs.
    torch.manual_seed(1)
    model = build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6))
    model.embedding.weight.requires_grad_(False)
    assert_same(model)


def test_bert_tiny_matches_per_example_loop():
    # BERT broadcasts position embeddings over the batch: the case that breaks Opacus on transformers 5.
    torch.manual_seed(2)
    config = ModelConfig("bert-tiny", 4, 40, 0, hf_config=bert_tiny_config(40, 4, 0, 64, 0.0))
    assert_same(build_model(config))


class PackedWithoutRelu(nn.Module):
    """Max-pooled packed convolutions of two widths with no ReLU after them: a channel whose valid windows are
    all negative takes its maximum from the zero row (a constant), whose output gradient then reaches no weight."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(40, 8, padding_idx=0)
        self.convs = nn.ModuleList(models.PackedConv1d(8, 5, k) for k in (2, 3))
        self.out = nn.Linear(10, 4)

    def forward(self, ids, mask):
        x = (self.embedding(ids) * mask.unsqueeze(-1)).transpose(1, 2)
        packing = models.Packing(mask.sum(1), x.shape[2], 3)
        return self.out(torch.cat([conv(x, packing) for conv in self.convs], dim=1))


def test_packed_convolutions_whose_maximum_is_the_zero_row_match_per_example_loop():
    torch.manual_seed(3)
    model = PackedWithoutRelu()
    ids, mask, _ = batch()
    x = (model.embedding(ids) * mask.unsqueeze(-1)).transpose(1, 2)
    packing = models.Packing(mask.sum(1), x.shape[2], 3)
    for conv in model.convs:
        conv(x, packing)
        zero_row = packing.size - conv.kernel_size[0] + 1
        assert (packing.max_rows[conv] == zero_row).any(), "the test must reach the zero row"
    assert_same(model)


class TwoLayerNorms(nn.Module):
    """One LayerNorm called as usual (the clipper takes its mean and 1/std from the forward) and one called by
    keyword (the rule normalises again): both must give the per-example loop's gradients."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(40, 8, padding_idx=0)
        self.first, self.second = nn.LayerNorm(8), nn.LayerNorm(8)
        self.out = nn.Linear(8, 4)
        with torch.no_grad():  # not the initial unit weights and zero biases
            for norm in (self.first, self.second):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)

    def forward(self, ids, mask):
        h = self.second(input=torch.tanh(self.first(self.embedding(ids))))
        return self.out((h * mask.unsqueeze(-1)).sum(1))


def test_layer_norms_match_per_example_loop():
    torch.manual_seed(4)
    assert_same(TwoLayerNorms())


class ReadsTwoPositions(TwoLayerNorms):
    """Only positions 2 and 4 reach the output, as only [CLS] does in a BERT's last layer: the gradient is zero
    at every other position, which the rules drop; what they keep must be those two, not the first two."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(8, 8)

    def forward(self, ids, mask):
        h = self.mix(self.second(input=torch.tanh(self.first(self.embedding(ids)))))
        return self.out(h[:, [2, 4]].sum(1))


def test_layers_whose_gradient_reaches_few_positions_match_per_example_loop():
    torch.manual_seed(4)
    assert_same(ReadsTwoPositions())


def test_layers_stop_searching_for_positions_only_after_searches_that_found_none():
    # Exact either way (a position is dropped only where a search found it without gradient); a search costs a
    # few operations a layer, so a layer whose first searches find every position live stops. Only positions 2
    # and 4 reach ReadsTwoPositions' output: its LayerNorms keep searching, and dropping, step after step;
    # TwoLayerNorms' stop (the longest text fills every position). Every step matches the per-example loop.
    torch.manual_seed(4)
    ids, mask, targets = batch()
    for model, keeps_searching in ((ReadsTwoPositions(), True), (TwoLayerNorms(), False)):
        model.eval()
        expected, _ = reference_clipped_sum(model, ids, mask, targets, 0.3)
        clipper = PerExampleClipper(model, 0.3)
        try:
            for _ in range(dpsgd._POSITION_SEARCHES + 2):
                for p in clipper.parameters:
                    p.grad = None
                with clipper.capture(len(targets)):
                    F.cross_entropy(model(ids, mask), targets, reduction="none").sum().backward()
                clipper.clip_and_accumulate()
                for name, p in model.named_parameters():
                    torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
            norms = [layer for layer in clipper.layers if isinstance(layer.module, nn.LayerNorm)]
            assert len(norms) == 2 and all(layer.next_call_searches() is keeps_searching for layer in norms)
        finally:
            clipper.close()


class ScaledPooling(nn.Module):
    """A layer with a parameter no rule knows: handled by the torch.func (vmap) fallback."""

    def __init__(self, width):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, width))
        self.shift = nn.Parameter(torch.zeros(width) + 0.1)

    def forward(self, x):
        return torch.tanh(x * self.scale + self.shift)


class ToyModel(nn.Module):
    """Conv1d with padding, a shared linear layer used twice, and an unknown layer type."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(40, 8, padding_idx=0)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.shared = nn.Linear(8, 8)
        self.pool = ScaledPooling(8)
        self.head = nn.Linear(8, 4)

    def forward(self, ids, mask):
        h = self.conv(self.embedding(ids).transpose(1, 2)).transpose(1, 2)
        h = self.shared(torch.relu(self.shared(self.norm(h))))
        h = self.pool(h) * mask.unsqueeze(-1)
        return self.head(h.sum(1))


def test_generic_fallback_and_layers_called_twice():
    torch.manual_seed(3)
    assert_same(ToyModel())


def test_noise_free_dp_step_with_huge_clip_norm_is_the_ordinary_gradient():
    torch.manual_seed(4)
    model = build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6)).eval()
    ids, mask, targets = batch()
    F.cross_entropy(model(ids, mask), targets, reduction="sum").backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got, _ = clipper_clipped_sum(model, ids, mask, targets, max_norm=1e9)
    for name in plain:
        torch.testing.assert_close(got[name], plain[name], rtol=1e-4, atol=1e-6)


def test_close_gives_back_a_forward_the_module_had_of_its_own():
    layer = nn.Linear(3, 2)
    own = layer.forward
    layer.forward = lambda x: own(x) * 2.0  # e.g. another library's wrapper
    wrapper = layer.forward
    clipper = PerExampleClipper(layer, 1.0)
    x = torch.ones(4, 3)
    with clipper.capture(4):
        layer(x).sum().backward()
    assert len(clipper.layers[0].calls) == 1, "the clipper sees the call through the module's own wrapper"
    clipper.close()
    assert layer.forward is wrapper
    torch.testing.assert_close(layer(x), own(x) * 2.0)


def test_rejects_non_positive_clip_norm():
    with pytest.raises(ValueError):
        PerExampleClipper(nn.Linear(2, 2), 0.0)


def test_a_clipped_step_keeps_nothing_of_its_batch_alive(monkeypatch):
    # A tensor hook that held the call (which holds the batch's packing, which holds the hooked tensor)
    # made a cycle through autograd's C++ side, which no collection frees: every DP step's graph stayed
    # alive, and a shadow worker training DP-SGD on SNIPS grew to 10 GB and was killed.
    packings = weakref.WeakSet()

    class RecordedPacking(models.Packing):
        def __init__(self, *args):
            super().__init__(*args)
            packings.add(self)

    monkeypatch.setattr(models, "Packing", RecordedPacking)
    model = build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6))
    ids, mask, targets = batch()
    clipper = PerExampleClipper(model, 1.0)
    try:
        for _ in range(2):
            with clipper.capture(len(targets)):
                F.cross_entropy(model(ids, mask), targets, reduction="none").sum().backward()
            clipper.clip_and_accumulate()
    finally:
        clipper.close()
    gc.collect()
    assert len(packings) == 0


def test_dirac_rows_land_at_row_major_positions_in_a_tap_major_gradient():
    # A packed convolution's weight (and so its gradient) is laid out tap by tap; a gradient canary's flat
    # position still counts in the weight's row-major order, as the audit reads it back.
    conv = models.PackedConv1d(3, 2, 2)
    assert not conv.weight.is_contiguous()
    grads = [torch.zeros_like(conv.weight)]
    rows = DiracRows(param=torch.tensor([0, 0]), index=torch.tensor([1, 7]), magnitude=torch.tensor([2.0, -3.0]))
    rows.add_to(grads, torch.tensor([0.5, 1.0]))
    expected = torch.zeros(12)
    expected[1], expected[7] = 1.0, -3.0
    torch.testing.assert_close(grads[0].reshape(-1), expected)


def test_only_positions_without_any_gradient_are_dropped():
    # A position is dropped only when every example's gradient there is exactly zero: one that is negative
    # throughout, NaN, or non-zero for a single example stays.
    g = torch.zeros(3, 6, 4)
    g[:, 0] = 1.0
    g[1, 1, 2] = -2.0  # its largest value is zero
    g[2, 3, 1] = float("nan")
    g[0, 4, 3] = 1e-30
    positions = torch.arange(6).expand(3, 6)
    kept_g, kept = dpsgd._at_positions_with_gradient(g, positions)
    assert kept[0].tolist() == [0, 1, 3, 4]
    torch.testing.assert_close(kept_g, g[:, [0, 1, 3, 4]], equal_nan=True)
    every, first_two = g[:, [0, 1]], positions[:, :2]  # both positions have a gradient: nothing is dropped
    unchanged = dpsgd._at_positions_with_gradient(every, first_two)
    assert unchanged[0] is every and unchanged[1] is first_two
