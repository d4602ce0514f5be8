"""The benchmarks run and measure what they say (their figures are the README's; here only that they hold).
Slow lane: each spends most of its time on imports, fresh processes and warm-up."""

import pytest

from privaudit.bench import bench_dp, bench_memory

pytestmark = pytest.mark.slow


def test_bench_dp_times_every_mode_side_by_side():
    rows = {r["mode"]: r for r in bench_dp(["cnn"], batch_size=16, steps=1)}
    noise, rest = "privaudit: its noise draw alone", "privaudit DP-SGD, noise skipped (not DP)"
    assert list(rows) == ["non-DP", "privaudit DP-SGD", "Opacus (hooks)", "Opacus (ghost clipping)", noise, rest]
    assert rows["non-DP"]["ratio"] == 1.0
    for mode in ("privaudit DP-SGD", "Opacus (hooks)", "Opacus (ghost clipping)", noise, rest):
        assert rows[mode]["error"] is None and rows[mode]["ms"] > 0, rows[mode]


def test_a_large_logical_batch_takes_the_memory_of_its_physical_batch():
    small, accumulated, whole = bench_memory([(32, 32), (512, 32), (512, 512)], steps=4)
    assert accumulated["peak_mb"] <= 1.2 * small["peak_mb"]
    assert whole["rise_mb"] > accumulated["rise_mb"]  # without accumulation the activations of 512 show
