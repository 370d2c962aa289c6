"""The FFT backend interface: one object decides the array library, device, precision and decomposition.

Everything else in the solver is written against :class:`FFTBackend` (docs/CONTRACTS.md,
"Solver FFT backend"), so the same equation code runs serially with numpy (planned pyFFTW
transforms, scipy.fft fallback), with torch on CPU or CUDA, and slab-decomposed under MPI
(:class:`solver.backends.slab.SlabFFT`, built by :func:`solver.backends.make_backend` when
``comm`` has several ranks). This module: the interface :class:`FFTBackend` and the FFTW planning
helpers; the implementations live beside it (``numpy_fft``, ``torch_fft``, ``slab``).

Layout (serial): physical arrays ``(..., n, n)`` = (y, x); spectral arrays ``(..., n, n//2+1)`` =
(ky, kx), exactly numpy's ``rfft2`` layout and normalisation. Leading (ensemble) dimensions are
carried through every operation.

    >>> from solver.backends import make_backend
    >>> be = make_backend(64)                       # numpy/pyFFTW, float64
    >>> u = be.zeros(be.physical_shape)
    >>> u_hat = be.rfft2(u)                         # == numpy.fft.rfft2(u)

Hot loops use :meth:`FFTBackend.plan_rfft2` / :meth:`FFTBackend.plan_irfft2`: a transform bound
to two preallocated buffers, returned as a zero-argument callable (FFTW plans on aligned buffers
for numpy; ``out=`` for torch). The planned inverse is *unnormalised* and may overwrite its input;
callers fold the ``1/n**2`` into their spectral operators.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..wisdom import planning

BACKENDS = ("numpy", "torch")
DTYPES = ("float64", "float32")
DEVICES = ("cpu", "cuda", "auto")
# FFTW planner rigour of the planned (hot-loop) transforms. FFTW_MEASURE times candidate
# algorithms; it is made deterministic across processes by the per-host wisdom cache
# (solver.wisdom: the first process measures, every later one reuses its choice), so results are
# bitwise reproducible. FFTW_ESTIMATE needs no cache (but its transforms are slower). Set
# TURBTL_FFTW_PLANNER to override.
PLANNER_ENV = "TURBTL_FFTW_PLANNER"
PLANNERS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")
DEFAULT_PLANNER = "FFTW_MEASURE"


def default_planner() -> str:
    """``$TURBTL_FFTW_PLANNER`` if set, else :data:`DEFAULT_PLANNER`; ParameterError if unknown."""
    planner = os.environ.get(PLANNER_ENV, "").strip() or DEFAULT_PLANNER
    if planner not in PLANNERS:
        raise ParameterError(f"{PLANNER_ENV} = {planner!r}: must be one of {', '.join(PLANNERS)}",
                          name=PLANNER_ENV)
    return planner


def fftw_plan(src, dst, axes, forward: bool, planner: str, threads: int, destroy_input: bool = True):
    """A pyFFTW plan of ``src`` -> ``dst`` along ``axes`` (c2c, or r2c/c2r when one side is real;
    the inverse unnormalised and, unless ``destroy_input=False``, allowed to destroy its input; a
    one-dimensional c2r keeps it then); the buffers' contents are kept.

    Planners other than FFTW_ESTIMATE plan under the wisdom cache (:func:`solver.wisdom.planning`),
    so every process gets the same algorithm for the same problem; without a usable cache they fall
    back to FFTW_ESTIMATE."""
    import pyfftw  # optional dependency: only the numpy backend's FFTW path needs it
    keep = (src.copy(), dst.copy())  # planning with FFTW_MEASURE overwrites the buffers
    extra = () if forward or not destroy_input else ("FFTW_DESTROY_INPUT",)
    direction = "FFTW_FORWARD" if forward else "FFTW_BACKWARD"
    if planner == "FFTW_ESTIMATE":
        plan = pyfftw.FFTW(src, dst, axes=axes, direction=direction, flags=(planner,) + extra, threads=threads)
    else:
        with planning() as ok:
            flags = ((planner if ok else "FFTW_ESTIMATE"),) + extra
            plan = pyfftw.FFTW(src, dst, axes=axes, direction=direction, flags=flags, threads=threads)
    np.copyto(src, keep[0])
    np.copyto(dst, keep[1])
    return plan


def default_threads() -> int:
    """Threads used when ``threads=0``: OMP_NUM_THREADS if set, else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# the interface


