"""One OpenMP runtime per process, so that FFTW's threads and the Numba kernels' threads are one team.

pyFFTW's wheels carry their own copy of GNU libgomp, Numba's ``omp`` threading layer links the
system's ``libgomp.so.1`` and torch's wheels carry a third copy. Each copy loaded under its own name
is a separate OpenMP runtime with its own worker threads, and after a parallel region those
workers spin for a while waiting for the next one. With as many threads as cores, the spinning
workers of one runtime hold the cores that the other runtime's threads need: Numba-parallel
kernels beside FFTW's own runtime made a step many times slower on the 2-core machine of
docs/benchmarks.md (``bench/solver_harness.py: measure_kernel_threading`` times that pairing).

:func:`share` makes the process use one runtime. Before pyFFTW is imported, it puts a libgomp
into the process's global symbol scope: the copy torch has already loaded if there is one
(promoted with ``RTLD_NOLOAD``), else the system's ``libgomp.so.1``. The OpenMP calls of every
library loaded afterwards (pyFFTW's FFTW, Numba's ``omp`` layer) then resolve to that copy,
because the dynamic linker searches the global scope before a library's own dependencies.
:func:`solver.backends.numpy_fft._pyfftw` calls it, so the first backend of a process does.

It cannot work after the fact: when pyFFTW or Numba's ``omp`` layer was loaded first, or no
libgomp can be loaded, :func:`shared` is False and the hot loop keeps its kernels serial and
shares out pieces on its own thread team (:mod:`solver.workers`) instead.
``TURBTL_SHARED_OPENMP=0`` turns sharing off.
"""
from __future__ import annotations

import ctypes
import os
import sys

SHARED_OPENMP_ENV = "TURBTL_SHARED_OPENMP"
SYSTEM_LIBGOMP = "libgomp.so.1"

#: the outcome of :func:`share`: empty before it ran, else [shared, one line saying why]
_STATE: list = []


def _loaded_libgomp() -> str | None:
    """The path of a libgomp already mapped into this process (torch's copy, typically)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if "libgomp" in os.path.basename(path):
                    return path
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def share() -> bool:
    """Put one libgomp into the global symbol scope before pyFFTW loads (see the module doc).
    Idempotent; returns :func:`shared`."""
    if _STATE:
        return _STATE[0]
    if os.environ.get(SHARED_OPENMP_ENV, "").strip() == "0":
        _STATE[:] = [False, f"off ({SHARED_OPENMP_ENV}=0)"]
    elif "pyfftw" in sys.modules:
        _STATE[:] = [False, "not shared: pyFFTW was imported before the solver's first backend"]
    elif "numba.np.ufunc.omppool" in sys.modules:
        _STATE[:] = [False, "not shared: Numba's OpenMP layer was loaded before the solver's first backend"]
    else:
        path = _loaded_libgomp()
        try:
            if path is not None:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL | getattr(os, "RTLD_NOLOAD", 4))
                _STATE[:] = [True, f"shared: {os.path.basename(path)} (already loaded) serves every library"]
            else:
                ctypes.CDLL(SYSTEM_LIBGOMP, mode=ctypes.RTLD_GLOBAL)
                _STATE[:] = [True, f"shared: the system's {SYSTEM_LIBGOMP} serves every library"]
        except OSError as exc:
            _STATE[:] = [False, f"not shared: no libgomp could be loaded ({exc})"]
    return _STATE[0]


def shared() -> bool:
    """Whether :func:`share` made one runtime serve the process (False before it ran)."""
    return bool(_STATE and _STATE[0])


def describe() -> str:
    """One line for ``turbtl info`` and provenance."""
    return _STATE[1] if _STATE else "not decided yet (no solver backend built in this process)"
