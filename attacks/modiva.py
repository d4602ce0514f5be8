"""ModIvA: white-box model inversion over a relaxed (continuous) token space (Parikh, Dupuy, Gupta,
ACL 2022, "Canary Extraction in Natural Language Understanding Models").

The attacker knows the canary template's public words, the label the canary was trained with, and the
weights. Each unknown secret position becomes a trainable distribution over candidate tokens (the whole
vocabulary, or only the template's declared alphabet), relaxed with Gumbel-softmax; its soft embedding
(the distribution times the embedding matrix) goes into the model through its input-embedding path.
Adam maximises the label's log-probability while the Gumbel-softmax temperature is annealed, with
several random restarts run as one batch. The argmax token per position is read out, and of the
restarts the one whose discrete secret the model scores highest is kept.

A second method refines that readout with a discrete search in the style of HotFlip (Ebrahimi et al.
2018) and GCG (Zou et al. 2023): starting from every restart's secret, positions are revisited in turn
and the token that most raises the label's log-probability is swapped in (all alphabet symbols, or in
the vocabulary setting the candidates with the largest gradient of that log-probability with respect
to the one-hot token), until no swap helps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from privaudit.classifier import TextClassifier
from privaudit.errors import PrivauditError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<pad>", "<unk>", "<s>", "</s>", "<mask>")


@dataclass
class SlotLayout:
    input_ids: torch.Tensor  # (1, T) the template with placeholder secrets
    mask: torch.Tensor  # (1, T)
    positions: list[int]  # token position of each secret slot
    alphabet_ids: list[list[int]]  # per slot: token id of each alphabet symbol, in alphabet order


def slot_layout(classifier: TextClassifier, template) -> SlotLayout:
    """Token positions of the template's slots; every alphabet symbol must be one vocabulary token."""
    tokenizer = classifier.tokenizer
    unk = tokenizer.token_to_id("[UNK]")
    alphabet_ids = []
    for alphabet in template.alphabets:
        ids = []
        for symbol in alphabet:
            encoded = tokenizer.encode(symbol, add_special_tokens=False).ids
            if len(encoded) != 1 or encoded[0] == unk:
                raise PrivauditError(f"alphabet symbol {symbol!r} is not one token of the model's vocabulary")
            ids.append(encoded[0])
        if len(set(ids)) < len(ids):
            raise PrivauditError(
                f"two symbols of the alphabet {alphabet[:3]}... share one token id (a hashed "
                f"vocabulary's collision): choose other symbols or a larger --vocab-size"
            )
        alphabet_ids.append(ids)
    first = tuple(a[0] for a in template.alphabets)
    second = tuple(a[1] for a in template.alphabets)
    ids_a, mask = classifier.encode([template.render(first)])
    ids_b, _ = classifier.encode([template.render(second)])
    if ids_a.shape != ids_b.shape:
        raise PrivauditError(f"template {template.text!r}: secrets change the number of tokens")
    positions = torch.nonzero(ids_a[0] != ids_b[0]).flatten().tolist()
    if len(positions) != len(template.slots):
        raise PrivauditError(f"template {template.text!r}: cannot locate its {len(template.slots)} secret tokens")
    return SlotLayout(ids_a.cpu(), mask.cpu(), positions, alphabet_ids)


@dataclass
class Extraction:
    setting: str  # "alphabet" or "vocab"
    success: bool  # ModIvA read out the exact secret
    position_accuracy: float  # fraction of secret positions ModIvA read out right
    relaxed_rank: float | None  # rank of the true secret under the learned distribution (1 = top)
    swap_success: bool  # the discrete swap search, seeded from ModIvA, found the exact secret
    swap_position_accuracy: float
    chance: float  # 1 / |space|

    def to_dict(self) -> dict:
        return asdict(self)


