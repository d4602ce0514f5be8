"""Where tensors go: `--device auto|cpu|cuda[:N]`, resolved once by the library (not by the CLI), so the
Python API takes the same names the command line does."""

from __future__ import annotations

import os
import platform

import torch

from .errors import PrivauditError

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."


def resolve_device(name: str) -> str:
    """ "auto" becomes "cuda" when a CUDA device is present, else "cpu"; other names are checked."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PrivauditError(f"--device {name}: no CUDA device is available")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise PrivauditError(f"unknown device {name!r} (use {DEVICE_HELP})")
    return name


def machine_description() -> str:
    """The machine a benchmark's figures belong to: CPU model, cores and torch's threads, torch's version, and the
    CUDA device `--device auto` would use. Ratios change from one CPU to another (the README's tables name it)."""
    cpu = _cpu_model() or platform.processor() or platform.machine() or "unknown CPU"
    text = f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} on {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f"; CUDA: {torch.cuda.get_device_name(0)}"
    return text


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as lines:
            return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    except OSError:  # not Linux
        return None
