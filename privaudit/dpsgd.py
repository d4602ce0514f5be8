"""Per-example gradient clipping for DP-SGD (Abadi et al. 2016) that works on any torch model.

DP-SGD needs sum_i clip(g_i) where g_i is example i's gradient and clip scales it to norm <= C.
Computing every g_i with a loop (or even a plain torch.func vmap over the whole model) makes DP
training many times slower than ordinary training. This module follows the "book-keeping" idea
(Bu et al. 2023, building on ghost clipping, Li et al. 2021, and the efficient DP-SGD of Dupuy et al.,
ICASSP 2022): one forward and one backward pass, in which autograd computes only activation gradients.
Wrapped forwards keep each parametrised layer's input a and (by a tensor hook) its output gradient g; from them

- the per-example gradient norms come layer by layer, for Linear/Conv1d/Embedding without ever
  materialising per-example gradients where that is cheaper ("ghost norms": for a linear layer
  ||g_i^T a_i||^2 = <a_i a_i^T, g_i g_i^T>, O(T^2) instead of O(d_in d_out) per example);
- the clipped sum is then one ordinary weight-gradient product with g scaled by each example's clip
  factor, so no second backward pass is needed.

Layers without a hand-written rule (and layers called more than once per forward) get their
per-example gradients from torch.func: vmap over the layer's own vector-Jacobian product.
Batch dimension first everywhere. A layer output broadcast over the batch (e.g. BERT's position
embeddings, shape (1, T, d)) is expanded to the batch so that every example keeps its own gradient.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .errors import PrivauditError
from .models import PackedConv1d, shifted_matmul_weight_grad


@dataclass
class _Call:
    """One forward call of a layer during the captured step: its inputs and its output gradient."""

    args: tuple
    kwargs: dict
    grad_output: torch.Tensor | None = None
    # A tensor whose .grad receives the output gradient: the output the capture made a leaf (autograd moves the
    # gradient there, not copied: a tensor hook keeping a reference would make autograd copy it as well), or a
    # small output that retains its gradient (a copy, cheaper than a Python tensor hook: _RETAINED_AT_MOST).
    holder: torch.Tensor | None = None
    # What the forward computed on the way that a rule needs (a LayerNorm's mean and 1/std).
    stats: tuple | None = None
    # Whether the rule looks for positions no gradient reaches (_at_positions_with_gradient), and what it found:
    # None (it did not look), False (every position has a gradient) or True (some have none).
    search_positions: bool = True
    found_dead_positions: bool | None = None


@dataclass
class _Layer:
    module: nn.Module
    name: str
    params: dict[str, nn.Parameter]
    rule: type | None  # the hand-written rule for the module's type (_RULES), or None: torch.func
    calls: list[_Call] = field(default_factory=list)
    # Searches for positions without gradient that found none: after _POSITION_SEARCHES of them the layer stops
    # searching (exact either way: a position is only dropped where a search found it without gradient), while
    # a layer whose searches find some keeps searching every step.
    fruitless_searches: int = 0

    def next_call_searches(self) -> bool:
        return self.fruitless_searches < _POSITION_SEARCHES

    def searched(self, found: bool | None) -> None:
        self.fruitless_searches += found is False


# In bert-tiny, 4 of 14 linear layers and 2 of 5 LayerNorms have positions without gradient at every step (a
# BERT's last layer), the others never: the search costs those a few operations a pass for nothing.
_POSITION_SEARCHES = 3


# Outputs of at most this many elements keep their gradient by retain_grad (autograd's C++ hook copies it)
# rather than by a Python tensor hook: the CNN's pooled convolutions and output layer, BERT's pooler.
_RETAINED_AT_MOST = 1 << 16


class PerExampleClipper:
    """Adds sum_i clip(grad_i, max_grad_norm) to each parameter's .grad (set to it where .grad is None).

    Usage, once per step::

        with clipper.capture(batch_size):
            per_example_loss(model, batch).sum().backward()
        norms = clipper.clip_and_accumulate()   # p.grad += sum of clipped per-example gradients

    While the clipper exists, the model's trainable parameters have requires_grad=False (autograd
    must not spend time on summed weight gradients); `close()` restores them.
    """

    def __init__(self, model: nn.Module, max_grad_norm: float):
        if max_grad_norm <= 0:
            raise ValueError("max_grad_norm must be positive")
        self.max_grad_norm = max_grad_norm
        self.layers: list[_Layer] = []
        for name, module in model.named_modules():
            params = {n: p for n, p in module.named_parameters(recurse=False) if p.requires_grad}
            if params:
                self.layers.append(_Layer(module, name or type(module).__name__, params, _RULES.get(type(module))))
        self.parameters = [p for layer in self.layers for p in layer.params.values()]
        self._device = self.parameters[0].device if self.parameters else torch.device("cpu")
        for p in self.parameters:
            p.requires_grad_(False)
        self._batch_size: int | None = None
        self._checked = False  # the first captured step also checks that every parameter can be clipped
        self._active: list[_Layer] = []
        # Each layer's forward is wrapped (an instance attribute, removed by close()) rather than hooked: a module
        # with hooks takes torch's slow call path, and forward and pre-hooks cost the SNIPS CNN's DP step 1% more.
        self._own_forwards = [layer.module.__dict__.get("forward") for layer in self.layers]
        for layer in self.layers:
            layer.module.forward = self._wrap_forward(layer)

    def embedding_tables(self) -> list[nn.Embedding]:
        """The embedding layers whose per-example gradients the row-lookup rule gives."""
        return [
            layer.module
            for layer in self.layers
            if isinstance(layer.module, nn.Embedding) and _EmbeddingRule.applies(layer.module)
        ]

    def close(self) -> None:
        for layer, own in zip(self.layers, self._own_forwards):
            if own is None:
                del layer.module.forward
            else:
                layer.module.forward = own
        for p in self.parameters:
            p.requires_grad_(True)

    @contextmanager
    def capture(self, batch_size: int):
        for layer in self.layers:
            layer.calls.clear()
        self._batch_size = batch_size
        try:
            if self._checked:
                yield
            else:
                with _ParameterUseCheck(self):
                    yield
                self._checked = True
        finally:
            self._batch_size = None
            self._active.clear()

    def _wrap_forward(self, layer: _Layer):
        forward = layer.module.forward
        # A rule may run the layer's own computation itself, to keep what it computes on the way (LayerNorm's
        # statistics); not where something else already replaced the module's forward.
        forward_with_stats = None if "forward" in layer.module.__dict__ else getattr(layer.rule, "forward", None)

        def captured_forward(*args, **kwargs):
            if self._batch_size is None:
                return forward(*args, **kwargs)
            if not self._checked:
                self._active.append(layer)
            computed = forward_with_stats(layer.module, args, kwargs) if forward_with_stats is not None else None
            output, stats = computed if computed is not None else (forward(*args, **kwargs), None)
            if not self._checked and self._active and self._active[-1] is layer:
                self._active.pop()
            return self._record(layer, args, kwargs, output, stats)

        return captured_forward

    def _record(self, layer: _Layer, args: tuple, kwargs: dict, output, stats: tuple | None = None):
        """Keeps a layer call's inputs, and arranges for its output gradient to be kept; returns the output the
        rest of the forward uses (a leaf, or expanded to the batch, where needed)."""
        if not isinstance(output, torch.Tensor):
            raise PrivauditError(
                f"DP-SGD cannot clip the parameters of layer {layer.name} ({type(layer.module).__name__}) exactly: "
                f"its output is a {type(output).__name__}, not one tensor (e.g. LSTM, MultiheadAttention). "
                f"Freeze it (requires_grad=False) or use a layer made of Linear/Conv1d/Embedding/LayerNorm"
            )
        batch = self._batch_size
        assert batch is not None  # only called while capturing
        holder = None
        if not output.requires_grad:
            # The first layers see no input that requires grad (their parameters don't, by design):
            # make their output a leaf so autograd still carries activation gradients through.
            output = holder = output.detach().requires_grad_(True)
        if output.shape[0] == 1 and batch > 1:
            output = output.expand(batch, *output.shape[1:])
            args = tuple(_expand_batch(a, batch) for a in args)
            kwargs = {k: _expand_batch(v, batch) for k, v in kwargs.items()}
            holder = None  # the gradient wanted is the expanded output's, per example
        if output.shape[0] != batch:
            raise PrivauditError(
                f"DP-SGD: layer {layer.name} ({type(layer.module).__name__}) produced an output whose first "
                f"dimension ({output.shape[0]}) is not the batch ({batch}); per-example clipping needs it"
            )
        if holder is None and output.numel() <= _RETAINED_AT_MOST:
            output.retain_grad()
            holder = output
        call = _Call(args, kwargs, holder=holder, stats=stats)
        layer.calls.append(call)
        if holder is None:
            output.register_hook(lambda g: setattr(call, "grad_output", g))
        return output

    @torch.no_grad()  # torch.func.grad in the fallback ignores this, as it should
    def clip_and_accumulate(self, extra: DiracRows | None = None) -> torch.Tensor:
        """Adds the sum of clipped per-example gradients to p.grad; returns the unclipped norms (B,).

        `extra` adds further examples whose gradients are Dirac vectors (one coordinate each): the white-box
        audit's gradient canaries, clipped by the same rule as every real example."""
        plans, norms = self._plan()
        all_norms = norms if extra is None else torch.cat([norms, extra.norms().to(norms)])
        grads = []
        for p in self.parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        # In place, onto what is there (the step's noise): no per-step temporary of the model's size.
        self._add_summed(plans, self.clip_scale(all_norms), extra, grads)
        return norms.detach()

    def clip_scale(self, norms: torch.Tensor) -> torch.Tensor:
        """Each example's factor: min(1, C / ||g_i||)."""
        return (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)

    def _plan(self):
        """Per layer, what its clipped sum needs; and every example's gradient norm over all layers."""
        squares = []  # each layer's per-example squared norms, summed once at the end (one op, not one a layer)
        plans = []
        grams: dict = {}  # this step's input Gram matrices, for layers that read the same input; the sample group
        for layer in self.layers:
            for c in layer.calls:
                if c.holder is not None:
                    c.grad_output, c.holder = c.holder.grad, None
            calls = [c for c in layer.calls if c.grad_output is not None]
            rule = layer.rule
            if len(calls) == 1 and rule is not None and rule.applies(layer.module):
                calls[0].search_positions = layer.next_call_searches()
                state = rule.prepare(layer.module, calls[0])
                layer.searched(calls[0].found_dead_positions)
                sq = rule.norm_sq(layer.module, state, grams)
                plans.append((layer, rule, state, None))
            elif calls:
                samples = _sum_dicts(_grad_sample(layer, c) for c in calls)
                sq = sum(s.flatten(1).pow(2).sum(1) for s in samples.values())
                plans.append((layer, None, None, samples))
            else:  # layer unused in this forward: its gradient is zero for every example
                plans.append((layer, None, None, None))
                continue
            if sq is not None:  # None: the layer's norm is part of one computed with others (_SampleGroup)
                squares.append(sq)
            layer.calls.clear()
        if _SampleGroup in grams:
            squares.append(grams[_SampleGroup].squares())
        norms = torch.stack(squares).sum(0).sqrt_() if squares else torch.zeros(0, device=self._device)
        return plans, norms

    def _add_summed(self, plans, scale: torch.Tensor, extra: DiracRows | None, into: list[torch.Tensor]) -> None:
        """Adds to `into` (one tensor per parameter, in the layers' order) every parameter's gradient summed
        over the examples, example i scaled by scale[i]; the rows of `extra` come after the batch's."""
        batch_size = len(scale) - (len(extra) if extra is not None else 0)
        real = scale[:batch_size]
        targets = iter(into)
        for layer, rule, state, samples in plans:
            out = {n: next(targets) for n in layer.params}
            if rule is not None:
                rule.add_clipped_sum(layer.module, state, real, out)
            elif samples is not None:
                _add_weighted_samples(samples, real, out)
            # else: unused in this forward, nothing to add
        if extra is not None and len(extra):
            extra.add_to(into, scale[batch_size:])


