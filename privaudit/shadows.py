"""Shadow (reference) models: trained with the target's own recipe on random halves of the population.

Design (as in LiRA): every population example is IN the training set of exactly half of the shadow
models (chosen at random, seeded), so each has both IN and OUT models. Each finished shadow's logits
on the whole population are cached on disk, keyed by the recipe, the population and its training
set; beside them, the model itself (a model bundle, a few MB) and its logits on each query set
(`privaudit.queries`) asked for so far, so that a new query set costs inference, not training. A second
run, or a run after Ctrl-C, reuses every finished model and loses at most the ones in progress.
Shadows train in parallel worker processes (one thread each), which on a 2-core CPU is about 1.4x
faster than one process using both cores; or, with backend "ray", as Ray tasks on a cluster (or a local
Ray instance), each returning its files to the driver, which writes them into its own cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from . import queries
from .bundle import ModelBundle, load_bundle, save_bundle
from .data import TextDataset
from .errors import PrivauditError
from .fileio import atomic_path
from .recipe import TrainingRecipe
from .usermodel import CodeRef, UserTrainer

CACHE_FORMAT = 2  # 2: logits files carry a SHA-256 digest (entries of format 1 are not reused)
BACKENDS = ("local", "ray")
# A Ray task whose worker dies (a node lost, a process killed) is run again up to this many times.
RAY_TASK_RETRIES = 3


@dataclass
class ShadowPool:
    inclusion: np.ndarray  # (K, N) bool: example n in shadow k's training set
    logits: np.ndarray  # (K, N, C) shadow k's logits on example n
    query_logits: np.ndarray  # (K, N, Q, C) shadow k's logits on example n's Q query neighbours
    cached: int  # shadows not trained in this run (their outputs on a new query set may have been computed)
    repaired: int = 0  # damaged cache files (unreadable, or failing their digest) found and rebuilt in this run


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "privaudit"


def default_workers(device: str) -> int:
    """Two CPU processes; on `cuda`, one process per GPU (each bound to its own); on `cuda:N`, one."""
    if device == "cuda":
        return max(1, torch.cuda.device_count())
    return 1 if device.startswith("cuda") else max(1, min(2, os.cpu_count() or 1))


def gpu_slots(device: str, workers: int) -> list[int]:
    """The GPU each worker process binds itself to: with `--device cuda` and several GPUs, shadows spread
    one worker per GPU (round-robin when there are more workers than GPUs); otherwise none."""
    count = torch.cuda.device_count() if device == "cuda" else 0
    return [k % count for k in range(workers)] if count > 1 and workers > 1 else []


def inclusion_matrix(n: int, k: int, seed: int) -> np.ndarray:
    """(k, n) bool with exactly k//2 (or, for odd k, alternately k//2 and k//2 + 1) IN models per example."""
    if k < 2:
        raise PrivauditError("shadow attacks need at least 2 shadow models (each example IN one, OUT one)")
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((k, n)), axis=0)
    n_in = np.full(n, k // 2) + (np.arange(n) % 2 if k % 2 else 0)
    return ranks < n_in[None, :]


def _cache_key(trainer: dict, population_digest: str, labels: list[str], members: np.ndarray) -> str:
    """`trainer`: the shadow's recipe (a dict), or the user's trainer identity and seed."""
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "recipe": trainer,
            "population": population_digest,
            "labels": labels,
            "members": hashlib.sha256(np.packbits(members).tobytes()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def population_digest(population: TextDataset) -> str:
    return hashlib.sha256("\n".join(population.fingerprints()).encode()).hexdigest()


# Worker-process state: the population is sent once per worker, not once per shadow.
_WORKER: dict = {}


def _set_population(population: TextDataset, label_names: list[str], query_texts: list[str]) -> None:
    _WORKER["population"] = population
    _WORKER["label_names"] = label_names
    _WORKER["query_texts"] = query_texts


def _init_worker(population_file: str, slots=None) -> None:
    """A worker process: one torch thread, the population (from `population_file`, written by
    _write_population); with `slots` (a queue of GPU indices, one per worker), its own GPU, where `cuda`
    then puts every tensor of its shadows."""
    torch.set_num_threads(1)
    if slots is not None:
        torch.cuda.set_device(slots.get())
    parts = json.loads(Path(population_file).read_text(encoding="utf-8"))
    _set_population(TextDataset(parts["texts"], parts["labels"]), parts["label_names"], parts["query_texts"])


def _write_population(path: Path, population: TextDataset, label_names: list[str], query_texts: list[str]) -> None:
    """The population for the workers, as a file. Spawn writes a worker's initializer arguments down a pipe
    that the worker reads only once it has imported torch (about 1.7 s here): with the population's texts in
    them the pipe filled, and each worker's start waited for the one before (3.5 s for two). A path keeps
    that write small, so the workers start side by side."""
    parts = {"texts": population.texts, "labels": population.labels}
    path.write_text(json.dumps(parts | {"label_names": label_names, "query_texts": query_texts}), encoding="utf-8")


@dataclass(frozen=True)
class ShadowEntry:
    """One shadow model's cache files."""

    logits: Path  # its logits on the population: present = the entry is complete
    model: Path  # the model itself (a model bundle), so that new query sets need no retraining
    queries: Path | None  # its logits on the query neighbours asked for now


def _train(how: dict, members: np.ndarray, entry: ShadowEntry, device: str) -> str:
    """Train one shadow: `how` is {"recipe": a recipe's dict} or {"trainer", "folder", "seed"} (the user's)."""
    from .training import fit

    population: TextDataset = _WORKER["population"]
    label_names: list[str] = _WORKER["label_names"]
    data = population.subset(np.flatnonzero(members))
    if "recipe" in how:
        fitted = fit(data, label_names, TrainingRecipe.from_dict(how["recipe"]), device)
        # The model first, the population logits last: those mark the entry complete.
        save_bundle(
            ModelBundle(fitted.classifier, fitted.recipe, int(members.sum()), fitted.privacy), entry.model, private=True
        )
        logits: Callable[[list[str]], torch.Tensor] = fitted.classifier.logits
    else:  # the user's own model is not saved: a new query set trains it again
        model = UserTrainer(CodeRef(how["trainer"], how["folder"])).train(data, how["seed"])
        logits = functools.partial(model.logits_in_order, labels=label_names)

    _save_query_logits(logits, entry)
    _write_logits(entry.logits, logits(population.texts))
    return "trained"


def _query(how: dict, members: np.ndarray, entry: ShadowEntry, device: str) -> str:
    """A cached shadow model's outputs on a new query set: no retraining, unless its model file turns out
    damaged (a model bundle checks its own digest): then it is removed and the shadow trained again."""
    try:
        classifier = load_bundle(entry.model, device).classifier
    except PrivauditError:
        entry.model.unlink(missing_ok=True)
        _train(how, members, entry, device)
        return "repaired"
    _save_query_logits(classifier.logits, entry)
    return "queried"


def _save_query_logits(logits: Callable[[list[str]], torch.Tensor], entry: ShadowEntry) -> None:
    if entry.queries is not None:
        _write_logits(entry.queries, logits(_WORKER["query_texts"]))


def _write_logits(path: Path, logits: torch.Tensor) -> None:
    logits = logits.contiguous()
    with atomic_path(path, private=True) as tmp:
        torch.save({"logits": logits, "digest": _digest(logits)}, tmp)


def _digest(logits: torch.Tensor) -> str:
    return hashlib.sha256(str(tuple(logits.shape)).encode() + logits.numpy().tobytes()).hexdigest()


def _load_logits(path: Path) -> np.ndarray:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        logits = payload["logits"]
        if not isinstance(logits, torch.Tensor) or payload.get("digest") != _digest(logits.contiguous()):
            raise ValueError("its digest does not match its contents")
        return logits.numpy()
    except Exception as exc:  # never used: removed, so that it is rebuilt
        path.unlink(missing_ok=True)
        raise PrivauditError(f"damaged shadow-model cache entry {path} ({exc}); it was removed, run again") from None


def _status(path: Path | None, loaded: dict[Path, np.ndarray]) -> str:
    """ "ok" (or not asked for; what was read is kept in `loaded`), "missing", or "damaged": unreadable or
    failing its digest, then removed."""
    if path is None:
        return "ok"
    if not path.is_file():
        return "missing"
    try:
        loaded[path] = _load_logits(path)
    except PrivauditError:
        return "damaged"
    return "ok"


def train_shadows(
    population: TextDataset,
    label_names: list[str],
    recipe: TrainingRecipe | UserTrainer,
    num_shadows: int,
    seed: int,
    cache_dir: Path,
    workers: int = 1,
    device: str = "cpu",
    progress: Progress | None = None,
    query_neighbours: list[list[str]] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> ShadowPool:
    """Train (or load from the cache) `num_shadows` shadow models with `recipe` (privaudit's trainer) or the
    user's own trainer; returns their logits on the population and on each example's query neighbours
    (`privaudit.queries.neighbours`; none: Q = 0), columns in the order of `label_names`. A damaged
    cache file is never used: the shadow is rebuilt in the same run, and `ShadowPool.repaired` says so.

    `backend` "local" trains in `workers` processes here; "ray" trains each shadow as a Ray task (on the
    cluster at `ray_address`, or a local Ray instance of `workers` CPUs), whose files come back to this
    cache: the same cache keys, so a later local run reuses them. Queries of cached models run here."""
    inclusion = inclusion_matrix(len(population), num_shadows, seed)
    digest = population_digest(population)
    cache_dir = Path(cache_dir) / "shadows"
    # Owner-only, like every file in it: shadow models and their outputs are as sensitive as the data.
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    query_count = len(query_neighbours[0]) if query_neighbours else 0
    query_texts = queries.flatten(query_neighbours) if query_neighbours and query_count else []
    query_digest = queries.digest(query_neighbours) if query_neighbours and query_count else ""
    # Shadows differ from the target and from each other only in their data and their seed.
    hows: list[dict] = []
    for i in range(num_shadows):
        if isinstance(recipe, UserTrainer):
            ref = recipe.trainer
            hows.append({"trainer": ref.spec, "folder": ref.folder, "seed": seed * 1000 + i + 1})
        else:
            hows.append({"recipe": replace(recipe, seed=recipe.seed + 1 + seed * 1000 + i).to_dict()})
    identity = recipe.identity() if isinstance(recipe, UserTrainer) else {}
    entries = []
    for i, how in enumerate(hows):
        what = how["recipe"] if "recipe" in how else {**identity, "seed": how["seed"]}
        key = _cache_key(what, digest, label_names, inclusion[i])
        query_path = cache_dir / f"{key}.queries-{query_digest}.pt" if query_count else None
        entries.append(ShadowEntry(cache_dir / f"{key}.pt", cache_dir / f"{key}.model.pt", query_path))
    jobs: list[tuple[Callable[..., str], tuple]] = []
    damaged = 0
    loaded: dict[Path, np.ndarray] = {}  # the cache files read while checking them: not read twice
    for i, entry in enumerate(entries):
        statuses = (_status(entry.logits, loaded), _status(entry.queries, loaded))
        damaged += statuses.count("damaged")
        if statuses != ("ok", "ok"):
            # The job may write both files again (a retrained DP recipe is another model): read after it.
            for path in (entry.logits, entry.queries):
                if path is not None:
                    loaded.pop(path, None)
            job = _query if statuses[0] == "ok" and entry.model.is_file() else _train
            jobs.append((job, (hows[i], inclusion[i], entry, device)))
    task = (
        progress.add_task("shadow models", total=num_shadows, completed=num_shadows - len(jobs))
        if progress is not None
        else None
    )
    outcomes: list[str] = []
    if jobs and backend == "ray":
        population_parts = (population.texts, population.labels, label_names, query_texts)
        trainings = [args for job, args in jobs if job is _train]
        if trainings:  # queries of cached models need no Ray
            outcomes += _run_on_ray(trainings, population_parts, workers, ray_address, progress, task)
        jobs = [(job, args) for job, args in jobs if job is not _train]
    if jobs:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            processes = min(workers, len(jobs))
            gpus, slots = gpu_slots(device, processes), None
            if gpus:
                slots = context.Queue()
                for gpu in gpus:
                    slots.put(gpu)
            handover = tempfile.TemporaryDirectory()
            population_file = Path(handover.name) / "population.json"
            _write_population(population_file, population, label_names, query_texts)
            with (
                handover,
                ProcessPoolExecutor(
                    processes, mp_context=context, initializer=_init_worker, initargs=(str(population_file), slots)
                ) as pool,
            ):
                futures = [pool.submit(job, *args) for job, args in jobs]
                try:
                    for future in as_completed(futures):
                        outcomes.append(future.result())
                        if progress is not None and task is not None:
                            progress.advance(task)
                except BaseException:
                    # Interrupted (Ctrl-C, or SIGTERM/SIGHUP, which privaudit.cli turns into the same):
                    # the workers are stopped now, not left training until their shadow is done. A
                    # finished shadow is already in the cache; an unfinished one never reaches it
                    # (written atomically).
                    _stop_workers(pool)
                    raise
        else:
            _set_population(population, label_names, query_texts)
            for job, args in jobs:
                outcomes.append(job(*args))
                if progress is not None and task is not None:
                    progress.advance(task)

    def read(path: Path) -> np.ndarray:
        return loaded[path] if path in loaded else _load_logits(path)

    logits = np.stack([read(e.logits) for e in entries])
    n, c = len(population), len(label_names)
    query_logits = (
        np.stack([read(e.queries).reshape(n, query_count, c) for e in entries if e.queries is not None])
        if query_count
        else np.zeros((num_shadows, n, 0, c), np.float32)
    )
    trained = sum(outcome != "queried" for outcome in outcomes)
    return ShadowPool(inclusion, logits, query_logits, num_shadows - trained, damaged + outcomes.count("repaired"))


def _run_on_ray(
    trainings: list[tuple], population: tuple, workers: int, address: str | None, progress, task
) -> list[str]:
    """Each (how, members, entry, device) as a Ray task of one CPU (and one GPU on a CUDA device), retried
    when its worker dies; every finished task's files are written into the local cache as it comes back.
    Interrupted (Ctrl-C, SIGTERM), every unfinished task is cancelled, its worker stopped."""
    try:
        import ray
    except ImportError:
        raise PrivauditError("--backend ray needs Ray: pip install 'privaudit[ray]'") from None
    if not ray.is_initialized():
        try:
            if address is None:  # a local instance of `workers` CPUs, gone when this process ends
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a new local instance"
            raise PrivauditError(f"cannot reach the Ray cluster at {where}: {exc}") from None
    population_ref = ray.put(population)
    device = trainings[0][3]  # every shadow of one run trains on the same device
    gpus = 1 if device.startswith("cuda") else 0
    remote = ray.remote(_train_on_ray_worker).options(num_cpus=1, num_gpus=gpus, max_retries=RAY_TASK_RETRIES)
    task_refs = {
        remote.remote(population_ref, how, members, entry.queries is not None, device): entry
        for how, members, entry, _ in trainings
    }
    pending, outcomes = list(task_refs), []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                _store(ray.get(ref), task_refs[ref])
                outcomes.append("trained")
                if progress is not None and task is not None:
                    progress.advance(task)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return outcomes


def _train_on_ray_worker(population: tuple, how: dict, members: np.ndarray, queries: bool, device: str) -> dict:
    """A Ray task: train one shadow in a scratch folder of the worker and return its files' bytes (the
    worker's disk may be another machine's)."""
    import tempfile

    torch.set_num_threads(1)  # the task asked Ray for one CPU
    texts, labels, label_names, query_texts = population
    _set_population(TextDataset(texts, labels), label_names, query_texts)
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        scratch = ShadowEntry(here / "logits", here / "model", here / "queries" if queries else None)
        _train(how, members, scratch, device)
        return {name: path.read_bytes() for name, path in _files(scratch) if path.is_file()}


def _files(entry: ShadowEntry) -> list[tuple[str, Path]]:
    """An entry's files in the order they are written: the population logits last (they mark it complete)."""
    files = [("model", entry.model)] + ([("queries", entry.queries)] if entry.queries is not None else [])
    return [*files, ("logits", entry.logits)]


def _store(files: dict[str, bytes], entry: ShadowEntry) -> None:
    for name, path in _files(entry):
        if name in files:
            with atomic_path(path, private=True) as tmp:
                tmp.write_bytes(files[name])


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the worker processes. The executor has no public way
    to stop a running task before Python 3.14 (terminate_workers), so its process table is used."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
