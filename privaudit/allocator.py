"""The host memory allocator, set for training loops.

A training step frees and re-allocates the same large tensors (activations, their gradients, DP-SGD's
saved layer inputs and output gradients) at every step. With glibc's default, adaptive thresholds, blocks
above the mmap threshold are returned to the kernel when freed and the heap's top is trimmed when it shrinks,
so the next step takes every page of those tensors again as a fresh page fault. Measured with `bench dp` on
bert-tiny (2 CPUs, batch 64): about 2,000 page faults and 3-4 ms of kernel time a DP-SGD step, 400 a step
of ordinary training; with the thresholds below, none once the first steps have run (README "Performance").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems: tensors up to 32 MiB come from the heap and stay
# there when freed; larger ones are still mapped and unmapped, their page faults small next to their use.
MMAP_THRESHOLD = 32 * 2**20
# The free memory the heap's top keeps instead of handing back to the kernel: a step's churn, with room.
TRIM_THRESHOLD = 512 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Has glibc keep the memory a training step frees for the next step (see the module's docstring); True
    if it took the setting. Process-wide and for the process's lifetime; a no-op where the C library is not
    glibc (macOS, Windows, musl). `fit` and `privaudit bench dp` call it; calling it again does nothing."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting either threshold also turns off glibc's adaptive adjustment of both.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