class _ParameterUseCheck(TorchFunctionMode):
    """During the first captured step: every trainable parameter must be used inside its own layer's
    forward. One used elsewhere (tied weights read by another module, a parameter used by a parent's
    functional code) would get no per-example gradient, hence noise only: refused, naming it."""

    def __init__(self, clipper: PerExampleClipper):
        super().__init__()
        self.clipper = clipper
        self.owner = {id(p): layer for layer in clipper.layers for p in layer.params.values()}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            layer = self.owner.get(id(value)) if isinstance(value, torch.Tensor) else None
            if layer is not None and layer not in self.clipper._active:
                name = next(n for n, p in layer.params.items() if p is value)
                raise PrivauditError(
                    f"DP-SGD cannot clip parameter {layer.name}.{name} exactly: it is used outside its own "
                    f"layer's forward (tied or functionally used weights). Untie or freeze it"
                )
        return func(*args, **kwargs)


@dataclass
class DiracRows:
    """Per-example gradients that are Dirac vectors: row k is magnitude[k] at parameter param[k], flat
    position index[k] (positions distinct). Cheap to clip: a row's norm is |magnitude|."""

    param: torch.Tensor  # (K,) long: index into the clipper's parameter list
    index: torch.Tensor  # (K,) long: flat position within that parameter
    magnitude: torch.Tensor  # (K,) float

    def __len__(self) -> int:
        return len(self.param)

    def norms(self) -> torch.Tensor:
        return self.magnitude.abs()

    def add_to(self, grads: list[torch.Tensor], scale: torch.Tensor) -> None:
        values = self.magnitude.to(scale) * scale
        for k in torch.unique(self.param).tolist():
            rows = self.param == k
            # flat positions in row-major order, whatever the gradient's memory layout
            where = torch.unravel_index(self.index[rows].to(grads[k].device), grads[k].shape)
            grads[k].index_put_(where, values[rows].to(grads[k]), accumulate=True)


