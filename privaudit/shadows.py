"""Shadow (reference) models: trained with the target's own recipe on random halves of the population.

Design (as in LiRA): every population example is IN the training set of exactly half of the shadow
models (chosen at random, seeded), so each has both IN and OUT models. Each finished shadow's logits
on the whole population are cached on disk, keyed by the recipe, the population and its training
set: a second run, or a run after Ctrl-C, reuses every finished model and loses at most the ones in
progress. Shadows train in parallel worker processes (one thread each), which on a 2-core CPU is
about 1.4x faster than one process using both cores.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from .data import TextDataset
from .errors import PrivauditError
from .fileio import atomic_path
from .recipe import TrainingRecipe

CACHE_FORMAT = 1


@dataclass
class ShadowPool:
    inclusion: np.ndarray  # (K, N) bool: example n in shadow k's training set
    logits: np.ndarray  # (K, N, C) shadow k's logits on example n
    cached: int  # how many shadows came from the cache


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "privaudit"


def default_workers(device: str) -> int:
    return 1 if device.startswith("cuda") else max(1, min(2, os.cpu_count() or 1))


def inclusion_matrix(n: int, k: int, seed: int) -> np.ndarray:
    """(k, n) bool with exactly k//2 (or, for odd k, alternately k//2 and k//2 + 1) IN models per example."""
    if k < 2:
        raise PrivauditError("shadow attacks need at least 2 shadow models (each example IN one, OUT one)")
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((k, n)), axis=0)
    n_in = np.full(n, k // 2) + (np.arange(n) % 2 if k % 2 else 0)
    return ranks < n_in[None, :]


def _cache_key(recipe: TrainingRecipe, population_digest: str, labels: list[str], members: np.ndarray) -> str:
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "recipe": recipe.to_dict(),
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


def _set_population(population: TextDataset, label_names: list[str]) -> None:
    _WORKER["population"] = population
    _WORKER["label_names"] = label_names


def _init_worker(texts: list[str], labels: list[str], label_names: list[str]) -> None:
    torch.set_num_threads(1)
    _set_population(TextDataset(texts, labels), label_names)


def _train_one(recipe_dict: dict, members: np.ndarray, path: str, device: str) -> str:
    from .training import fit

    population: TextDataset = _WORKER["population"]
    recipe = TrainingRecipe.from_dict(recipe_dict)
    fitted = fit(population.subset(np.flatnonzero(members)), _WORKER["label_names"], recipe, device)
    logits = fitted.classifier.logits(population.texts)
    with atomic_path(path) as tmp:
        torch.save({"logits": logits}, tmp)
    return path


def train_shadows(
    population: TextDataset,
    label_names: list[str],
    recipe: TrainingRecipe,
    num_shadows: int,
    seed: int,
    cache_dir: Path,
    workers: int = 1,
    device: str = "cpu",
    progress: Progress | None = None,
) -> ShadowPool:
    """Train (or load from the cache) `num_shadows` shadow models; returns their logits on the population."""
    inclusion = inclusion_matrix(len(population), num_shadows, seed)
    digest = population_digest(population)
    cache_dir = Path(cache_dir) / "shadows"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Shadows differ from the target and from each other only in their data and their seed.
    recipes = [replace(recipe, seed=recipe.seed + 1 + seed * 1000 + i) for i in range(num_shadows)]
    paths = [cache_dir / f"{_cache_key(r, digest, label_names, inclusion[i])}.pt" for i, r in enumerate(recipes)]
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    task = (
        progress.add_task("shadow models", total=num_shadows, completed=num_shadows - len(todo))
        if progress is not None
        else None
    )
    if todo:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                min(workers, len(todo)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(population.texts, population.labels, label_names),
            ) as pool:
                futures = [
                    pool.submit(_train_one, recipes[i].to_dict(), inclusion[i], str(paths[i]), device) for i in todo
                ]
                try:
                    for future in as_completed(futures):
                        future.result()
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
            _set_population(population, label_names)
            for i in todo:
                _train_one(recipes[i].to_dict(), inclusion[i], str(paths[i]), device)
                if progress is not None and task is not None:
                    progress.advance(task)
    logits = np.stack([_load_logits(p) for p in paths])
    return ShadowPool(inclusion, logits, num_shadows - len(todo))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the worker processes. The executor has no public way
    to stop a running task before Python 3.14 (terminate_workers), so its process table is used."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _load_logits(path: Path) -> np.ndarray:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["logits"].numpy()
    except Exception as exc:  # a damaged cache entry: drop it so the next run retrains that model
        path.unlink(missing_ok=True)
        raise PrivauditError(f"damaged shadow-model cache entry {path} ({exc}); it was removed, run again") from None