def modiva_extract(
    classifier: TextClassifier,
    template,
    secret: tuple[str, ...],
    label: str,
    setting: str = "alphabet",
    steps: int = 200,
    restarts: int = 16,
    lr: float = 1.0,
    tau_start: float = 1.0,
    tau_end: float = 0.05,
    seed: int = 0,
) -> Extraction:
    if setting not in ("alphabet", "vocab"):
        raise ValueError("setting must be alphabet or vocab")
    layout = slot_layout(classifier, template)
    model = classifier.model
    device = classifier.device
    embedding = model.embedding_layer()  # type: ignore[operator]  # nn.Module attributes type as Tensor
    if setting == "alphabet":
        candidates = [torch.tensor(ids, device=device) for ids in layout.alphabet_ids]
    else:
        special = {classifier.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS} - {None}
        allowed = torch.tensor([i for i in range(classifier.config.vocab_size) if i not in special], device=device)
        candidates = [allowed] * len(layout.positions)
    label_id = classifier.labels.index(label)
    ids, mask = layout.input_ids.to(device), layout.mask.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            base = embedding(ids)
            tables = [embedding.weight[c] for c in candidates]
        thetas = [
            (0.01 * torch.randn(restarts, len(c), generator=generator, device=device)).requires_grad_()
            for c in candidates
        ]
        optimizer = torch.optim.Adam(thetas, lr=lr)
        for step in range(steps):
            tau = tau_start * (tau_end / tau_start) ** (step / max(1, steps - 1))
            embeds = base.expand(restarts, -1, -1).clone()
            for theta, table, pos in zip(thetas, tables, layout.positions):
                gumbel = -torch.log(
                    -torch.log(torch.rand(theta.shape, generator=generator, device=device).clamp_(1e-9, 1 - 1e-9))
                )
                embeds[:, pos] = F.softmax((theta + gumbel) / tau, dim=-1) @ table
            logits = model.forward_embeds(embeds, mask.expand(restarts, -1))  # type: ignore[operator]  # nn.Module attributes type as Tensor
            loss = -F.log_softmax(logits.float(), dim=-1)[:, label_id].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            picks = torch.stack([c[t.argmax(1)] for t, c in zip(thetas, candidates)], dim=1)  # (R, S)
            discrete = ids.expand(restarts, -1).clone()
            discrete[:, layout.positions] = picks
            scores = F.log_softmax(model(discrete, mask.expand(restarts, -1)).float(), -1)[:, label_id]
            best = int(scores.argmax())
            chosen = picks[best].tolist()
            log_probs = [F.log_softmax(t[best], -1).cpu().numpy() for t in thetas]
        swapped = swap_search(
            model, ids, mask, layout.positions, candidates, picks, label_id, embedding if setting == "vocab" else None
        )
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    true_ids = [ids_[alphabet.index(s)] for ids_, alphabet, s in zip(layout.alphabet_ids, template.alphabets, secret)]
    correct = [c == t for c, t in zip(chosen, true_ids)]
    swap_correct = [c == t for c, t in zip(swapped, true_ids)]
    return Extraction(
        setting,
        all(correct),
        float(np.mean(correct)),
        _relaxed_rank(log_probs, candidates, layout.alphabet_ids, true_ids),
        all(swap_correct),
        float(np.mean(swap_correct)),
        1.0 / template.space_size,
    )


def swap_search(
    model, ids, mask, positions, candidates, starts, label_id, embedding=None, top_k: int = 64, max_sweeps: int = 5
) -> list[int]:
    """Greedy token swaps from each start (R, S); returns the best secret found (token ids).

    With `embedding` given (vocabulary setting), each position only tries the top_k tokens by the
    gradient of the label's log-probability with respect to the one-hot input (HotFlip)."""

    def score(batch_ids):
        with torch.no_grad():
            out = model(batch_ids, mask.expand(len(batch_ids), -1)).float()
        return F.log_softmax(out, -1)[:, label_id]

    best_ids, best_score = None, -math.inf
    for start in starts:
        current = ids.clone()
        current[0, positions] = start
        current_score = float(score(current)[0])
        for _ in range(max_sweeps):
            improved = False
            for slot, pos in enumerate(positions):
                options = candidates[slot]
                if embedding is not None:
                    options = _hotflip_candidates(model, current, mask, pos, options, label_id, embedding, top_k)
                trial = current.expand(len(options), -1).clone()
                trial[:, pos] = options
                scores = score(trial)
                top = int(scores.argmax())
                if float(scores[top]) > current_score + 1e-9:
                    current, current_score, improved = trial[top : top + 1].clone(), float(scores[top]), True
            if not improved:
                break
        if current_score > best_score:
            best_ids, best_score = current, current_score
    assert best_ids is not None  # the first restart always sets it
    return best_ids[0, positions].tolist()


def _hotflip_candidates(model, current, mask, pos, options, label_id, embedding, top_k):
    embeds = embedding(current).detach().requires_grad_(True)
    logp = F.log_softmax(model.forward_embeds(embeds, mask).float(), -1)[0, label_id]
    (grad,) = torch.autograd.grad(logp, embeds)
    gain = embedding.weight[options] @ grad[0, pos]  # first-order change of log p per candidate token
    return options[gain.topk(min(top_k, len(options))).indices]


def _relaxed_rank(log_probs, candidates, alphabet_ids, true_ids, limit: int = 10**6) -> float | None:
    """Rank of the true secret among the template's secrets under the learned product distribution."""
    if math.prod(len(a) for a in alphabet_ids) > limit:
        return None
    per_slot = []
    true_total = 0.0
    for lp, cand, alphabet, true_id in zip(log_probs, candidates, alphabet_ids, true_ids):
        index = {int(t): i for i, t in enumerate(cand.tolist())}
        values = np.array([lp[index[a]] for a in alphabet])
        per_slot.append(values)
        true_total += lp[index[true_id]]
    total = np.zeros(1)
    for values in per_slot:
        total = np.add.outer(total, values).ravel()
    return float(1 + (total > true_total + 1e-9).sum())