def fresh_seed() -> int:
    """64 bits of operating-system entropy: DP randomness that nobody, the seed's owner included, can replay."""
    return secrets.randbits(63)


_MT_WORDS = 624  # a Mersenne Twister's state: 624 32-bit words


def reseed_from_entropy(generator: torch.Generator) -> None:
    """Sets `generator` to a state drawn from operating-system entropy.

    A CPU generator gets all 19,968 bits of its Mersenne Twister's state fresh. Not `manual_seed`: torch seeds
    its CPU Mersenne Twister from the low 32 bits of the seed only (`seed` and `seed + 2**32` give the same
    stream), so a step's noise would be one of 2^32 streams, and the adversary of DP-SGD's threat model, who
    knows every example but one and sees each step's update, could try them all against each update (a few CPU
    hours) and tell which of the two worlds the update came from. Other devices' generators (CUDA's Philox)
    take the whole 63-bit seed."""
    if generator.device.type != "cpu":
        generator.manual_seed(fresh_seed())
        return
    state, offset = _mt19937_state_layout()
    words = np.frombuffer(secrets.token_bytes(4 * _MT_WORDS), dtype="<u4").astype("<u8")
    state = state.clone()
    state[offset : offset + 8 * _MT_WORDS] = torch.from_numpy(words.view(np.uint8))
    generator.set_state(state)


