"""Vocabularies and batch encoding.

Learned from the training texts with `tokenizers` (no hub download):
- `word`: lower-cased words and punctuation, one id each (the classic NLU vocabulary, for the CNN);
- `wordpiece`: a BERT-style WordPiece vocabulary with [CLS] ... [SEP] around every text (for bert-tiny).
A learned vocabulary is a function of the training texts, so it is not covered by DP-SGD's guarantee
(which protects the weights): its words tell members from non-members (privaudit's `vocabulary` attack
measures how much). So with DP-SGD the default is

- `hashed`: a data-independent vocabulary (feature hashing, Weinberger et al. 2009): special tokens,
  digits and letters have fixed ids, every other word goes to one of the remaining buckets by a keyless
  hash. Nothing about it depends on the data; collisions cost a little accuracy, never privacy.

All are serialised to JSON inside the model bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# The vocabulary attack's score for a certain member (or, negated, non-member): above any sum of the
# uncertain evidence, finite so that results.json stays plain JSON.
CERTAIN = 1e6


def train_tokenizer(
    kind: str, texts: list[str], vocab_size: int, min_frequency: int = 1, required: tuple[str, ...] = ()
) -> Tokenizer:
    """A vocabulary learned from `texts`, the same for the same texts every time ("word": whole words;
    "wordpiece": whole words, and any other word split into characters). Each `required` word is a
    token too, after the learned ones (a canary template's alphabet: public, so adding it reveals nothing)."""
    if kind == "wordpiece":
        return _wordpiece_tokenizer(texts, vocab_size, min_frequency, required)
    if kind != "word":
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    _bert_text_handling(tokenizer)
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    vocab = tokenizer.get_vocab()
    missing = [word for word in dict.fromkeys(required) if word not in vocab]
    if missing:
        vocab.update({word: len(vocab) + i for i, word in enumerate(missing)})
        tokenizer.model = models.WordLevel(vocab, unk_token=UNK)
    return tokenizer


def _wordpiece_tokenizer(texts: list[str], vocab_size: int, min_frequency: int, required: tuple[str, ...]) -> Tokenizer:
    """A WordPiece vocabulary of the most frequent whole words plus every character, alone and as a
    continuation ("##x"). Not the trainer of the tokenizers library: it breaks ties between equally
    frequent merges in hash order, which Rust seeds at random, so the same texts gave a different
    vocabulary (and model) from run to run. Every digit and letter is a token even if the texts lack
    it, so canary secrets always tokenize."""
    characters = list(RESERVED_CHARACTERS)
    words = train_tokenizer("word", texts, max(2, vocab_size - len(SPECIALS) - 2 * len(characters)), min_frequency)
    by_frequency = sorted(words.get_vocab().items(), key=lambda item: item[1])  # WordLevel ids: frequency order
    tokens = [*SPECIALS, *characters, *(f"##{c}" for c in characters)]
    tokens += [word for word, _ in by_frequency if word not in (PAD, UNK)]
    tokens += required
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}  # a word that is one character: once
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
    _bert_text_handling(tokenizer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])]
    )
    return tokenizer


def _bert_text_handling(tokenizer: Tokenizer) -> None:
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()


RESERVED_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz"
# The special tokens of every WordPiece-style vocabulary here (hashed and learned), in id order.
SPECIALS = (PAD, UNK, CLS, SEP, MASK)


@dataclass
class _Encoding:
    ids: list[int]


class HashedTokenizer:
    """The data-independent vocabulary: BERT's normalizer and pre-tokenizer, then a fixed id per special
    token, digit and letter (so canary secrets never collide) and blake2b(word) mod the remaining buckets.
    Offers the part of `tokenizers.Tokenizer`'s interface privaudit uses."""

    KIND = "privaudit-hashed"

    def __init__(self, buckets: int, cls_sep: bool):
        reserved = len(SPECIALS) + len(RESERVED_CHARACTERS)
        if buckets < 2 * reserved:
            raise ValueError(f"a hashed vocabulary needs at least {2 * reserved} buckets")
        self.buckets = buckets
        self.cls_sep = cls_sep
        self.fixed = {token: i for i, token in enumerate(SPECIALS + tuple(RESERVED_CHARACTERS))}
        self.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        self.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def _word_id(self, word: str) -> int:
        fixed = self.fixed.get(word)
        if fixed is not None:
            return fixed
        digest = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "big")
        return len(self.fixed) + digest % (self.buckets - len(self.fixed))

    def encode(self, text: str, add_special_tokens: bool = True) -> _Encoding:
        words = self.pre_tokenizer.pre_tokenize_str(self.normalizer.normalize_str(text))
        ids = [self._word_id(word) for word, _ in words]
        if add_special_tokens and self.cls_sep:
            ids = [self.fixed[CLS], *ids, self.fixed[SEP]]
        return _Encoding(ids)

    def encode_batch(self, texts: list[str]) -> list[_Encoding]:
        return [self.encode(t) for t in texts]

    def token_to_id(self, token: str) -> int | None:
        return self.fixed.get(token) if token in SPECIALS else self._word_id(token)

    def get_vocab_size(self) -> int:
        return self.buckets

    def to_str(self) -> str:
        return json.dumps({"type": self.KIND, "buckets": self.buckets, "cls_sep": self.cls_sep})


