"""DP fine-tuning with the default recipes on SNIPS: held-out accuracy with and without DP-SGD, wall time and
peak memory, for bert-tiny (from scratch) and for a pretrained Hugging Face directory built here (masked-
language modelling on the built-in synthetic corpus: public text, nothing downloaded).

`python tests/dp_finetuning.py [ARCH ...]` prints the README's table (archs: bert-tiny, pretrained); the
slow lane (test_dp_finetuning_slow.py) asserts the issue's goals on the same runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNIPS_TRAIN = HERE.parents[0].parent / "shared" / "data" / "snips" / "train.csv"
EPSILONS = (8.0, 1.0)


@dataclass
class Run:
    arch: str
    epsilon: float | None  # None: without DP-SGD
    heldout_accuracy: float
    seconds: float
    peak_mb: float
    recipe: str


def pretrained_directory(folder: Path) -> Path:
    sys.path.insert(0, str(HERE))
    from hf_checkpoints import pretrain_bert

    from privaudit.demo import demo_dataset

    return pretrain_bert(folder, demo_dataset(3500, seed=123).texts, epochs=8)


def measure(arch: str, epsilons=EPSILONS, data: Path = SNIPS_TRAIN, split_seed: int = 0) -> list[Run]:
    """Non-DP, then DP-SGD at each epsilon, every recipe option left at its default, on one member split."""
    from privaudit.bench import reset_peak_resident, resident_kb
    from privaudit.data import load_dataset, member_split
    from privaudit.recipe import DPSettings, TrainingRecipe
    from privaudit.training import fit

    dataset = load_dataset(data)
    members, heldout = member_split(len(dataset), 0.5, split_seed)
    train, pool = dataset.subset(members), dataset.subset(heldout)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        name = arch if arch != "pretrained" else f"hf:{pretrained_directory(Path(folder) / 'pretrained')}"
        for epsilon in (None, *epsilons):
            recipe = TrainingRecipe(arch=name, dp=None if epsilon is None else DPSettings(target_epsilon=epsilon))
            reset_peak_resident()
            start = time.perf_counter()
            fitted = fit(train, dataset.label_names, recipe)
            seconds = time.perf_counter() - start
            r = fitted.recipe
            runs.append(
                Run(
                    arch,
                    epsilon,
                    fitted.classifier.accuracy(pool.texts, pool.labels),
                    seconds,
                    resident_kb() / 1024,
                    f"{r.epochs} epochs, batch {r.batch_size}, {r.optimizer} lr {r.lr:g}"
                    + (f", noise {r.dp.noise_multiplier:.3f}" if r.dp else ""),
                )
            )
    return runs


def majority_rate(data: Path = SNIPS_TRAIN) -> float:
    from collections import Counter

    from privaudit.data import load_dataset

    labels = load_dataset(data).labels
    return Counter(labels).most_common(1)[0][1] / len(labels)


def table(runs: list[Run]) -> str:
    lines = ["| model | epsilon | held-out acc. | DP / non-DP | recipe (defaults) | wall time | peak memory |"]
    lines.append("|---|---|---|---|---|---|---|")
    base = {r.arch: r.heldout_accuracy for r in runs if r.epsilon is None}
    for r in runs:
        ratio = "" if r.epsilon is None else f"{r.heldout_accuracy / base[r.arch]:.3f}"
        eps = "no DP" if r.epsilon is None else f"{r.epsilon:g}"
        lines.append(
            f"| {r.arch} | {eps} | {r.heldout_accuracy:.3f} | {ratio} | {r.recipe} | {r.seconds:.0f} s | "
            f"{r.peak_mb:.0f} MB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    archs = sys.argv[1:] or ["bert-tiny", "pretrained"]
    all_runs = []
    for arch in archs:
        all_runs += measure(arch)
        print(table(all_runs), flush=True)
    print(f"majority class: {majority_rate():.3f}")
