"""Benchmarks that print ratios measured side by side in one run.

`privaudit bench dp`: DP-SGD step time against ordinary training (and Opacus). The same model (same
initial weights, same optimizer) is trained on the same fixed batches in every mode; blocks of steps
alternate between the modes so that machine load affects all alike, and the median block gives each
mode's time per step. `bench memory`, `bench whitebox` and `bench sweep` are below.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .allocator import keep_freed_memory
from .bundle import ModelBundle, load_bundle
from .data import load_dataset
from .demo import demo_dataset
from .devices import resolve_device
from .dpsgd import GaussianNoise
from .models import CNNClassifier
from .recipe import DPSettings, TrainingRecipe
from .tokenization import encode, token_ids
from .training import build_classifier, dp_step, dp_update, make_optimizer, nondp_step, pass_indices

ROUNDS = 5


def bench_dp(
    archs: list[str],
    batch_size: int = 64,
    steps: int = 30,
    data: str | Path | None = None,
    device: str = "auto",
    rounds: int = ROUNDS,
    physical_batch_size: int | None = None,
) -> list[dict]:
    """Per-step time of every mode on each architecture: ordinary training, privaudit's DP-SGD, and Opacus
    (when installed) with per-sample-gradient hooks and with ghost clipping. Every mode trains its own copy
    of the same initial model with the recipe's optimizer on the same batches, in blocks that alternate
    between the modes. A mode's time is its median block; its ratio is the median over rounds of its block
    over the same round's non-DP block, with the rounds' lowest and highest ratio. A mode that cannot run
    the model keeps its row, with the error. Two more rows split privaudit's DP-SGD: its noise draw alone,
    and the same steps with zeros where the noise goes (not DP: what hooks, norms and clipped sums cost).
    A `physical_batch_size` below `batch_size` cuts every step into passes of at most that many examples,
    shortest first, as `fit` does (bert-tiny's DP recipe: 1,024 in passes of 64): ordinary training then
    accumulates the passes' gradients, DP-SGD draws its noise once a step; Opacus's rows run single passes
    only and say so."""
    physical = physical_batch_size or batch_size
    device = resolve_device(device)
    keep_freed_memory()  # as `fit` does: the steps timed are training's
    dataset = demo_dataset() if data is None else load_dataset(data)
    rows: list[dict] = []
    for arch in archs:
        recipe = _dp_recipe(arch, batch_size, len(dataset))
        torch.manual_seed(0)
        classifier = build_classifier(recipe, dataset.texts, dataset.label_names)
        lengths = np.array([len(s) for s in token_ids(classifier.tokenizer, dataset.texts, recipe.max_len)])
        rng = np.random.default_rng(0)
        batches = []  # each step's passes, as `fit` cuts them
        for _ in range(steps):
            idx = rng.choice(len(dataset), batch_size, replace=False)
            step = []
            for part in pass_indices(idx, lengths, physical):
                ids, mask = encode(
                    classifier.tokenizer, [dataset.texts[i] for i in part], recipe.max_len, classifier.config.pad_id
                )
                targets = classifier.label_ids([dataset.labels[i] for i in part]).cpu()
                step.append((ids.to(device), mask.to(device), targets.to(device)))
            batches.append(step)
        initial = classifier.model.to(device).train()
        runners, errors, cleanups = {}, {}, []
        for mode, build in _MODES.items():
            try:
                runner, cleanup = build(copy.deepcopy(initial), recipe, batches, batch_size, device)
                cleanups.append(cleanup)
                runner()  # warm-up: allocator, kernels, optimizer state; and whether the mode runs at all
                runners[mode] = runner
            except Exception as exc:  # a library that cannot run the model: its row says why
                errors[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
        try:
            times: dict[str, list[float]] = {mode: [] for mode in runners}
            for _ in range(rounds):
                for mode, runner in runners.items():
                    times[mode].append(_timed(runner, device))
        finally:
            for cleanup in cleanups:
                cleanup()
        for mode in _MODES:
            row: dict = {"arch": arch, "mode": mode, "ms": None, "ratio": None, "ratio_range": None, "error": None}
            if mode in times:
                # Each round's block against the non-DP block timed next to it: the machine's drift between
                # rounds cancels in the ratio, and the rounds' spread shows how far one figure can be trusted.
                ratios = [t / plain for t, plain in zip(times[mode], times["non-DP"])]
                row["ms"] = statistics.median(times[mode]) / steps * 1000
                row["ratio"], row["ratio_range"] = statistics.median(ratios), (min(ratios), max(ratios))
            else:
                row["error"] = errors[mode]
            rows.append(row)
    return rows


def _dp_recipe(arch: str, batch_size: int, n_examples: int) -> TrainingRecipe:
    """The recipe `privaudit train --dp` gives `arch` on these data (half of them members) at noise multiplier 1,
    but with the benchmark's batch: its vocabulary, optimizer and learning rate."""
    members = n_examples // 2
    recipe = TrainingRecipe(arch=arch, batch_size=batch_size, dp=DPSettings(noise_multiplier=1.0)).resolved(members)
    return recipe.with_noise_lr(batch_size, 1.0)


def _plain_mode(model, recipe, batches, batch_size, device):
    optimizer = make_optimizer(recipe.without_dp(), model.parameters())  # adam-bc without DP noise: Adam

    def run():
        for step in batches:
            nondp_step(model, optimizer, step)

    return run, lambda: None


def _dp_mode(noise_class: type[GaussianNoise], lazy_tables: bool = True):
    """privaudit's DP-SGD steps, as training takes them, with `noise_class` drawing the noise (GaussianNoise:
    fresh entropy each step); `lazy_tables=False`: every table's noise drawn densely, as before plain SGD."""

    def build(model, recipe, batches, batch_size, device):
        update = dp_update(model, recipe, batch_size, device, None, lazy_tables, noise_class)

        clipper, noise, optimizer, tables = update.clipper, update.noise, update.optimizer, update.tables

        def run():
            for step in batches:
                dp_step(clipper, noise, model, optimizer, step, batch_size, tables=tables)

        return run, update.close

    return build


def _noise_mode(model, recipe, batches, batch_size, device):
    """What DP-SGD draws per step, alone: a Gaussian for every densely noised parameter (fresh OS entropy, then
    normal_ into one buffer) and, for each lazily noised table, one row per distinct token of the batch."""
    update = dp_update(model, recipe, batch_size, device, None)
    update.close()
    widths = [table.weight.shape[1] for table in update.tables]

    def run():
        for step in batches:
            update.noise.start_step()
            rows = len(torch.unique(torch.cat([ids.flatten() for ids, _, _ in step])))
            for width in widths:
                update.noise.draw(rows, width)

    return run, lambda: None


class _SkippedNoise(GaussianNoise):
    """Zeros where the noise goes: NOT DP-SGD. Only this benchmark uses it, to time everything else."""

    def start_step(self) -> None:
        self.buffer.zero_()
        self._expose_buffer()

    def draw(self, *shape: int) -> torch.Tensor:
        return torch.zeros(shape, device=self.buffer.device, dtype=self.buffer.dtype)


def _opacus_mode(ghost: bool):
    """Opacus 1.6's DP-SGD: GradSampleModule + DPOptimizer (per-sample gradients from hooks), or with
    ghost clipping its fast-gradient-clipping module, optimizer and loss wrapper (two backward passes)."""

    def build(model, recipe, batches, batch_size, device):
        try:
            import opacus  # noqa: F401
        except ImportError:
            raise RuntimeError("Opacus not installed (pip install 'privaudit[opacus]')") from None
        import torch.nn.functional as F
        from torch import nn

        if any(len(step) > 1 for step in batches):
            raise RuntimeError("not run on steps of several passes here (--physical-batch-size)")
        passes = [step[0] for step in batches]
        if isinstance(model, CNNClassifier):
            model.packed = False  # Opacus's per-sample rules need a plain Conv1d call: the padded convolution
        noise = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "expected_batch_size": batch_size}
        if ghost:
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping
            from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

            module = GradSampleModuleFastGradientClipping(model, loss_reduction="sum", max_grad_norm=1.0)
            optimizer = DPOptimizerFastGradientClipping(
                make_optimizer(recipe, module.parameters()), loss_reduction="sum", **noise
            )
            criterion = DPLossFastGradientClipping(
                module, optimizer, nn.CrossEntropyLoss(reduction="sum"), loss_reduction="sum"
            )

            def run():
                for ids, mask, y in passes:
                    optimizer.zero_grad(set_to_none=True)
                    criterion(module(ids, mask), y).backward()
                    optimizer.step()

        else:
            from opacus import GradSampleModule
            from opacus.optimizers import DPOptimizer

            module = GradSampleModule(model, loss_reduction="sum")
            optimizer = DPOptimizer(make_optimizer(recipe, module.parameters()), loss_reduction="sum", **noise)

            def run():
                for ids, mask, y in passes:
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(module(ids, mask), y, reduction="sum").backward()
                    optimizer.step()

        def quiet_run():
            with warnings.catch_warnings():  # the model's first layer takes no gradient input, by design
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                run()

        return quiet_run, module.cleanup

    return build