@functools.cache
def _mt19937_state_layout() -> tuple[torch.Tensor, int]:
    """A CPU generator's state right after manual_seed(1) (torch's get_state bytes), and where in it the Mersenne
    Twister's words lie (624 little-endian 64-bit slots, the low 32 bits used): found by the words manual_seed
    writes (its initialisation recurrence), so a change in torch's layout fails here rather than silently."""
    words = [1]
    for j in range(1, _MT_WORDS):
        words.append((1812433253 * (words[-1] ^ (words[-1] >> 30)) + j) & 0xFFFFFFFF)
    expected = np.array(words, dtype="<u8").tobytes()
    state = torch.Generator().manual_seed(1).get_state()
    offset = state.numpy().tobytes().find(expected)
    if offset < 0:
        raise RuntimeError("this torch's CPU generator state is not the Mersenne Twister layout privaudit expects")
    return state, offset


class GaussianNoise:
    """DP-SGD's Gaussian noise for the gradients of `parameters`, written straight into the .grad buffers.

    `start_step` makes every parameter's .grad a view of one flat buffer of fresh noise, to which the
    clipper then adds the clipped gradient sum: no separate noise tensors, no extra pass to add them.
    The generator gets a fresh state from operating-system entropy at every step (all of it: reseed_from_entropy),
    so no seed (in particular not the recorded initialisation seed) predicts the noise, no search over seeds
    finds it, and no one step's noise predicts the next's.
    `seed` makes the stream reproducible instead: for tests only; the guarantee then does not hold against
    anyone who knows it. (Tried and measured, README "Performance": drawing the noise in two halves on two
    threads halves the draw alone, but inside a step torch's idle OpenMP worker spins on the second core for
    longer than the draw (libgomp's spin count: 100,000 or more pauses), so the step gains nothing; with a
    spin short enough for the split to pay (30,000), ordinary training slows by as much. A Box-Muller
    transform of numpy's PCG64DXSM bits was 1.6x faster than normal_ on one CPU and 1.6x slower on another,
    3% of a bert-tiny step at best.)
    """

    def __init__(
        self,
        parameters: Sequence[torch.Tensor],
        std: float,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        self.parameters = parameters
        self.std = std
        total = sum(p.numel() for p in parameters)
        dtype = parameters[0].dtype if parameters else torch.float32
        self.buffer = torch.empty(total, device=device, dtype=dtype)
        # Each .grad is its parameter's slice of the buffer, in the parameter's memory layout, as autograd lays
        # gradients out (torch.empty_like's strides: the parameter's own when it is dense, row-major otherwise).
        # The buffer is refilled in place, so the slices are made once.
        self._views = []
        offset = 0
        for p in parameters:
            self._views.append(self.buffer.as_strided(p.shape, torch.empty_like(p, device="meta").stride(), offset))
            offset += p.numel()
        self.generator = torch.Generator(device=device)
        self.reproducible = seed is not None
        if seed is not None:
            self.generator.manual_seed(seed)

    def start_step(self) -> None:
        """Sets every parameter's .grad to fresh noise."""
        if not self.reproducible:
            reseed_from_entropy(self.generator)
        self.buffer.normal_(0.0, self.std, generator=self.generator)
        self._expose_buffer()

    def _expose_buffer(self) -> None:
        """Every parameter's .grad becomes its slice of the buffer."""
        for p, view in zip(self.parameters, self._views):
            p.grad = view

    def divide(self, count: float) -> None:
        """Divides every parameter's .grad (noise + clipped sum) by `count`, DP-SGD's 1/B: one pass over the
        buffer, not one per parameter. Refuses if a .grad is no longer its view of the buffer: whatever
        replaced it dropped the step's noise."""
        self._check_views()
        self.buffer.div_(count)

    def add_to_parameters(self, alpha: float) -> None:
        """Every parameter += alpha x its .grad (noise + clipped sum), in one multi-tensor operation: plain SGD's
        step with 1/B folded into alpha = -lr / B. Refuses as `divide` does."""
        self._check_views()
        if self.parameters:
            torch._foreach_add_(list(self.parameters), self._views, alpha=alpha)

    def _check_views(self) -> None:
        if any(p.grad is not view for p, view in zip(self.parameters, self._views)):
            raise RuntimeError("DP-SGD: a parameter's .grad was replaced after the noise was written into it")

    def draw(self, *shape: int) -> torch.Tensor:
        """Further noise of the same std from the step's generator (a lazily drawn table's rows)."""
        return torch.empty(shape, device=self.buffer.device, dtype=self.buffer.dtype).normal_(
            0.0, self.std, generator=self.generator
        )


class LazyNoisyTable:
    """An embedding table's DP-SGD update under plain SGD, its noise drawn only for the rows a batch reads.

    DP-SGD adds N(0, s^2) (s = sigma C) to every coordinate of the summed gradient at every step, and plain
    SGD (no momentum, no weight decay) turns a step into W -= lr / B (clipped sum + noise): linear in the noise.
    A row that no example of the step looks up has a zero clipped sum, so its update is noise alone, and k such
    updates add up to lr / B N(0, k s^2) (the noise is symmetric, so its sign does not matter): one draw, with
    the variance of every step the row missed. So a row's updates wait until the row is next read (a forward
    pre-hook on the table, before the lookup) or training ends (`finish`): then the clipped sum of the step
    that last read it (held in the table's gradient buffer) and the noise of every step since are added in one
    draw and one update. Each value training reads, and the final table, have exactly the distribution the
    dense mechanism gives them; the rows drawn per step are the batch's tokens, once each, not the vocabulary
    (on the SNIPS CNN, 1.6 M Gaussians a step were 0.46x of an ordinary step). The draws come from `noise`'s
    generator, re-seeded from OS entropy every step.

    Between steps every row is what dense DP-SGD made it when the row was last read, a function of the dense
    mechanism's transcript: a clipped sum reaches the weights only together with its step's noise.
    Only exact when nothing else reads or moves the table during training: the clipper checks that only the
    table's own forward reads it, and training uses it only without gradient canaries (which write into unread
    rows) and without weight decay (which moves unread rows)."""

    def __init__(self, module: nn.Embedding, noise: GaussianNoise, lr: float, expected_batch_size: float):
        self.weight = module.weight
        self.noise = noise
        self.step_scale = lr / expected_batch_size
        # The clipper adds the step's clipped sums here; a row keeps its sum until its update is added.
        self.grad = torch.zeros_like(self.weight)
        self.weight.grad = self.grad
        self.steps_done = 0
        # Per row: the number of steps whose update the row holds.
        self.steps_held = torch.zeros(len(self.weight), dtype=torch.long, device=self.weight.device)
        self._marked = torch.zeros(len(self.weight), dtype=torch.bool, device=self.weight.device)
        self._read_in_step = False  # whether a row may already hold every finished step
        self._hook = module.register_forward_pre_hook(self._before_lookup, with_kwargs=True)

    def _before_lookup(self, module, args, kwargs) -> None:
        # The distinct rows, sorted, by marking them: twice as fast as torch.unique on a batch's ids (CPU).
        self._marked.index_fill_(0, (args[0] if args else kwargs["input"]).reshape(-1).long(), True)
        rows = self._marked.nonzero().squeeze(1)
        self._marked.index_fill_(0, rows, False)
        self._bring_up_to_date(rows)
        self._read_in_step = True

    @torch.no_grad()
    def _bring_up_to_date(self, rows: torch.Tensor) -> None:
        """Adds to `rows` the update of every finished step they do not hold yet: W -= lr / B (the clipped sum
        waiting in the gradient + N(0, k s^2) for the k steps missed), in one draw. A row read earlier in the
        same step holds every finished step already; its gradient is then this step's sum, still growing."""
        if self.steps_done == 0:
            return
        missed = self.steps_done - self.steps_held[rows]
        if self._read_in_step:  # until a row is read in a step, every row is behind by one step or more
            behind = missed > 0
            rows, missed = rows[behind], missed[behind]
        if len(rows):
            # -lr / B folded into the operands: index_add_ with an alpha took twice as long (torch 2.13, CPU).
            scale = missed.to(self.weight.dtype).sqrt_().mul_(-self.step_scale).unsqueeze(1)
            update = self.grad[rows].mul_(-self.step_scale)
            self.weight.index_add_(0, rows, update.addcmul_(self.noise.draw(len(rows), self.weight.shape[1]), scale))
            self.grad.index_fill_(0, rows, 0.0)
            self.steps_held.index_fill_(0, rows, self.steps_done)

    def step(self) -> None:
        """Ends a step: its update waits, clipped sums in the gradient, until each row is next read."""
        self.steps_done += 1
        self._read_in_step = False

    def finish(self) -> None:
        """Every row's waiting updates added (the table is then what dense DP-SGD would have made it); unhooked."""
        self._hook.remove()
        self._bring_up_to_date(torch.arange(len(self.weight), device=self.weight.device))
        self.weight.grad = None


class PoissonSampler:
    """Poisson subsampling (what the accountant assumes): each of n indices independently with probability
    q at every step, from operating-system entropy (or, for tests only, a given seed)."""

    def __init__(self, n: int, sample_rate: float, seed: int | None = None):
        self.n = n
        self.sample_rate = sample_rate
        self.rng = np.random.default_rng(seed)  # None: seeded from operating-system entropy

    def sample(self) -> np.ndarray:
        return np.flatnonzero(self.rng.random(self.n) < self.sample_rate)


def _expand_batch(x, batch: int):
    if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    return x


def _sum_dicts(dicts):
    total: dict[str, torch.Tensor] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total[k] + v if k in total else v
    return total


def _grad_sample(layer: _Layer, call: _Call) -> dict[str, torch.Tensor]:
    """Per-example gradients of one layer call, by torch.func: vmap of the layer's VJP."""
    module = layer.module
    params = {n: p.detach() for n, p in layer.params.items()}
    assert call.grad_output is not None  # set by the output's tensor hook before this runs
    batch = call.grad_output.shape[0]
    in_dims = tuple(
        0 if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else None for a in call.args
    )

    def weighted_output(params, args, grad_out):
        args = tuple(a.unsqueeze(0) if d == 0 else a for a, d in zip(args, in_dims))
        out = functional_call(module, params, args, call.kwargs)
        return (out * grad_out.unsqueeze(0)).sum()

    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in call.args)
    return vmap(grad(weighted_output), in_dims=(None, in_dims, 0))(params, args, call.grad_output)


