"""Shadow models as Ray tasks on a local Ray instance (`--backend ray`): the local pool's outputs, a killed
worker's task retried with nothing lost, a later local run reusing what Ray trained, Ctrl-C stopping the
tasks. Slow lane: a Ray instance and its workers take seconds to start (tens on a busy machine)."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from privaudit.demo import demo_dataset
from privaudit.recipe import TrainingRecipe
from privaudit.shadows import train_shadows

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

POPULATION = demo_dataset(200, seed=5)
RECIPE = TrainingRecipe(epochs=3).resolved(100)
SHADOWS = 4
TASK = "ray::_train_on_ray_worker"  # a Ray worker's process title while it runs a shadow's task


def shadows(cache, backend="local"):
    return train_shadows(POPULATION, POPULATION.label_names, RECIPE, SHADOWS, 0, cache, workers=2, backend=backend)


def task_pids() -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if TASK in line]


@pytest.fixture(scope="module")
def local_pool(tmp_path_factory):
    return shadows(tmp_path_factory.mktemp("local"))  # two spawned processes, one thread each, as Ray's tasks


def test_ray_gives_the_local_pools_outputs_and_a_local_run_reuses_them(tmp_path, local_pool):
    pool = shadows(tmp_path, "ray")
    assert pool.cached == 0 and np.array_equal(pool.logits, local_pool.logits)
    again = shadows(tmp_path)  # what Ray trained is in this machine's cache, under the same keys
    assert again.cached == SHADOWS and np.array_equal(again.logits, local_pool.logits)


def test_a_killed_worker_is_retried_and_nothing_is_lost(tmp_path, local_pool):
    killed = []

    def kill_one_task():
        while not killed:  # until a shadow's task is running (the pool below waits for it)
            for pid in task_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_task, daemon=True)
    killer.start()
    pool = shadows(tmp_path, "ray")
    assert killed, "no Ray task was seen running"
    assert pool.cached == 0 and np.array_equal(pool.logits, local_pool.logits)


def test_ctrl_c_stops_the_tasks(tmp_path):
    script = (
        "from privaudit.demo import demo_dataset; from privaudit.recipe import TrainingRecipe;"
        "from privaudit.shadows import train_shadows; d = demo_dataset(200, seed=5);"
        f"train_shadows(d, d.label_names, TrainingRecipe(epochs=100000).resolved(100), 2, 0, {str(tmp_path)!r},"
        " workers=2, backend='ray')"
    )
    driver = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        while not task_pids():  # the shadows are training
            assert driver.poll() is None, driver.stderr.read()
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        assert driver.wait() != 0
    finally:
        driver.kill()
    while task_pids():  # the tasks end with their driver; the test fails by never ending if they don't
        time.sleep(0.2)
    assert not list(tmp_path.rglob("*.pt")), "an unfinished shadow reached the cache"