class FFTBackend:
    """Base class and documentation of the backend interface (docs/CONTRACTS.md).

    Attributes: ``name`` ("numpy"/"torch"), ``n``, ``xp`` (array namespace with numpy's names),
    ``dtype``/``cdtype`` (native dtype objects), ``dtype_name`` ("float64"/"float32"), ``device``
    ("cpu"/"cuda:0"), ``comm`` (None when serial), ``threads``, ``y_slice``/``kx_slice`` (the local
    rows/columns of the global arrays), ``physical_shape``/``spectral_shape`` (local, without batch
    dimensions), ``kx``/``ky`` (local integer wavenumbers, real dtype, broadcastable to
    ``spectral_shape``; ky of the Nyquist row is ``-n/2``, kx of the Nyquist column ``+n/2``).

    Subclasses set the attributes (``_setup_layout`` does the layout ones) and implement
    ``rfft2``/``irfft2`` and, under MPI, ``allsum``/``allmax`` and gather/scatter; the array
    helpers (``empty``, ``zeros``, ``asarray``, ``to_numpy``, ``copy``, ``empty_physical``, ...)
    and ``plan_rfft2``/``plan_irfft2`` have generic versions here.
    """

    name = "abstract"
    comm = None
    # True when plan_irfft2 given ``kx_stop`` never writes the columns kx >= kx_stop of its input
    # (so a caller that keeps them zero need not re-zero them between calls)
    skips_kx = False

    def _pruned(self, kx_stop):
        """``kx_stop`` when this backend's planned FFTW transforms (``_fftw``) can skip the columns
        at and above it, else None."""
        if getattr(self, "_fftw", None) is None or kx_stop is None or not 1 <= int(kx_stop) < self.n // 2 + 1:
            return None
        return int(kx_stop)

    def _setup_layout(self, n: int, y_slice: slice, kx_slice: slice) -> None:
        if not (isinstance(n, int) and n >= 4 and n % 2 == 0):
            raise ParameterError(f"n = {n!r}: must be an even integer >= 4", name="n")
        self.n = n
        self.y_slice, self.kx_slice = y_slice, kx_slice
        ny = len(range(n)[y_slice])
        nkx = len(range(n // 2 + 1)[kx_slice])
        self.physical_shape = (ny, n)
        self.spectral_shape = (n, nkx)
        ky = np.fft.fftfreq(n, 1.0 / n).reshape(n, 1)
        kx = np.arange(n // 2 + 1, dtype=float)[kx_slice].reshape(1, nkx)
        self.kx = self.asarray(kx)
        self.ky = self.asarray(ky)

    # -- transforms -------------------------------------------------------------------------
    def rfft2(self, u):
        """Forward real 2D FFT over the last two axes, unnormalised (numpy.fft.rfft2).

        The serial backends also accept ``out=`` (not part of the contract)."""
        raise NotImplementedError

    def irfft2(self, u_hat):
        """Inverse real 2D FFT over the last two axes, normalised by 1/n² (numpy.fft.irfft2).

        The input is preserved."""
        raise NotImplementedError

    def plan_rfft2(self, src, dst, kx_stop: int | None = None) -> Callable[[], None]:
        """A callable computing ``dst[...] = rfft2(src)`` for these two buffers (from
        :meth:`empty_physical`/:meth:`empty_spectral`).

        ``kx_stop``: only the global columns ``kx < kx_stop`` of ``dst`` are needed; a backend may
        leave the others as they were (the slab backend does) or fill them in (these do)."""
        def run():
            dst[...] = self.rfft2(src)
        return run

    def plan_irfft2(self, src, dst, kx_stop: int | None = None) -> Callable[[], None]:
        """A callable computing ``dst[...] = n**2 * irfft2(src)`` (unnormalised inverse).

        ``src`` may be overwritten by the call. ``kx_stop``: the caller guarantees that ``src`` is
        zero in the global columns ``kx >= kx_stop``, so a backend may skip them."""
        scale = float(self.n * self.n)

        def run():
            self.xp.multiply(self.irfft2(src), scale, out=dst)
        return run

    # -- reductions over the ranks of the member's group -------------------------------------
    def allsum(self, x):
        """Sum over the ranks of the group (identity when serial). Scalars or numpy arrays."""
        return x

    def allmax(self, x):
        """Maximum over the ranks of the group (identity when serial). Scalars or numpy arrays."""
        return x

    # -- arrays ------------------------------------------------------------------------------
    def empty_physical(self, batch: tuple = ()):
        return self.empty(tuple(batch) + self.physical_shape)

    def empty_spectral(self, batch: tuple = ()):
        return self.empty(tuple(batch) + self.spectral_shape, complex=True)

    def zeros_physical(self, batch: tuple = ()):
        return self.zeros(tuple(batch) + self.physical_shape)

    def zeros_spectral(self, batch: tuple = ()):
        return self.zeros(tuple(batch) + self.spectral_shape, complex=True)

    # Generic versions for numpy (``xp is numpy``) and torch (``xp is torch``) backends.
    @property
    def is_torch(self) -> bool:
        return self.xp is not np

    def empty(self, shape, complex: bool = False):
        dt = self.cdtype if complex else self.dtype
        if self.is_torch:
            return self.xp.empty(tuple(shape), dtype=dt, device=self.device)
        return np.empty(tuple(shape), dtype=dt)

    def zeros(self, shape, complex: bool = False):
        a = self.empty(shape, complex)
        a[...] = 0
        return a

    def asarray(self, x, complex: bool = False):
        """A backend array (on the device, in the backend precision) from a numpy array/scalar."""
        dt = self.cdtype if complex else self.dtype
        if self.is_torch:
            if isinstance(x, self.xp.Tensor):
                return x.to(device=self.device, dtype=dt)
            return self.xp.as_tensor(np.array(x), device=self.device).to(dt)
        return np.asarray(x, dtype=dt)

    def to_numpy(self, x) -> np.ndarray:
        if self.is_torch and isinstance(x, self.xp.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def copy(self, x):
        return x.clone() if self.is_torch else x.copy()

    # -- global arrays (serial layout) -------------------------------------------------------
    def gather_spectral(self, u_hat):
        """The full global spectral array as numpy on the root rank (others None)."""
        return self.to_numpy(u_hat).copy()

    def scatter_spectral(self, global_hat):
        """The local block of a full global spectral numpy array (given on the root rank)."""
        return self.asarray(np.asarray(global_hat)[..., :, self.kx_slice], complex=True)

    def gather_physical(self, u):
        return self.to_numpy(u).copy()

    def scatter_physical(self, u):
        return self.asarray(np.asarray(u)[..., self.y_slice, :])

    @property
    def is_root(self) -> bool:
        return self.comm is None or self.comm.Get_rank() == 0

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op on CPU."""

    def describe(self) -> dict:
        """What this backend is, as data (JSON-able): ``backend``, ``n``, ``dtype``, ``device``
        (subclasses add ``library``, ``threads``, the slab layout). :meth:`summary` says it in one line."""
        return {"backend": self.name, "n": self.n, "dtype": self.dtype_name, "device": self.device}

    def summary(self) -> str:
        """One line for people and logs (stored as such in the LES store's ``backend`` attribute)."""
        return f"{self.name} n={self.n} {self.dtype_name} on {self.device}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.summary()}>"
