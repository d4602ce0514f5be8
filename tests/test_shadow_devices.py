"""Shadow models on several GPUs: with `--device cuda`, one worker process per GPU, each bound to its own.
(No GPU here: torch.cuda's answers are replaced; the binding is what a worker does at start.)"""

import queue

import torch


def test_shadows_spread_one_worker_per_gpu(monkeypatch):
    from privaudit import shadows

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert shadows.default_workers("cuda") == 3 and shadows.default_workers("cuda:1") == 1
    assert shadows.gpu_slots("cuda", 3) == [0, 1, 2] and shadows.gpu_slots("cuda", 4) == [0, 1, 2, 0]
    assert shadows.gpu_slots("cuda:1", 3) == [] and shadows.gpu_slots("cpu", 2) == []
    assert shadows.gpu_slots("cuda", 1) == []  # one process: it uses the current GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert shadows.gpu_slots("cuda", 2) == []


def test_a_worker_binds_itself_to_the_gpu_it_is_handed(monkeypatch, tmp_path):
    from privaudit import shadows
    from privaudit.data import TextDataset

    bound = []
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)
    slots = queue.Queue()
    slots.put(2)
    threads = torch.get_num_threads()
    try:
        population = tmp_path / "population.json"
        shadows._write_population(population, TextDataset(["a text", "another"], ["x", "y"]), ["x", "y"], [])
        shadows._init_worker(str(population), slots)
    finally:
        torch.set_num_threads(threads)
    assert bound == [2] and slots.empty()
