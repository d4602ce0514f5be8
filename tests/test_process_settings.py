"""The process settings privaudit makes for training speed (README "Performance"): the allocator `fit` sets
(DP-SGD's steps stop taking page faults)."""

import subprocess
import sys
import textwrap

import pytest

# A process of its own per run: the setting is process-wide, and the pytest process has already trained.
STEPS = textwrap.dedent(
    """
    import resource, sys
    import torch
    from privaudit.allocator import keep_freed_memory
    from privaudit.models import ModelConfig, bert_tiny_config, build_model
    from privaudit.recipe import DPSettings, TrainingRecipe
    from privaudit.training import dp_step, dp_update

    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.manual_seed(0)
    vocab = 2000
    model = build_model(ModelConfig("bert-tiny", 4, vocab, 0, hf_config=bert_tiny_config(vocab, 4, 0, 64, 0.1)))
    recipe = TrainingRecipe(arch="bert-tiny", batch_size=64, dp=DPSettings(noise_multiplier=1.0)).resolved(1000)
    update = dp_update(model.train(), recipe, 64, "cpu", seed=1)
    batches = []
    for length in [19, 36, 23, 28, 30]:  # padded lengths vary from batch to batch, as in SNIPS
        ids = torch.randint(1, vocab, (64, length))
        batches.append((ids, torch.ones_like(ids), torch.randint(0, 4, (64,))))

    def run():
        for chunk in batches:
            dp_step(update.clipper, update.noise, model, update.optimizer, [chunk], 64, tables=update.tables)

    run(); run()
    counts = []
    for _ in range(5):  # the median run: the heap still moves now and then (one run in five or so)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run()
        counts.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(batches))
    print(sorted(counts)[2])
    """
)


def faults_per_step(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_dp_steps_keep_their_memory_instead_of_faulting_it_in_again():
    default, kept = faults_per_step("default"), faults_per_step("keep")
    # glibc's adaptive thresholds hand a step's large tensors back to the kernel: hundreds of page faults a step
    assert default > 100, default
    assert kept < default / 10, (kept, default)
