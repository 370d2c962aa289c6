"""FFT backends (docs/CONTRACTS.md, "Solver FFT backend") and :func:`make_backend`, the one way to get
one: numpy/pyFFTW (:mod:`.numpy_fft`), torch CPU/CUDA (:mod:`.torch_fft`), MPI slabs
(:mod:`.slab`), all implementing :class:`.base.FFTBackend`.

    >>> from solver.backends import make_backend
    >>> be = make_backend(64)                       # numpy/pyFFTW, float64
"""
from __future__ import annotations

from ..errors import ParameterError
from .base import (BACKENDS, DEFAULT_PLANNER, DEVICES, DTYPES, PLANNER_ENV, PLANNERS, FFTBackend,
                   default_planner, default_threads, fftw_plan)
from .numpy_fft import NumpyFFT, describe_default_backend
from .slab import SlabFFT
from .torch_fft import TorchFFT

__all__ = ["make_backend", "FFTBackend", "NumpyFFT", "TorchFFT", "SlabFFT", "describe_default_backend",
           "default_planner", "default_threads", "fftw_plan", "BACKENDS", "DTYPES", "DEVICES",
           "PLANNER_ENV", "PLANNERS", "DEFAULT_PLANNER"]


def make_backend(n: int, backend: str = "numpy", dtype: str = "float64", device: str = "cpu",
                 threads: int = 0, comm=None) -> FFTBackend:
    """The FFT backend for an ``n``² grid.

    ``backend`` numpy|torch, ``dtype`` float64|float32, ``device`` cpu|cuda|auto (cuda needs
    torch), ``threads`` FFT threads per rank (0 = automatic), ``comm`` an mpi4py communicator: with
    more than one rank the slab-decomposed :class:`~solver.backends.slab.SlabFFT` is returned.
    """
    if backend not in BACKENDS:
        raise ParameterError(f"backend = {backend!r}: must be one of {', '.join(BACKENDS)}", name="backend")
    if dtype not in DTYPES:
        raise ParameterError(f"dtype = {dtype!r}: must be one of {', '.join(DTYPES)}", name="dtype")
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ParameterError(f"device = {device!r}: must be one of {', '.join(DEVICES)}", name="device")
    if not isinstance(threads, int) or threads < 0:
        raise ParameterError(f"threads = {threads!r}: must be an integer >= 0", name="threads")
    if backend == "numpy" and device.startswith("cuda"):
        raise ParameterError(f"device = {device!r}: the numpy backend runs on cpu only "
                          "(use backend = 'torch' for cuda)", name="device")
    if comm is not None and comm.Get_size() > 1:
        return SlabFFT(n, backend=backend, dtype=dtype, device=device, threads=threads, comm=comm)
    if backend == "numpy":
        return NumpyFFT(n, dtype=dtype, threads=threads)
    return TorchFFT(n, dtype=dtype, device=device, threads=threads)
