"""Text classifiers, all behind one small interface.

Every model maps (input_ids, attention_mask) to logits, and also accepts input embeddings directly
through `forward_embeds`: the white-box inversion attack (ModIvA) optimises over a relaxed token space
and feeds soft embeddings through that path. `embedding_layer()` gives the token embedding matrix.

Architectures:
- `cnn`: word embeddings, convolutions of widths 3/4/5, max-pool over time, dropout, linear layer
  (Kim 2014; the classic NLU intent classifier, fast on a CPU).
- `bert-tiny`: `transformers` BertForSequenceClassification from a small config (2 layers, hidden 128).
- `hf:PATH`: any local Hugging Face sequence-classification model directory, fine-tuned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PrivauditError


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's structure (the weights live beside it in the bundle)."""

    arch: str  # "cnn", "bert-tiny" or "hf"
    num_labels: int
    vocab_size: int
    pad_id: int
    max_len: int = 64
    dropout: float = 0.1
    embed_dim: int = 128
    num_filters: int = 100
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    hf_config: dict | None = field(default=None)  # transformers config dict, for bert-tiny and hf

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kernel_sizes"] = list(self.kernel_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["kernel_sizes"] = tuple(d["kernel_sizes"])
        return cls(**d)


class Packing:
    """Where a batch's texts sit when packed end to end, for convolutions that skip the padding.

    Text i takes n_i = max(length_i, widest kernel) positions: the padding a text always gets. A
    window of width k is valid if it starts at most max(length_i, k) - k into its text, as if the text
    alone were padded; every other window (past the text, or crossing into the next) reads a zero."""

    def __init__(self, lengths: torch.Tensor, padded_len: int, min_len: int):
        n = lengths.clamp(min=min_len)
        self.lengths, self.padded_len = lengths, padded_len
        self.offsets = torch.cumsum(n, 0) - n
        self.size = int(n.sum())
        self.text = torch.repeat_interleave(torch.arange(len(n), device=n.device), n)  # each position's text
        self.positions = self.text * padded_len + torch.arange(self.size, device=n.device) - self.offsets[self.text]
        self._windows: dict[int, torch.Tensor] = {}
        self._packed: tuple[torch.Tensor, torch.Tensor] | None = None
        self._scaled: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._row_scales: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sq_norms: tuple[torch.Tensor, torch.Tensor] | None = None
        # What DP-SGD's clipper needs of each PackedConv1d: the (B, C_out) packed rows of its maxima, and
        # (once backward has run) the gradient of its packed output, (P - k + 2, C_out) (window_max).
        self.max_rows: dict[nn.Module, torch.Tensor] = {}
        self.output_grads: dict[nn.Module, torch.Tensor] = {}

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) padded -> (P, C): the texts' positions end to end, one row each. Gathered once for
        the batch's input, which every convolution (and DP-SGD's clipped sums) reads."""
        if self._packed is None or self._packed[0] is not x:
            packed = x.transpose(1, 2).reshape(-1, x.shape[1]).index_select(0, self.positions)
            self._packed = (x, packed)
        return self._packed[1]

    def pack_scaled(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """pack(x) with text i's rows times scale[i]: DP-SGD's clipped sum of every convolution over the
        batch is then one weight gradient of these rows (made once for all of them) and the unscaled
        output gradient, since a valid window's rows all belong to its own text."""
        if self._scaled is None or self._scaled[0] is not x or self._scaled[1] is not scale:
            self._scaled = (x, scale, self.pack(x) * self.row_scales(scale).unsqueeze(1))
        return self._scaled[2]

    def row_scales(self, scale: torch.Tensor) -> torch.Tensor:
        """(P,): each packed row's text's scale[i]."""
        if self._row_scales is None or self._row_scales[0] is not scale:
            self._row_scales = (scale, scale[self.text])
        return self._row_scales[1]

    def window_sq_norms(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(P - k + 1,): the squared norm of each packed window of width k, sum_j ||rows[r + j]||^2, from
        which DP-SGD's clipper takes a max-pooled convolution's per-example norms."""
        if self._sq_norms is None or self._sq_norms[0] is not x:
            self._sq_norms = (x, self.pack(x).pow(2).sum(1))
        return self._sq_norms[1].unfold(0, k, 1).sum(1)  # (P - k + 1, k) windows, a view

    def windows(self, k: int) -> torch.Tensor:
        """(B, T - k + 1): where each text's windows start in the packed output; invalid ones point
        one past its end (a zero row)."""
        if k not in self._windows:
            start = torch.arange(self.padded_len - k + 1, device=self.offsets.device)[None, :]
            valid = start <= (self.lengths.clamp(min=k) - k)[:, None]
            self._windows[k] = torch.where(valid, self.offsets[:, None] + start, self.size - k + 1)
        return self._windows[k]


class PackedConv1d(nn.Conv1d):
    """A Conv1d over a padded batch (B, C, T), max-pooled over each text's windows: (B, C_out).

    The texts are packed end to end first, so the work is that of their lengths, not of the batch's
    longest text (on SNIPS, half the positions of a padded batch are padding). Valid windows get the
    ordinary convolution; the rest read zero. The max's gradient goes to one window per text and channel
    (window_max), written straight into the packed rows: no padded gradient is ever built. Same parameters
    as nn.Conv1d (bundles load either way); DP-SGD's clipper has a rule for it (privaudit.dpsgd). Stride 1,
    no padding, no dilation, one group.

    The weight keeps nn.Conv1d's shape (C_out, C_in, k) but is laid out tap by tap in memory, as a
    contiguous (k, C_in, C_out): the shifted products read each tap's (C_in, C_out) block as it is, and the
    weight gradient they make is already in the parameter's layout (autograd, optimizers and DP-SGD's
    noise buffer follow a parameter's layout), so no step copies the weight or its gradient to transpose it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        self.weight = nn.Parameter(self.weight.detach().permute(2, 1, 0).contiguous().permute(2, 1, 0))

    def forward(self, x: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """With `packing`: (B, C_out), the max over each text's windows. Without: the padded convolution,
        (B, C_out, T - k + 1), for tools that hook a plain Conv1d call (Opacus)."""
        if packing is None:
            return super().forward(x)
        out = shifted_matmul_conv(packing.pack(x), self.weight, self.bias)  # (P - k + 2, C_out)
        pooled, rows = window_max(out, packing.windows(self.kernel_size[0]), packing.output_grads, self)
        packing.max_rows[self] = rows
        return pooled


class _WindowMax(torch.autograd.Function):
    """The max over each text's windows of packed rows, and which row each maximum is.

    Forward: the rows of text i's windows gathered as (B, T', C) (invalid windows read the zero row), and
    their max over T'. Backward: each (text, channel)'s gradient added to the one row its max came from,
    in the packed layout the convolution's backward reads (ties: the first maximal window, a valid subgradient
    that DP-SGD's per-example norms then see exactly). The padded (B, C, T') gradient that a gather and an
    amax would differentiate through, four passes over it, is never made. The backward also leaves that
    packed gradient in `grads[key]` (DP-SGD's clipped sums read it; a plain tensor, no graph)."""

    @staticmethod
    def forward(ctx, out, index, grads, key):
        gathered = out.index_select(0, index.reshape(-1)).view(*index.shape, out.shape[1])  # (B, T', C)
        # The same maxima and first-maximum indices as gathered.max(dim=1), by adaptive max pooling's kernel:
        # on the CPU max(dim=1) with indices took 7x as long (SNIPS CNN, 64 x 18..40 x 100, one thread).
        pooled, window = F.adaptive_max_pool1d(gathered.transpose(1, 2), 1, return_indices=True)
        pooled, window = pooled.squeeze(2), window.squeeze(2)
        rows = index.gather(1, window)  # (B, C)
        ctx.save_for_backward(rows)
        ctx.packed_rows = out.shape[0]
        ctx.grads, ctx.key = grads, key
        ctx.mark_non_differentiable(rows)
        return pooled, rows

    @staticmethod
    def backward(ctx, grad_pooled, grad_rows):
        (rows,) = ctx.saved_tensors
        grad = grad_pooled.new_zeros(ctx.packed_rows, grad_pooled.shape[1])
        # Several texts' maxima may be the shared zero row (a constant): added, then unused.
        grad.scatter_add_(0, rows, grad_pooled)
        ctx.grads[ctx.key] = grad
        return grad, None, None, None


def window_max(
    out: torch.Tensor, index: torch.Tensor, grads: dict, key: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P', C) packed rows, (B, T') each text's window rows -> (B, C) maxima and (B, C) their rows; the
    backward leaves out's gradient in grads[key]."""
    return _WindowMax.apply(out, index, grads, key)


class _ShiftedMatmulConv(torch.autograd.Function):
    """conv1d of one sequence of rows, as k shifted matrix products: out[t] = sum_j rows[t + j] W_j^T + b.

    The same arithmetic as F.conv1d, but each product is one GEMM on contiguous row blocks. oneDNN's
    convolution builds a kernel for every new shape, and packed batches have a new length every step:
    on the SNIPS CNN's packed batches (2-core CPU) the forward took 0.94 ms against 1.69 ms (convolution,
    transpose, pad) and the input gradient 0.79 against 1.51 ms (README, "Packed convolutions").
    The output has one extra row, zero, that invalid windows read."""

    @staticmethod
    def forward(ctx, rows, weight, bias):
        k, width = weight.shape[2], rows.shape[0] - weight.shape[2] + 1
        taps = weight.detach().permute(2, 1, 0).contiguous()  # (k, C_in, C_out): a copy only if not tap-major
        out = rows.new_empty(width + 1, weight.shape[0])
        out[width].zero_()
        body = out[:width]
        if bias is None:
            torch.mm(rows[:width], taps[0], out=body)
        else:
            torch.addmm(bias.detach(), rows[:width], taps[0], out=body)
        for j in range(1, k):
            body.addmm_(rows[j : j + width], taps[j])
        ctx.save_for_backward(rows, taps)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        rows, taps = ctx.saved_tensors
        k, width = taps.shape[0], grad_out.shape[0] - 1
        g = grad_out[:width]  # the zero row is a constant
        grad_rows = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_rows = torch.zeros_like(rows)
            for j in range(k):
                grad_rows[j : j + width].addmm_(g, taps[j].t())
        if ctx.needs_input_grad[1]:
            grad_weight = shifted_matmul_weight_grad(rows, g, k).permute(2, 1, 0)  # the weight's own layout
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g.sum(0)
        return grad_rows, grad_weight, grad_bias


def shifted_matmul_conv(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(P, C_in) rows, (C_out, C_in, k) weight -> (P - k + 2, C_out): the stride-1 convolution of the
    rows, then one zero row."""
    return _ShiftedMatmulConv.apply(rows, weight, bias)


def shifted_matmul_weight_grad(
    rows: torch.Tensor, grad: torch.Tensor, k: int, add_to: torch.Tensor | None = None
) -> torch.Tensor:
    """The weight gradient of shifted_matmul_conv for an output gradient (P - k + 1, C_out), as
    (k, C_in, C_out): tap j is rows[j : j + P - k + 1]^T grad. `add_to` (k, C_in, C_out): added into it
    instead, in place, and returned."""
    width = grad.shape[0]
    if add_to is not None:
        for j in range(k):
            add_to[j].addmm_(rows[j : j + width].t(), grad)
        return add_to
    out = rows.new_empty(k, rows.shape[1], grad.shape[1])
    for j in range(k):
        torch.mm(rows[j : j + width].t(), grad, out=out[j])
    return out


class CNNClassifier(nn.Module):
    """Word-CNN intent classifier whose output for a text never depends on how much it was padded."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.convs = nn.ModuleList(PackedConv1d(config.embed_dim, config.num_filters, k) for k in config.kernel_sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.num_filters * len(config.kernel_sizes), config.num_labels)
        self.min_len = max(config.kernel_sizes)
        self.packed = True  # False: convolve the padded batch, windows masked (same logits, more work)

    def embedding_layer(self) -> nn.Embedding:
        return self.embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_embeds(self.embedding(input_ids), attention_mask)

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Zero the padding so that soft (relaxed) inputs behave exactly like padded token ids.
        embeds = embeds * attention_mask.unsqueeze(-1).to(embeds.dtype)
        if embeds.shape[1] < self.min_len:
            embeds = F.pad(embeds, (0, 0, 0, self.min_len - embeds.shape[1]))
        x = embeds.transpose(1, 2)
        # Each text counts as padded to max(length, kernel width); its other windows read zero, and
        # relu(max(h, 0)) = relu(max h), so batch-mates never change its logits. The ReLU is monotonic, so
        # it runs after the max: relu(max h) = max relu(h), values and gradients, over (B, C) rather than
        # every window.
        lengths = attention_mask.sum(1).long()
        if self.packed:
            packing = Packing(lengths, x.shape[2], self.min_len)
            pooled = [F.relu(conv(x, packing)) for conv in self.convs]
        else:
            pooled = []
            for conv in self.convs:
                h = conv(x)
                k = conv.kernel_size[0]  # type: ignore[index]  # nn.Conv1d's, typed loosely by torch
                valid = torch.arange(h.shape[2], device=h.device)[None, :] <= (lengths.clamp(min=k) - k)[:, None]
                pooled.append(F.relu(h.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=2)))
        return self.classifier(self.dropout(torch.cat(pooled, dim=1)))


class HFClassifier(nn.Module):
    """A transformers sequence-classification model behind the common interface."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def embedding_layer(self) -> nn.Embedding:
        return self.hf.get_input_embeddings()  # type: ignore[operator]  # nn.Module attributes type as Tensor

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hf(inputs_embeds=embeds, attention_mask=attention_mask).logits


def trainable_parameters(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """The parameters that `trainable` ("all", "head" or "top:K") trains, in the model's order.

    "head" is the classification layer: the CNN's final linear layer, or what a transformers model has
    outside its base model (BERT's classifier; DistilBERT's pre-classifier and classifier). "top:K" is
    the last K blocks of the transformer's encoder and every parameter registered after them (BERT: the
    pooler and the classifier), found as the encoder's list of num_hidden_layers blocks."""
    params = list(model.parameters())
    if trainable == "all":
        return params
    if isinstance(model, CNNClassifier):
        assert trainable == "head", "TrainingRecipe.validate refuses top:K for the cnn"
        return list(model.classifier.parameters())
    assert isinstance(model, HFClassifier), "every model is a CNNClassifier or an HFClassifier"
    if trainable == "head":
        base = {id(p) for p in model.hf.base_model.parameters()}  # type: ignore[union-attr]  # transformers' property
        return [p for p in params if id(p) not in base]
    k = int(trainable.removeprefix("top:"))
    blocks = _encoder_blocks(model.hf)
    if k > len(blocks):
        raise PrivauditError(f"--trainable top:{k}: the model has {len(blocks)} transformer layers")
    first = id(next(blocks[len(blocks) - k].parameters()))
    start = next(i for i, p in enumerate(params) if id(p) == first)
    return params[start:]


def _encoder_blocks(hf_model: nn.Module) -> nn.ModuleList:
    layers = hf_model.config.num_hidden_layers  # type: ignore[union-attr]  # a transformers config
    for _, module in hf_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == layers and layers > 0:
            return module
    raise PrivauditError(
        "--trainable top:K: cannot find the model's transformer layers (a list of num_hidden_layers blocks)"
    )


def bert_tiny_config(vocab_size: int, num_labels: int, pad_id: int, max_len: int, dropout: float) -> dict:
    """A 2-layer, 128-wide BERT (the size of Turc et al.'s bert-tiny), built locally from this config."""
    from transformers import BertConfig

    return BertConfig(  # type: ignore[call-arg]  # PretrainedConfig takes num_labels through **kwargs
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=max(128, max_len),
        num_labels=num_labels,
        pad_token_id=pad_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    ).to_dict()


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model of the given structure (use the current torch seed)."""
    if config.arch == "cnn":
        return CNNClassifier(config)
    if config.arch in ("bert-tiny", "hf"):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        assert config.hf_config is not None  # set for every Hugging Face architecture
        settings = dict(config.hf_config)
        hf_config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        hf_config._attn_implementation = "sdpa"
        return HFClassifier(AutoModelForSequenceClassification.from_config(hf_config))
    raise ValueError(f"unknown architecture {config.arch!r}")