def _input(call: _Call) -> torch.Tensor:
    """A torch layer call's input, given by position or by keyword (torch's layers name it `input`)."""
    return call.args[0] if call.args else call.kwargs["input"]


# A rule has three steps: prepare (flatten one layer call, once), norm_sq (per-example squared norms of
# the layer's gradient, shape (B,)) and add_clipped_sum (the layer's gradients summed with per-example
# scales, added in place to the given gradient tensors: onto the step's noise, with no temporary where
# the product can write into them). A rule may also have forward(module, args, kwargs): the layer's own
# computation, returning (output, what prepare needs of it) as the call's stats, or None to run the module's.
class _LinearRule:
    """y = a W^T + b over (B, *, d_in) inputs, computed over the positions where some output gradient is not zero."""

    @staticmethod
    def applies(module) -> bool:
        return True

    @staticmethod
    def prepare(module, call):
        a, g = _input(call), call.grad_output
        batch = g.shape[0]
        g, a = _at_positions_with_gradient(
            g.reshape(batch, -1, g.shape[-1]), a.reshape(batch, -1, a.shape[-1]), call=call
        )
        # Each example's bias gradient, sum_t g_t: its norm, and (scaled) the clipped sum's bias.
        return a, g, g.sum(1) if module.bias is not None else None

    @staticmethod
    def norm_sq(module, state, grams):
        a, g, bias_grads = state
        return _matmul_norm_sq(a, g, grams, bias_grads)

    @staticmethod
    def add_clipped_sum(module, state, scale, out):
        a, g, bias_grads = state
        # sum_i scale_i g_i^T a_i: the scale goes on the narrower operand, the smaller elementwise pass.
        if a.shape[-1] < g.shape[-1]:
            a = a * scale[:, None, None]
        else:
            g = g * scale[:, None, None]
        out["weight"].addmm_(g.reshape(-1, g.shape[-1]).t(), a.reshape(-1, a.shape[-1]))
        if module.bias is not None:
            out["bias"].addmv_(bias_grads.t(), scale)