NOISE_DRAW = "privaudit: its noise draw alone"
DENSE_NOISE = "privaudit DP-SGD, every table's noise drawn densely"
SKIPPED_NOISE = "privaudit DP-SGD, noise skipped (not DP)"
_MODES = {
    "non-DP": _plain_mode,
    "privaudit DP-SGD": _dp_mode(GaussianNoise),
    DENSE_NOISE: _dp_mode(GaussianNoise, lazy_tables=False),
    "Opacus (hooks)": _opacus_mode(ghost=False),
    "Opacus (ghost clipping)": _opacus_mode(ghost=True),
    NOISE_DRAW: _noise_mode,
    SKIPPED_NOISE: _dp_mode(_SkippedNoise),
}


def _timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_memory(
    configurations: list[tuple[int, int]],
    arch: str = "bert-tiny",
    data: str | Path | None = None,
    steps: int = 8,
    noise_multiplier: float = 1.0,
) -> list[dict]:
    """`privaudit bench memory`: peak memory of DP-SGD training at each (logical batch, physical batch), each
    in a fresh process (the same interpreter, nothing else loaded) running the real `fit` for `steps` steps
    on the data's first half. Reports the process's peak resident memory and its rise during training above
    what the process held just before (the model, the data and the imports are the same in every run)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    rows = []
    for logical, physical in configurations:
        with context.Pool(1) as pool:
            args = (arch, logical, physical, steps, noise_multiplier, None if data is None else str(data))
            peak_kb, rise_kb, wall = pool.apply(_memory_of_training, args)
        rows.append(
            {"logical": logical, "physical": physical, "wall_s": wall}
            | {"peak_mb": peak_kb / 1024, "rise_mb": rise_kb / 1024}
        )
    return rows


def resident_kb(field: str = "VmHWM") -> int:
    """This process's resident memory from /proc/self/status: VmHWM (its peak) or VmRSS (now), in kB."""
    import re

    with open("/proc/self/status") as status:
        match = re.search(rf"{field}:\s+(\d+) kB", status.read())
    assert match is not None, f"/proc/self/status has {field}"
    return int(match.group(1))


