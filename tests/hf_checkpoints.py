"""A tiny Hugging Face BERT classifier saved as a local directory (what a user's fine-tuned model is),
built here from a config: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path


def save_tiny_bert(folder: Path, texts: list[str], labels: list[str] | None, seed: int = 0, vocab: int = 400) -> Path:
    """A one-layer BERT with a WordPiece tokenizer learned from `texts`; `labels` names its classes
    (None: two unnamed ones, as a checkpoint to fine-tune)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    backend, tokenizer = fast_tokenizer(texts, vocab)
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


def pretrain_bert(folder: Path, texts: list[str], epochs: int = 8, seed: int = 0, vocab: int = 4000) -> Path:
    """A bert-tiny-sized encoder (2 layers, 128 wide) pretrained by masked-language modelling on `texts`
    (public text: what a user's pretrained checkpoint is, built here with nothing downloaded), saved as a
    Hugging Face directory; fine-tuning it for classification adds a fresh head."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertForMaskedLM

    backend, tokenizer = fast_tokenizer(texts, vocab)
    config = BertConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    special = torch.tensor(tokenizer.all_special_ids)
    for _ in range(epochs):
        order = rng.permutation(len(texts))
        for start in range(0, len(texts), 64):
            batch = tokenizer([texts[i] for i in order[start : start + 64]], padding=True, return_tensors="pt")
            ids = batch["input_ids"]
            # BERT's masking: 15% of the real tokens are predicted; of those 80% shown as [MASK], 10% random.
            chosen = (torch.rand(ids.shape) < 0.15) & ~torch.isin(ids, special)
            labels = torch.where(chosen, ids, torch.full_like(ids, -100))
            roll = torch.rand(ids.shape)
            inputs = torch.where(chosen & (roll < 0.8), torch.full_like(ids, tokenizer.mask_token_id), ids)
            inputs = torch.where(chosen & (roll >= 0.9), torch.randint_like(ids, config.vocab_size), inputs)
            optimizer.zero_grad()
            model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss.backward()
            optimizer.step()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def fast_tokenizer(texts: list[str], vocab: int):
    """privaudit's WordPiece tokenizer learned from `texts`, and the transformers tokenizer around it."""
    from transformers import PreTrainedTokenizerFast

    from privaudit.tokenization import train_tokenizer

    backend = train_tokenizer("wordpiece", texts, vocab)
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    return backend, PreTrainedTokenizerFast(tokenizer_object=backend, mask_token="[MASK]", **special)
