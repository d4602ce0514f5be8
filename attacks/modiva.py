"""ModIvA: white-box model inversion over a relaxed (continuous) token space (Parikh, Dupuy, Gupta,
ACL 2022, "Canary Extraction in Natural Language Understanding Models").

The attacker knows the canary template's public words, the label the canary was trained with, and the
weights. Each unknown secret position becomes a trainable distribution over candidate tokens (the whole
vocabulary, or only the template's declared alphabet), relaxed with Gumbel-softmax; its soft embedding
(the distribution times the embedding matrix) goes into the model through its input-embedding path.
Adam maximises the objective while the Gumbel-softmax temperature is annealed, with several random
restarts run as one batch. The argmax token per position is read out, and of the restarts the one whose
discrete secret scores highest is kept.

The objective is the label's log-odds log(p / (1 - p)) = z_label - logsumexp(other logits), not the
paper's log-probability: log p saturates at 0 in float32 once p is near 1, which flattens the search
exactly where a memorised secret sits. With reference models (trained like the target without the
canaries; `privaudit.canaries.calibration`), the objective is calibrated: the target's log-odds minus the
references' mean log-odds, each model reading the same relaxed tokens through its own embedding table.

A second method refines that readout with a discrete search in the style of HotFlip (Ebrahimi et al.
2018) and GCG (Zou et al. 2023): starting from the secrets of the best SWAP_STARTS restarts, positions
are revisited in turn and the token that most raises the objective is swapped in (all alphabet symbols,
or in the vocabulary setting the candidates with the largest gradient of the objective with respect to
the one-hot token), until no swap helps.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from privaudit.classifier import TextClassifier
from privaudit.errors import PrivauditError

SWAP_STARTS = 4
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<pad>", "<unk>", "<s>", "</s>", "<mask>")


class WhiteBox(Protocol):
    """What ModIvA needs of a model (white-box access): privaudit's own classifiers give it through
    `ClassifierWhiteBox`; a user's model through `encode`, `input_embeddings` and `forward_embeds`
    (`privaudit.usermodel`)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def special_token_ids(self) -> set[int]:
        """Never candidates in the vocabulary setting."""
        ...

    @property
    def unknown_token_id(self) -> int | None:
        """A symbol encoded as this is not in the vocabulary."""
        ...

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each (N, T)."""
        ...

    def input_embeddings(self) -> torch.Tensor:
        """The token embedding matrix (V, D) that `forward_embeds` reads soft tokens through."""
        ...

    def forward_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) from input embeddings (N, T, D), in eval mode."""
        ...

    def frozen(self) -> AbstractContextManager[object]:
        """While ModIvA runs: eval mode, and no gradient for the weights where that can be switched off."""
        ...