def reset_peak_resident() -> None:
    """Resets this process's peak (VmHWM) to its current resident memory."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _memory_of_training(arch, logical, physical, steps, noise_multiplier, data) -> tuple[int, int, float]:
    from .training import fit

    dataset = demo_dataset() if data is None else load_dataset(data)
    train = dataset.subset(np.arange(len(dataset) // 2))
    # Steps, not epochs: every configuration trains `steps` steps of its logical batch.
    epochs_for_steps = max(1, round(steps * logical / len(train)))
    recipe = TrainingRecipe(
        arch=arch,
        epochs=epochs_for_steps,
        batch_size=logical,
        physical_batch_size=physical,
        dp=DPSettings(noise_multiplier=noise_multiplier),
    )
    fit(train, dataset.label_names, replace(recipe, epochs=1), "cpu")  # warm-up: imports, allocator, kernels
    reset_peak_resident()
    before = resident_kb("VmRSS")
    start = time.perf_counter()
    fit(train, dataset.label_names, recipe, "cpu")
    return resident_kb(), resident_kb() - before, time.perf_counter() - start


def bench_backends(
    data: str | Path | None = None,
    shadows: int = 16,
    workers: int = 2,
    rounds: int = 1,
    epochs: int | None = None,
    progress=None,
) -> dict:
    """`privaudit bench backends`: `shadows` shadow models of the default CNN recipe on the whole data set
    (a `privaudit mia` audit population), trained by the local process pool and by a local Ray instance
    of the same `workers` CPUs, each from an empty cache; rounds alternate the order. Ray's time includes
    starting Ray and its workers, as a user's first run does."""
    import tempfile

    from .shadows import train_shadows

    dataset = demo_dataset() if data is None else load_dataset(data)
    recipe = TrainingRecipe(epochs=epochs).resolved(len(dataset) // 2)

    def run(backend: str) -> float:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            train_shadows(
                dataset,
                dataset.label_names,
                recipe,
                shadows,
                0,
                Path(cache),
                workers,
                progress=progress,
                backend=backend,
            )
            return time.perf_counter() - start

    times: dict[str, list[float]] = {"local": [], "ray": []}
    for r in range(rounds):
        for backend in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
            times[backend].append(run(backend))
    return {**times, "ratio": sum(times["ray"]) / sum(times["local"])}


def bench_whitebox(
    epsilons: list[float],
    data: str | Path | None = None,
    arch: str = "cnn",
    epochs: int = 20,
    gradient_canaries: int = 100_000,
    device: str = "auto",
    progress=None,
) -> list[dict]:
    """`privaudit bench whitebox`: for each theoretical epsilon, one DP-SGD training (the recipe of
    `privaudit train --dp --target-epsilon E`, on the members of a half split) with the white-box
    gradient-canary audit; its bounds next to the theoretical epsilon, with the wall time."""
    from .data import member_split
    from .training import fit

    dataset = demo_dataset() if data is None else load_dataset(data)
    members, heldout = member_split(len(dataset), 0.5, 0)
    train, pool = dataset.subset(members), dataset.subset(heldout)
    rows = []
    for epsilon in epsilons:
        recipe = TrainingRecipe(arch=arch, epochs=epochs, dp=DPSettings(target_epsilon=epsilon))
        start = time.perf_counter()
        fitted = fit(
            train,
            dataset.label_names,
            recipe,
            device,
            progress,
            f"DP-SGD at epsilon {epsilon:g}",
            gradient_canaries=gradient_canaries,
        )
        wall = time.perf_counter() - start
        audit, privacy = fitted.whitebox, fitted.privacy
        assert audit is not None and privacy is not None  # DP-SGD with gradient canaries
        rows.append(
            {
                "epsilon": privacy.epsilon,
                "noise_multiplier": privacy.noise_multiplier,
                "steps": privacy.steps,
                "heldout_accuracy": fitted.classifier.accuracy(pool.texts, pool.labels),
                "whitebox": audit.to_dict(),
                "wall_s": wall,
            }
        )
    return rows


def bench_sweep(
    epsilons: list[float],
    data: str | Path | None = None,
    shadows: int = 4,
    epochs: int = 20,
    workers: int | None = None,
    device: str = "auto",
    progress=None,
    rounds: int = 2,
) -> dict:
    """`privaudit bench sweep`: a sweep against the separate runs it replaces (for each epsilon, `privaudit
    train --dp --target-epsilon E` then `privaudit mia --shadows K`), each from an empty cache, in `rounds`
    rounds whose order alternates (separate runs first, then the sweep first) so that a machine that slows
    down or warms up weighs on both alike; then the sweep once more from its cache (every point cached)."""
    import tempfile

    from .manifest import load_manifest, manifest_path
    from .mia import MiaSettings, audit_set_from_manifest, run_mia
    from .source import demo_source, file_source
    from .sweep import SweepSettings, recipe_at, run_sweep
    from .targets import train

    source = demo_source() if data is None else file_source(data)
    base = TrainingRecipe(epochs=epochs)

    def separate_runs() -> list[float]:
        times = []
        with tempfile.TemporaryDirectory() as cache:
            for epsilon in sorted(epsilons):
                start = time.perf_counter()
                model = Path(cache) / f"model-{epsilon:g}.pt"
                train(source, recipe_at(base, epsilon), out=model, device=device, progress=progress)
                mia = MiaSettings(shadows=shadows, workers=workers, cache_dir=cache, device=device)
                audit = audit_set_from_manifest(load_manifest(manifest_path(model), model))
                run_mia(model, mia, audit, progress=progress)
                times.append(time.perf_counter() - start)
        return times

    def sweep(cache: str) -> float:
        start = time.perf_counter()
        run_sweep(
            source, base, SweepSettings(epsilons, shadows, workers=workers, cache_dir=cache, device=device), progress
        )
        return time.perf_counter() - start

    separate: list[list[float]] = []
    sweeps: list[float] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as cache:
            if r % 2 == 0:
                separate.append(separate_runs())
                sweeps.append(sweep(cache))
            else:
                sweeps.append(sweep(cache))
                separate.append(separate_runs())
            rerun_s = sweep(cache)
    return {
        "epsilons": sorted(epsilons),
        "separate_s": [sum(times) for times in separate],
        "sweep_s": sweeps,
        "ratio": sum(sweeps) / sum(sum(times) for times in separate),
        "rerun_s": rerun_s,
    }


def bench_lira(
    data: str | Path | None = None,
    shadows: int = 16,
    workers: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    progress=None,
) -> dict:
    """`privaudit bench lira`: LiRA end to end against one training of its target, in one run. Trains the
    target (`privaudit train`, the default CNN recipe, half the data as members), then audits it with
    `privaudit mia --attack lira --queries 0 --shadows K` from an empty cache. Each shadow trains the same
    recipe on as many examples as the target, so K target trainings are the work a shadow pool cannot
    avoid; the benchmark prints the shadows' time and CPU time against one target training's."""
    import resource
    import tempfile

    from .manifest import load_manifest, manifest_path
    from .mia import MiaSettings, audit_set_from_manifest, run_mia
    from .source import demo_source, file_source
    from .targets import train

    def cpu_seconds() -> float:  # this process and its finished worker processes
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    source = demo_source() if data is None else file_source(data)
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "target.pt"
        wall, cpu = time.perf_counter(), cpu_seconds()
        train(source, TrainingRecipe(epochs=epochs), out=model, device=device, progress=progress, split_seed=0)
        target_s, target_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        settings = MiaSettings(
            attack="lira", shadows=shadows, queries=0, workers=workers, cache_dir=folder, device=device
        )
        audit = audit_set_from_manifest(load_manifest(manifest_path(model), model))
        members = audit.population.texts[: audit.n_members]  # a shadow trains on as many, drawn alike
        floor = convolution_floor(load_bundle(model), members, shadows, settings.shadow_workers())
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = run_mia(model, settings, audit, progress=progress)
        mia_s, mia_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    timings = result.run["timings"]
    return {
        "shadows": shadows,
        "target_training_s": target_s,
        "target_training_cpu_s": target_cpu,
        "mia_s": mia_s,
        "mia_cpu_s": mia_cpu,
        "shadow_training_s": timings["shadow_training_s"],
        "scoring_s": timings["scoring_s"],
        "metrics_s": timings["metrics_s"],
        "shadows_over_target": timings["shadow_training_s"] / target_s,
        "cpu_over_target": mia_cpu / target_cpu,
        "lira_tpr_at_fpr": {row.fpr: row.tpr for row in result.attacks["lira"].tpr_at_fpr},
        "convolution_floor": floor,
    }


def convolution_floor(bundle: ModelBundle, texts: list[str], trainings: int, cores: int) -> dict | None:
    """The arithmetic of a CNN's convolutions over `trainings` trainings of `bundle`'s recipe on training sets
    like `texts`, and the least time it takes on `cores` cores at this machine's one-thread rate for matrix
    products of those shapes: what no implementation of this model and recipe avoids on this machine.
    None for other architectures. Each text counts its packed positions, max(length, widest kernel); each
    position costs 2 k C_in C_out FLOP per kernel width k three times (forward, input and weight gradients)."""
    config = bundle.classifier.config
    if config.arch != "cnn":
        return None
    widest = max(config.kernel_sizes)
    positions = sum(max(len(ids), widest) for ids in token_ids(bundle.classifier.tokenizer, texts, config.max_len))
    per_position = 3 * 2 * sum(config.kernel_sizes) * config.embed_dim * config.num_filters
    assert bundle.recipe.epochs is not None  # a trained bundle's recipe is resolved
    flop = float(per_position) * positions * bundle.recipe.epochs * trainings
    rate = one_thread_matmul_rate(config.embed_dim, config.num_filters)
    return {"tflop": flop / 1e12, "gflops_per_core": rate / 1e9, "cores": cores, "floor_s": flop / (rate * cores)}


def one_thread_matmul_rate(inner: int, outer: int, rows: int = 640, seconds: float = 0.5) -> float:
    """FLOP/s of one thread multiplying (rows, inner) by (inner, outer) matrices: a packed CNN batch's tap."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(rows, inner), torch.randn(inner, outer)
        torch.mm(a, b)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            torch.mm(a, b)
            count += 1
        return 2.0 * rows * inner * outer * count / elapsed
    finally:
        torch.set_num_threads(threads)
