"""Tokenizers trained on the training texts with `tokenizers` (no hub download), and batch encoding.

`word`: lower-cased words and punctuation, one id each (the classic NLU vocabulary, for the CNN).
`wordpiece`: a BERT-style WordPiece vocabulary with [CLS] ... [SEP] around every text (for bert-tiny).
Both are serialised to JSON inside the model bundle. Note that the vocabulary is a function of the
training texts and is not covered by the DP guarantee of DP-SGD, which protects the weights only.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"


def train_tokenizer(kind: str, texts: list[str], vocab_size: int, min_frequency: int = 1) -> Tokenizer:
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False
        )
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        # Every digit and letter is a token even if the texts lack it, so canary secrets always tokenize.
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK, CLS, SEP, MASK],
            initial_alphabet=list("0123456789abcdefghijklmnopqrstuvwxyz"), show_progress=False,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer)
    if kind == "wordpiece":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}",
            special_tokens=[(CLS, tokenizer.token_to_id(CLS)), (SEP, tokenizer.token_to_id(SEP))],
        )
    return tokenizer


def tokenizer_to_json(tokenizer: Tokenizer) -> str:
    return tokenizer.to_str()


def tokenizer_from_json(text: str) -> Tokenizer:
    return Tokenizer.from_str(text)


def token_ids(tokenizer: Tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [e.ids[:max_len] for e in tokenizer.encode_batch(texts)]


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded to the longest sequence."""
    width = max([1] + [len(s) for s in sequences])
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def encode(tokenizer: Tokenizer, texts: list[str], max_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, truncated to max_len and padded to the longest text."""
    return pad_batch(token_ids(tokenizer, texts, max_len), pad_id)