def _at_positions_with_gradient(
    g: torch.Tensor, *alongside: torch.Tensor, call: _Call | None = None
) -> tuple[torch.Tensor, ...]:
    """A (B, T, d) output gradient, and the (B, T, ...) tensors `alongside` it, at only the positions t where some
    example's g_t is not zero (all of them unchanged when that is every position). A layer's rule takes them so
    before its products. Exact: a position
    whose g is zero for every example adds nothing to any per-example gradient, to its ghost Gram product or to
    the clipped sum, while ordinary autograd multiplies those zeros. In a BERT's last layer, after its attention,
    only [CLS] reaches the pooler: those layers' products shrink from T positions to one (bert-tiny: 4 of its 14
    linear layers and 2 of its LayerNorms; README "Performance"). Padding positions are zero too, but a batch's
    longest text keeps all of them; gathering each example's live rows instead did not pay for its copies.
    `call`: the layer call, whose search_positions says whether to look (_Layer.next_call_searches) and which
    records what the search found."""
    if g.shape[1] == 1 or (call is not None and not call.search_positions):
        return g, *alongside
    # A position is live if any example's first feature is not zero: 1/d of the reads, and in every layer but the
    # last all its positions (the batch's longest text fills them); only then are the whole rows read (two
    # reductions without an |g| temporary). A NaN counts as live.
    live = (g[..., 0] != 0).any(0)
    every = bool(live.all())
    if not every:
        live |= ((g.amax(-1) != 0) | (g.amin(-1) != 0)).any(0)
        every = bool(live.all())
    if call is not None:
        call.found_dead_positions = not every
    if every:
        return g, *alongside
    kept = live.nonzero().squeeze(1)
    return tuple(t.index_select(1, kept) for t in (g, *alongside))


class _Conv1dRule:
    """Conv1d (groups=1, dilation=1, zero padding) without unfolding its input into windows.

    The Gram matrix of example i's windows is a sum of shifted copies of the Gram matrix of its input
    positions, <w_t, w_u> = sum_j <x_(ts+j), x_(us+j)>, so ghost norms need only x^T x (B, T, T); the
    clipped sum is one ordinary weight-gradient convolution of the scaled output gradient.
    """

    @staticmethod
    def applies(module) -> bool:
        return (
            module.groups == 1
            and module.dilation == (1,)
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
        )

    @staticmethod
    def prepare(module, call):
        x, g = _input(call), call.grad_output
        (pad,) = module.padding
        return (F.pad(x, (pad, pad)) if pad else x), g

    @staticmethod
    def norm_sq(module, state, grams):
        x, g = state  # x: (B, C_in, T), g: (B, C_out, T')
        return _conv_norm_sq(module, torch.bmm(x.transpose(1, 2), x), g)

    @staticmethod
    def add_clipped_sum(module, state, scale, out):
        x, g = state
        gs = g * scale[:, None, None]
        out["weight"].add_(torch.nn.grad.conv1d_weight(x, module.weight.shape, gs, stride=module.stride))
        if module.bias is not None:
            out["bias"].add_(gs.sum((0, 2)))


