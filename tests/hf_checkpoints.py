"""A tiny Hugging Face BERT classifier saved as a local directory (what a user's fine-tuned model is),
built here from a config: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path


def save_tiny_bert(folder: Path, texts: list[str], labels: list[str] | None, seed: int = 0, vocab: int = 400) -> Path:
    """A one-layer BERT with a WordPiece tokenizer learned from `texts`; `labels` names its classes
    (None: two unnamed ones, as a checkpoint to fine-tune)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from privaudit.tokenization import train_tokenizer

    backend = train_tokenizer("wordpiece", texts, vocab)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    names = labels or ["LABEL_0", "LABEL_1"]
    config = BertConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(names),
        **({"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if labels else {}),
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
