"""Where tensors go: `--device auto|cpu|cuda[:N]`, resolved once by the library (not by the CLI), so the
Python API takes the same names the command line does."""

from __future__ import annotations

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