# What a classifier holds: a trained tokenizers.Tokenizer or the data-independent hashed one.
AnyTokenizer = Tokenizer | HashedTokenizer


def hashed_tokenizer(kind: str, buckets: int) -> HashedTokenizer:
    """The data-independent counterpart of train_tokenizer(kind, ...): the same framing ([CLS]/[SEP] for
    wordpiece models)."""
    return HashedTokenizer(buckets, cls_sep=(kind == "wordpiece"))


def tokenizer_to_json(tokenizer) -> str:
    return tokenizer.to_str()


def tokenizer_from_json(text: str):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("type") == HashedTokenizer.KIND:
        return HashedTokenizer(int(doc["buckets"]), bool(doc["cls_sep"]))
    return Tokenizer.from_str(text)


def token_ids(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [e.ids[:max_len] for e in tokenizer.encode_batch(texts)]


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded to the longest sequence."""
    lengths = [len(s) for s in sequences]
    filled = torch.arange(max([1, *lengths])) < torch.tensor(lengths, dtype=torch.long).reshape(-1, 1)
    ids = torch.full(filled.shape, pad_id, dtype=torch.long)
    # One tensor for the whole batch (row-major, as the mask's True entries): a tensor per row cost 5x.
    ids[filled] = torch.tensor([token for seq in sequences for token in seq], dtype=torch.long)
    return ids, filled.long()


def encode(tokenizer, texts: list[str], max_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, truncated to max_len and padded to the longest text."""
    return pad_batch(token_ids(tokenizer, texts, max_len), pad_id)


def vocabulary_evidence(tokenizer, texts: list[str]) -> np.ndarray:
    """Per text, the evidence a vocabulary learned from the training texts gives that it is one of them:
    a log-likelihood ratio, member against non-member (the vocabulary attack's score).

    The vocabulary holds every word of every member (up to its size), and nothing else the data did
    not put there. `texts` is the whole population the auditor holds, members among them, each a
    member with probability one half; "certain" below holds when it holds every training text (the audit
    manifest's population does), else it is strong evidence only. Then:
    - a token that no other text of the population uses was put there by this text: **certainly a member**
      (+CERTAIN each);
    - a token [UNK] marks a word no member has: **certainly not a member** (-CERTAIN each; when the
      vocabulary was cut to its size, only likely);
    - a token k >= 2 texts use is in the vocabulary whenever one of them is a member: likelihood ratio
      1 / (1 - 2^(1-k)) (2 for k = 2, about 1 for common words), summed as if independent;
    - each word piece beyond a word's first (a WordPiece vocabulary without the whole word): -1.
    Tokens any vocabulary holds whatever the data (special tokens, single characters, alone or as
    continuations) carry nothing and are skipped. 0 everywhere for the hashed vocabulary."""
    if isinstance(tokenizer, HashedTokenizer):
        return np.zeros(len(texts))
    unk = tokenizer.token_to_id(UNK)
    encodings = tokenizer.encode_batch(texts)
    data_free = {tokenizer.token_to_id(t) for t in SPECIALS}  # [UNK] among them
    documents = [
        {i for i, t in zip(e.ids, e.tokens, strict=True) if i not in data_free and len(t.removeprefix("##")) > 1}
        for e in encodings
    ]
    users = Counter(i for document in documents for i in document)
    out = np.zeros(len(texts))
    for row, (encoding, document) in enumerate(zip(encodings, documents, strict=True)):
        unknown = encoding.ids.count(unk)
        pieces = sum(1 for t in encoding.tokens if t.startswith("##"))
        alone = sum(1 for i in document if users[i] == 1)
        shared = sum(-math.log1p(-(2.0 ** (1 - users[i]))) for i in document if users[i] > 1)
        out[row] = CERTAIN * (alone - unknown) + shared - pieces
    return out