@dataclass
class ClassifierWhiteBox:
    """A privaudit classifier's white-box view (its model's input-embedding path)."""

    classifier: TextClassifier

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def special_token_ids(self) -> set[int]:
        ids = (self.classifier.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
        return {i for i in ids if i is not None}

    @property
    def unknown_token_id(self) -> int | None:
        return self.classifier.tokenizer.token_to_id("[UNK]")

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier.encode(texts)

    def input_embeddings(self) -> torch.Tensor:
        return self.classifier.model.embedding_layer().weight  # type: ignore[operator]  # nn.Module attributes type as Tensor

    def forward_embeds(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier.model.forward_embeds(embeds, mask)  # type: ignore[operator]  # nn.Module attributes type as Tensor

    def frozen(self) -> AbstractContextManager[object]:
        return _frozen([self.classifier.model])


def white_box(model: Any) -> WhiteBox | None:
    """`model`'s white-box view for ModIvA, or None where it offers none (a black-box model)."""
    if isinstance(model, TextClassifier):
        return ClassifierWhiteBox(model)
    view = getattr(model, "white_box", None)  # a user's model (privaudit.usermodel.UserModel)
    return view() if callable(view) else None


class TemplateNotReadable(PrivauditError):
    """The model's tokens cannot hold the template's secrets (a symbol that is not one known token, two
    symbols on one id, slots that cannot be located): ModIvA cannot run on that model."""


@dataclass
class SlotLayout:
    input_ids: torch.Tensor  # (1, T) the template with placeholder secrets
    mask: torch.Tensor  # (1, T)
    positions: list[int]  # token position of each secret slot
    alphabet_ids: list[list[int]]  # per slot: token id of each alphabet symbol, in alphabet order


def slot_layout(model: Any, template) -> SlotLayout:
    """Token positions of the template's slots and each alphabet symbol's token id there, read off the
    model's own encoding (any tokenizer): each slot is found by changing only its symbol. Every symbol
    must be one known token of the vocabulary, and no two may share one."""
    view = _white_box_or_refuse(model)
    first = tuple(a[0] for a in template.alphabets)
    ids_a, mask = (t.cpu() for t in view.encode([template.render(first)]))
    base = ids_a[0]
    positions, alphabet_ids = [], []
    for slot, alphabet in enumerate(template.alphabets):
        texts = [template.render(first[:slot] + (symbol,) + first[slot + 1 :]) for symbol in alphabet]
        encoded = view.encode(texts)[0].cpu()
        if encoded.shape[1:] != base.shape:
            raise TemplateNotReadable(f"template {template.text!r}: secrets change the number of tokens")
        changed = encoded != base  # (symbols, T)
        where = torch.nonzero(changed.any(0)).flatten().tolist()
        for symbol, row in zip(alphabet, changed):
            if int(row.sum()) > 1:  # more than the slot's own token changed: the symbol is several tokens
                raise TemplateNotReadable(f"alphabet symbol {symbol!r} is not one token of the model's vocabulary")
        if len(where) != 1:  # 0: every symbol reads the same (unknown words); >1: several tokens
            raise TemplateNotReadable(f"alphabet symbol {alphabet[0]!r} is not one token of the model's vocabulary")
        pos = where[0]
        ids = [int(i) for i in encoded[:, pos]]
        for symbol, token in zip(alphabet, ids):
            if token == view.unknown_token_id:
                raise TemplateNotReadable(f"alphabet symbol {symbol!r} is not one token of the model's vocabulary")
        if len(set(ids)) < len(ids):
            raise TemplateNotReadable(
                f"two symbols of the alphabet {alphabet[:3]}... share one token id (a hashed "
                f"vocabulary's collision): choose other symbols or a larger --vocab-size"
            )
        positions.append(pos)
        alphabet_ids.append(ids)
    if len(set(positions)) != len(template.slots):
        raise TemplateNotReadable(f"template {template.text!r}: cannot locate its {len(template.slots)} secret tokens")
    return SlotLayout(ids_a, mask.cpu(), positions, alphabet_ids)


def _white_box_or_refuse(model: Any) -> WhiteBox:
    view = white_box(model)
    if view is None:
        raise PrivauditError(f"ModIvA needs white-box access, which a {type(model).__name__} does not give")
    return view


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


class Objective:
    """The label's log-odds under the target, minus the references' mean log-odds (if any): a weighted
    sum over models, each reading token ids or soft input embeddings through its own embedding table."""

    def __init__(self, target: WhiteBox, references: list[WhiteBox], label_id: int):
        self.models = [target, *references]
        self.tables = [m.input_embeddings() for m in self.models]
        self.weights = [1.0] + [-1.0 / len(references) for _ in references]
        self.label_id = label_id

    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Each model's input embeddings of `ids`."""
        return [table[ids] for table in self.tables]

    def of_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.of_embeds(self.embed(ids), mask)

    def of_embeds(self, embeds: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """`embeds[m]`: model m's input embeddings (each model has its own table)."""
        return self._combined([m.forward_embeds(e, mask.expand(len(e), -1)) for m, e in zip(self.models, embeds)])

    def _combined(self, logits: list[torch.Tensor]) -> torch.Tensor:
        per_model = torch.stack([log_odds(z, self.label_id) for z in logits])  # (models, batch)
        return torch.tensor(self.weights, device=per_model.device) @ per_model


def log_odds(logits: torch.Tensor, label_id: int) -> torch.Tensor:
    """log(p / (1 - p)) of `label_id` per row, without the saturation of log p."""
    logits = logits.float()
    others = torch.cat([logits[:, :label_id], logits[:, label_id + 1 :]], dim=1)
    return logits[:, label_id] - torch.logsumexp(others, dim=1)


def modiva_extract(
    model: Any,
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
    references: list[Any] | None = None,
) -> Extraction:
    """Extract `secret` from `model` (a privaudit classifier or a user's white-box model; with
    `references`, models that share its token ids, by the calibrated objective)."""
    if setting not in ("alphabet", "vocab"):
        raise ValueError("setting must be alphabet or vocab")
    target = _white_box_or_refuse(model)
    layout = slot_layout(model, template)
    objective = Objective(target, [_white_box_or_refuse(r) for r in references or []], target.labels.index(label))
    device = objective.tables[0].device
    if setting == "alphabet":
        candidates = [torch.tensor(ids, device=device) for ids in layout.alphabet_ids]
    else:
        special = target.special_token_ids
        allowed = torch.tensor([i for i in range(len(objective.tables[0])) if i not in special], device=device)
        candidates = [allowed] * len(layout.positions)
    ids, mask = layout.input_ids.to(device), layout.mask.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with ExitStack() as stack:
        for m in objective.models:
            stack.enter_context(m.frozen())
        with torch.no_grad():
            bases = objective.embed(ids)
            tables = [[table[c] for c in candidates] for table in objective.tables]
        thetas = [
            (0.01 * torch.randn(restarts, len(c), generator=generator, device=device)).requires_grad_()
            for c in candidates
        ]
        optimizer = torch.optim.Adam(thetas, lr=lr)
        for step in range(steps):
            tau = tau_start * (tau_end / tau_start) ** (step / max(1, steps - 1))
            weights = []
            for theta in thetas:
                gumbel = -torch.log(
                    -torch.log(torch.rand(theta.shape, generator=generator, device=device).clamp_(1e-9, 1 - 1e-9))
                )
                weights.append(F.softmax((theta + gumbel) / tau, dim=-1))
            embeds = []
            for base, model_tables in zip(bases, tables):
                e = base.expand(restarts, -1, -1).clone()
                for w, table, pos in zip(weights, model_tables, layout.positions):
                    e[:, pos] = w @ table
                embeds.append(e)
            loss = -objective.of_embeds(embeds, mask).sum()
            # Gradients for the relaxed tokens only: a user's weights may not be frozen, and keep their .grad.
            for theta, grad in zip(thetas, torch.autograd.grad(loss, thetas)):
                theta.grad = grad
            optimizer.step()
        with torch.no_grad():
            picks = torch.stack([c[t.argmax(1)] for t, c in zip(thetas, candidates)], dim=1)  # (R, S)
            discrete = ids.expand(restarts, -1).clone()
            discrete[:, layout.positions] = picks
            scores = objective.of_ids(discrete, mask)
            best = int(scores.argmax())
            chosen = picks[best].tolist()
            log_probs = [F.log_softmax(t[best], -1).cpu().numpy() for t in thetas]
        # Swaps start from the best few restarts: each start costs a full search (most of ModIvA's time).
        starts = picks[scores.topk(min(SWAP_STARTS, restarts)).indices]
        swapped = swap_search(objective, ids, mask, layout.positions, candidates, starts, hotflip=setting == "vocab")
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


@contextmanager
def _frozen(models):
    """Models in eval mode with gradients off for their weights (only the relaxed tokens are learned)."""
    states = [(m.training, [p.requires_grad for p in m.parameters()]) for m in models]
    for m in models:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, (training, requires) in zip(models, states):
            for p, r in zip(m.parameters(), requires):
                p.requires_grad_(r)
            m.train(training)


def swap_search(
    objective: Objective,
    ids,
    mask,
    positions,
    candidates,
    starts,
    hotflip: bool = False,
    top_k: int = 64,
    max_sweeps: int = 5,
) -> list[int]:
    """Greedy token swaps from each start (R, S); returns the best secret found (token ids).

    With `hotflip` (vocabulary setting), each position only tries the top_k tokens by the gradient of the
    objective with respect to the one-hot input (HotFlip)."""
    best_ids, best_score = None, -math.inf
    for start in starts:
        current = ids.clone()
        current[0, positions] = start
        current_score = float(objective.of_ids(current, mask)[0])
        for _ in range(max_sweeps):
            improved = False
            for slot, pos in enumerate(positions):
                options = candidates[slot]
                if hotflip:
                    options = _hotflip_candidates(objective, current, mask, pos, options, top_k)
                trial = current.expand(len(options), -1).clone()
                trial[:, pos] = options
                scores = objective.of_ids(trial, mask)
                top = int(scores.argmax())
                if float(scores[top]) > current_score + 1e-9:
                    current, current_score, improved = trial[top : top + 1].clone(), float(scores[top]), True
            if not improved:
                break
        if current_score > best_score:
            best_ids, best_score = current, current_score
    assert best_ids is not None  # the first restart always sets it
    return best_ids[0, positions].tolist()


def _hotflip_candidates(objective: Objective, current, mask, pos, options, top_k):
    embeds = [e.detach().requires_grad_(True) for e in objective.embed(current)]
    grads = torch.autograd.grad(objective.of_embeds(embeds, mask)[0], embeds)
    # First-order change of the objective per candidate token, summed over the models' own tables.
    gain = torch.stack([table[options].detach() @ g[0, pos] for table, g in zip(objective.tables, grads)]).sum(0)
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
