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


class CNNClassifier(nn.Module):
    """Word-CNN intent classifier whose output for a text never depends on how much it was padded."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(config.embed_dim, config.num_filters, k) for k in config.kernel_sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.num_filters * len(config.kernel_sizes), config.num_labels)
        self.min_len = max(config.kernel_sizes)

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
        # Each text counts as padded to max(length, kernel width); windows past that are masked, so
        # batch-mates' lengths never change a text's logits.
        lengths = attention_mask.sum(1)
        pooled = []
        for conv in self.convs:
            h = F.relu(conv(x))
            k = conv.kernel_size[0]  # type: ignore[index]  # nn.Conv1d's, typed loosely by torch
            last_start = torch.clamp(lengths, min=k) - k
            valid = torch.arange(h.shape[2], device=h.device)[None, :] <= last_start[:, None]
            pooled.append(h.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=2))
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
