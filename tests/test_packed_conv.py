"""The CNN convolves its texts packed end to end (PackedConv1d): the same logits and gradients as the
padded convolution with each text's windows masked, whatever the batch's lengths."""

import torch
import torch.nn.functional as F

from privaudit.models import ModelConfig, build_model


def padded_reference(model, ids, mask):
    """The CNN as a plain padded Conv1d: each text's windows past max(length, k) - k masked out."""
    embeds = model.embedding(ids) * mask.unsqueeze(-1)
    if embeds.shape[1] < model.min_len:
        embeds = F.pad(embeds, (0, 0, 0, model.min_len - embeds.shape[1]))
    x, lengths, pooled = embeds.transpose(1, 2), mask.sum(1), []
    for conv in model.convs:
        h = F.relu(F.conv1d(x, conv.weight, conv.bias))
        k = conv.kernel_size[0]
        valid = torch.arange(h.shape[2])[None] <= (lengths.clamp(min=k) - k)[:, None]
        pooled.append(h.masked_fill(~valid[:, None], float("-inf")).amax(2))
    return model.classifier(torch.cat(pooled, 1))


def batch(lengths, width):
    lengths = torch.tensor(lengths)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = torch.randint(1, 40, (len(lengths), width)) * mask
    return ids, mask


def test_packed_logits_and_gradients_equal_the_padded_convolution():
    torch.manual_seed(0)
    model = build_model(ModelConfig("cnn", 4, 40, 0, embed_dim=16, num_filters=6)).eval()
    for lengths, width in (([0, 1, 2, 3, 4, 5, 6, 9, 12], 12), ([2, 3, 1], 3), ([7, 7], 7)):
        ids, mask = batch(lengths, width)
        got, want = model(ids, mask), padded_reference(model, ids, mask)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        model.packed = False  # the padded path (for Opacus's hooks): the same logits
        torch.testing.assert_close(model(ids, mask), want, atol=1e-5, rtol=1e-5)
        model.packed = True
        grads = [torch.autograd.grad(out.pow(2).sum(), list(model.parameters())) for out in (got, want)]
        for g_packed, g_padded in zip(*grads):
            torch.testing.assert_close(g_packed, g_padded, atol=1e-5, rtol=1e-5)