def _conv_norm_sq(module, positions: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-example squared gradient norms of a Conv1d from its input positions' Gram matrix (B, T, T)
    and its output gradient (B, C_out, T')."""
    (k,), (stride,) = module.kernel_size, module.stride
    span = stride * (g.shape[2] - 1) + 1
    windows = sum(positions[:, j : j + span : stride, j : j + span : stride] for j in range(k))
    sq = (windows * torch.bmm(g.transpose(1, 2), g)).sum((1, 2))
    if module.bias is not None:
        sq = sq + g.sum(2).pow(2).sum(1)
    return sq


class _PackedConv1dRule(_Conv1dRule):
    """privaudit's PackedConv1d, max-pooled: its output gradient is (B, C_out), and each text's gradient for
    channel c reaches one window, the packed row of its max (Packing.max_rows; the zero row is a constant).

    Example i's weight gradient then has row c = g_ic w_(r_ic), one window per output channel, so its squared
    norm is sum_c g_ic^2 (||w_(r_ic)||^2 + 1 for the bias): exact, no cross terms, no Gram matrix, O(B C); 0
    where the maximum is the zero row, which no parameter makes. The clipped sum is one weight gradient, like
    the backward's, of the packed output gradient the backward made (Packing.output_grads) against the packed
    texts with text i's rows scaled by its clip factor (Packing.pack_scaled, shared by the convolutions): each
    valid window lies within its text; the bias's, that packed gradient's rows weighted the same way."""

    @staticmethod
    def prepare(module, call):
        x = call.args[0] if call.args else call.kwargs["x"]
        packing = call.args[1] if len(call.args) > 1 else call.kwargs.get("packing")
        rows = packing.max_rows[module] if packing is not None else None
        return x, call.grad_output, packing, rows

    @staticmethod
    def norm_sq(module, state, grams):
        x, g, packing, rows = state
        if packing is None:
            return _Conv1dRule.norm_sq(module, (x, g), grams)
        per_row = packing.window_sq_norms(x, module.kernel_size[0])
        if module.bias is not None:
            per_row.add_(1.0)  # a fresh tensor
        per_row = F.pad(per_row, (0, 1))  # the zero row's: a constant, no gradient
        return (g.square() * per_row[rows]).sum(1)

    @staticmethod
    def add_clipped_sum(module, state, scale, out):
        x, g, packing, rows = state
        if packing is None:
            return _Conv1dRule.add_clipped_sum(module, (x, g), scale, out)
        (k,) = module.kernel_size
        packed_grad = packing.output_grads.get(module)
        if packed_grad is None:  # the backward stopped at the pooled output: nothing before needs a gradient
            packed_grad = g.new_zeros(packing.size - k + 2, g.shape[1]).scatter_add_(0, rows, g)
        packed_grad = packed_grad[: packing.size - k + 1]  # the zero row's: a constant
        # Into the gradient as (k, C_in, C_out): contiguous when it follows the weight's tap-major layout.
        shifted_matmul_weight_grad(packing.pack_scaled(x, scale), packed_grad, k, out["weight"].permute(2, 1, 0))
        if module.bias is not None:
            # From the packed gradient, each window row's scale its text's: a maximum at the zero row reaches
            # no parameter, the bias included.
            out["bias"].addmv_(packed_grad.t(), packing.row_scales(scale)[: packing.size - k + 1])


def _matmul_norm_sq(a: torch.Tensor, g: torch.Tensor, grams: dict, bias_grads: torch.Tensor | None) -> torch.Tensor:
    """||g_i^T a_i||_F^2 + ||b_i||^2 for each i (b_i = sum_t g_it, the bias's gradient, when `bias_grads` is
    given), by the cheaper of the ghost (Gram) and the direct form. The one-position and ghost forms fold the
    bias in at no cost: it is a weight on an input of ones, so its Gram term is all ones (a_s . a_t + 1).

    The ghost form's input Gram a_i a_i^T is computed once for the layers that read the same input
    (attention's query, key and value): `grams` holds this step's, keyed by the input's storage, shape and
    strides and whether a bias is folded in (activations are not modified in place during a backward; each
    entry keeps its input alive)."""
    t, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    bias = bias_grads is not None
    if t == 1:
        return (a.pow(2).sum((1, 2)) + float(bias)) * g.pow(2).sum((1, 2))
    if t * (d_in + d_out) < d_in * d_out:
        key = (a.data_ptr(), a.shape, a.stride(), a.dtype, bias)
        if key not in grams:
            gram = torch.bmm(a, a.transpose(1, 2))
            grams[key] = (a, gram.add_(1.0) if bias else gram)
        return (grams[key][1] * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
    sq = torch.bmm(g.transpose(1, 2), a).pow(2).sum((1, 2))
    return sq if bias_grads is None else sq + torch.linalg.vector_norm(bias_grads, dim=1).square_()


class _EmbeddingRule:
    """Row lookups: example i's gradient is g_i scattered to its token rows (padding row excluded).

    Only the looked-up positions that are not padding are kept (on SNIPS, about a third of a padded batch's).
    Example i's gradient for token u is the sum of g over i's positions holding u, so its squared norm sums
    ||that||^2 over the (example, token) pairs; a batch whose pairs are all distinct (position embeddings;
    texts without a repeated word) needs no sum. The clipped sum scatters each kept position's scaled g into
    its row: repeated tokens add up there."""

    @staticmethod
    def applies(module) -> bool:
        return module.max_norm is None and not module.scale_grad_by_freq and not module.sparse

    @staticmethod
    def prepare(module, call):
        ids, g = _input(call), call.grad_output
        batch = g.shape[0]
        ids, g = ids.reshape(-1), g.reshape(-1, g.shape[-1])
        positions = len(ids) // batch
        if module.padding_idx is None:
            example = torch.arange(batch, device=ids.device).repeat_interleave(positions)
        else:
            kept = (ids != module.padding_idx).nonzero().squeeze(1)
            ids, g, example = ids[kept], g.index_select(0, kept), kept.div(positions, rounding_mode="floor")
        return ids, g, example, batch

    @staticmethod
    def norm_sq(module, state, grams):
        ids, g, example, batch = state
        pairs, pair = torch.unique(example * module.num_embeddings + ids, return_inverse=True)
        if len(pairs) < len(ids):  # a token repeated within an example: its positions' gradients add up
            g = g.new_zeros(len(pairs), g.shape[1]).index_add_(0, pair, g)
            example = pairs.div(module.num_embeddings, rounding_mode="floor")
        return g.new_zeros(batch).index_add_(0, example, g.square().sum(1))

    @staticmethod
    def add_clipped_sum(module, state, scale, out):
        """Scattered straight into `out`: the batch touches a few rows of a table that may be most of the
        model, so no zeroed table-sized temporary and no second pass to add it."""
        ids, g, example, _ = state
        out["weight"].index_add_(0, ids, (g * scale[example].unsqueeze(1)).to(out["weight"].dtype))


class _LayerNormRule:
    """Per-example gradients of the affine parameters are only (B, d): materialise them. All LayerNorms of a
    step are normed and summed together (_SampleGroup)."""

    @staticmethod
    def applies(module) -> bool:
        return module.elementwise_affine

    @staticmethod
    def forward(module, args, kwargs):
        """nn.LayerNorm's forward as native_layer_norm, the same computation and output as its layer_norm, which
        drops the mean and 1/std it computes: (output, (mean, rstd)), so prepare need not normalise again. None
        for a call by keyword (the module's own forward runs)."""
        if len(args) != 1 or kwargs:
            return None
        output, mean, rstd = torch.native_layer_norm(
            args[0], module.normalized_shape, module.weight, module.bias, module.eps
        )
        return output, (mean, rstd)

    @staticmethod
    def prepare(module, call):
        x, g = _input(call), call.grad_output
        batch, width = g.shape[0], math.prod(module.normalized_shape)
        x, g = x.reshape(batch, -1, width), g.reshape(batch, -1, width)
        if call.stats is not None:  # the forward's mean and 1/std (forward, above)
            g, x, mean, rstd = _at_positions_with_gradient(
                g, x, *(s.reshape(batch, -1, 1) for s in call.stats), call=call
            )
            x_hat = (x - mean).mul_(rstd)
        else:
            g, x = _at_positions_with_gradient(g, x, call=call)
            # With a unit weight: the same values, and on CPU about 2x faster than layer_norm without one (torch
            # 2.13, bert-tiny's (64, T, 128) inputs). Over the flattened normalised dimensions: the same statistics.
            x_hat = F.layer_norm(x, (width,), _ones((width,), x.dtype, x.device), None, module.eps)
        samples = {"weight": (g * x_hat).sum(1)}
        if module.bias is not None:
            samples["bias"] = g.sum(1)
        return [samples, None]  # the group's slot, set by norm_sq

    @staticmethod
    def norm_sq(module, state, grams):
        if _SampleGroup not in grams:
            grams[_SampleGroup] = _SampleGroup()
        state[1] = grams[_SampleGroup].add(state[0])
        return None

    @staticmethod
    def add_clipped_sum(module, state, scale, out):
        samples, (group, first) = state
        for k, n in enumerate(samples):
            out[n].add_(group.summed(scale, first + k).view(out[n].shape))


@functools.cache
def _ones(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype, device=device)


class _SampleGroup:
    """Materialised per-example gradients (B, n_k) of several layers (the LayerNorms' affine parameters), normed
    and summed as one (B, sum n_k) concatenation: a few operations for all of them instead of a few per
    parameter (bert-tiny: 10 parameters of 128)."""

    def __init__(self):
        self.parts: list[torch.Tensor] = []
        self.flat: torch.Tensor | None = None
        self._summed: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None

    def add(self, samples: dict[str, torch.Tensor]) -> tuple[_SampleGroup, int]:
        """Takes a layer's samples; returns where its first one sits."""
        self.parts += [s.flatten(1) for s in samples.values()]
        return self, len(self.parts) - len(samples)

    def squares(self) -> torch.Tensor:
        """Every example's squared norm over all the parts (once they are all in)."""
        self.flat = torch.cat(self.parts, dim=1)
        return self.flat.pow(2).sum(1)

    def summed(self, scale: torch.Tensor, k: int) -> torch.Tensor:
        """Part k summed over the examples, example i scaled by scale[i]: one matrix-vector product for all."""
        if self._summed is None or self._summed[0] is not scale:
            assert self.flat is not None, "squares() comes first"
            self._summed = (scale, torch.split(scale @ self.flat, [p.shape[1] for p in self.parts]))
        return self._summed[1][k]


def _add_weighted_samples(samples: dict[str, torch.Tensor], scale: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
    """Materialised per-example gradients (B, ...) summed with per-example scales, added into `out`."""
    for n, s in samples.items():
        out[n].add_((scale @ s.flatten(1)).view(out[n].shape))  # a matrix-vector product: einsum was 2x slower


_RULES = {
    nn.Linear: _LinearRule,
    nn.Conv1d: _Conv1dRule,
    PackedConv1d: _PackedConv1dRule,
    nn.Embedding: _EmbeddingRule,
    nn.LayerNorm: _LayerNormRule,
}
