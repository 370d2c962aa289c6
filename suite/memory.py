"""Host-memory policy of training processes: freed memory is kept for the next step (glibc malloc).

A CPU training step of the paper network (128², batch 16, 64 channels) allocates each activation
and each of their gradients as a fresh tensor of tens of MB, and frees it within the step.
glibc's ``malloc`` serves every request above its mmap threshold (which never exceeds 32 MiB on
64-bit Linux) by a new ``mmap`` and gives it back to the kernel on ``free``, so every step
page-faults and zero-fills all of that memory again: the elementwise work of the step (ReLU, its
backward, the circular halos) then runs several times slower than the same work on reused memory,
and the step spends a large share of its time in the kernel (``bench/training_harness.py``
measures the step with and without this policy side by side; docs/benchmarks.md has the figures).

:func:`keep_freed_memory` switches the process to glibc's heap for every size (``M_MMAP_MAX`` 0)
and stops it returning freed memory at the top of the heap (``M_TRIM_THRESHOLD`` at its maximum):
after the first few steps the heap has settled and hands the same pages back, so nothing is faulted
again. The cost: the process keeps its peak resident memory until it exits, and that peak is
higher than with the default (a heap fragments where fresh mappings do not; the benchmark
``bench/training.py: StepMemory`` records it), which suits a training process.
:func:`suite.train.fit` calls it; ``TURBTL_KEEP_FREED_MEMORY=0`` in the environment turns it off.
Elsewhere than glibc (macOS, musl) it does nothing and returns False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: the largest trim threshold mallopt accepts (an int)
TRIM_MAX = 2**31 - 1
ENV = "TURBTL_KEEP_FREED_MEMORY"

_applied = False


def _libc():
    """glibc's ``libc``, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - a Linux without a loadable libc
        return None


def keep_freed_memory(environ=None) -> bool:
    """Keep freed memory in the process for reuse (see the module doc); True when in effect.

    Idempotent; ``TURBTL_KEEP_FREED_MEMORY=0`` (in ``environ``, default ``os.environ``) leaves
    the allocator as it is and returns False."""
    global _applied
    env = os.environ if environ is None else environ
    if env.get(ENV, "1").strip() == "0":
        return False
    if _applied:
        return True
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_MAX) == 1
    _applied = bool(ok)
    return _applied
