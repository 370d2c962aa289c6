"""FFT backends: one object decides the array library, device, precision and decomposition.

Everything else in the solver is written against :class:`FFTBackend` (docs/CONTRACTS.md,
"Solver FFT backend"), so the same equation code runs serially with numpy (planned pyFFTW
transforms, scipy.fft fallback), with torch on CPU or CUDA, and slab-decomposed under MPI
(``solver.parallel.SlabFFT``, built by :func:`make_backend` when ``comm`` has several ranks).

Layout (serial): physical arrays ``(..., n, n)`` = (y, x); spectral arrays ``(..., n, n//2+1)`` =
(ky, kx), exactly numpy's ``rfft2`` layout and normalisation. Leading (ensemble) dimensions are
carried through every operation.

    >>> from solver.fft import make_backend
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

from suite.errors import ConfigError

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
    """``$TURBTL_FFTW_PLANNER`` if set, else :data:`DEFAULT_PLANNER`; ConfigError if unknown."""
    planner = os.environ.get(PLANNER_ENV, "").strip() or DEFAULT_PLANNER
    if planner not in PLANNERS:
        raise ConfigError(f"{PLANNER_ENV} = {planner!r}: must be one of {', '.join(PLANNERS)}",
                          field=PLANNER_ENV)
    return planner


def fftw_plan(src, dst, axes, forward: bool, planner: str, threads: int, destroy_input: bool = True):
    """A pyFFTW plan of ``src`` -> ``dst`` along ``axes`` (c2c, or r2c/c2r when one side is real;
    the inverse unnormalised and, unless ``destroy_input=False``, allowed to destroy its input; a
    one-dimensional c2r keeps it then); the buffers' contents are kept.

    Planners other than FFTW_ESTIMATE plan under the wisdom cache (:func:`solver.wisdom.planning`),
    so every process gets the same algorithm for the same problem; without a usable cache they fall
    back to FFTW_ESTIMATE."""
    import pyfftw
    from .wisdom import planning
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

    def _setup_layout(self, n: int, y_slice: slice, kx_slice: slice) -> None:
        if not (isinstance(n, int) and n >= 4 and n % 2 == 0):
            raise ConfigError(f"grid n = {n!r}: must be an even integer >= 4", field="grid.n_dns")
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

    def describe(self) -> str:
        return f"{self.name} n={self.n} {self.dtype_name} on {self.device}"

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"


# --------------------------------------------------------------------------------------------
# numpy: planned pyFFTW, scipy.fft fallback


def _pyfftw():
    try:
        import pyfftw
        return pyfftw
    except ImportError:
        return None


class NumpyFFT(FFTBackend):
    """numpy arrays; FFTW plans (pyFFTW, multithreaded) or scipy.fft (pocketfft) as fallback."""

    name = "numpy"

    def __init__(self, n: int, dtype: str = "float64", threads: int = 0, use_fftw: bool | None = None,
                 planner: str | None = None):
        self.dtype_name = dtype
        self.dtype = np.dtype(dtype)
        self.cdtype = np.dtype("complex128" if dtype == "float64" else "complex64")
        self.device = "cpu"
        self.threads = threads or default_threads()
        self.xp = np
        self._fftw = _pyfftw() if use_fftw in (None, True) else None
        if use_fftw and self._fftw is None:
            raise ConfigError("pyFFTW is not installed: use the scipy.fft fallback (use_fftw=False)",
                              field="dns.backend")
        self.planner = planner or default_planner()
        self.skips_kx = self._fftw is not None  # the pruned planned inverse never writes kx >= kx_stop
        self._plans: dict = {}
        self._setup_layout(n, slice(0, n), slice(0, n // 2 + 1))

    @property
    def library(self) -> str:
        if self._fftw is not None:
            return f"pyFFTW {self._fftw.__version__} (FFTW3, {self.planner}, {self.threads} threads)"
        return f"scipy.fft (pocketfft, {self.threads} workers)"

    def describe(self) -> str:
        return f"numpy n={self.n} {self.dtype_name}: {self.library}"

    # arrays
    def empty(self, shape, complex=False):
        dt = self.cdtype if complex else self.dtype
        if self._fftw is not None:
            return self._fftw.empty_aligned(tuple(shape), dtype=dt)
        return np.empty(tuple(shape), dtype=dt)

    # transforms
    def _check(self, a, spectral):
        shape = self.spectral_shape if spectral else self.physical_shape
        if tuple(a.shape[-2:]) != shape:
            raise ValueError(f"expected trailing shape {shape}, got {tuple(a.shape)}")

    def _fftw_plan(self, src, dst, forward):
        return fftw_plan(src, dst, (-2, -1), forward, self.planner, self.threads)

    def _cached(self, batch, forward):
        key = (tuple(batch), forward)
        if key not in self._plans:
            src = self.empty_physical(batch) if forward else self.empty_spectral(batch)
            dst = self.empty_spectral(batch) if forward else self.empty_physical(batch)
            self._plans[key] = (self._fftw_plan(src, dst, forward), src, dst)
        return self._plans[key]

    def rfft2(self, u, out=None):
        self._check(u, False)
        if self._fftw is None:
            import scipy.fft
            res = scipy.fft.rfft2(np.asarray(u, dtype=self.dtype), workers=self.threads)
        else:
            plan, src, dst = self._cached(u.shape[:-2], True)
            np.copyto(src, u)
            plan.execute()
            res = dst
        if out is None:
            return res.copy()
        np.copyto(out, res)
        return out

    def irfft2(self, u_hat, out=None):
        self._check(u_hat, True)
        if self._fftw is None:
            import scipy.fft
            res = scipy.fft.irfft2(np.asarray(u_hat, dtype=self.cdtype), s=(self.n, self.n),
                                   workers=self.threads)
            res = res.astype(self.dtype, copy=False)
            if out is None:
                return res
            np.copyto(out, res)
            return out
        plan, src, dst = self._cached(u_hat.shape[:-2], False)
        np.copyto(src, u_hat)
        plan.execute()
        if out is None:
            out = self.empty(dst.shape)
        np.multiply(dst, 1.0 / (self.n * self.n), out=out)
        return out

    def _pruned(self, kx_stop):
        """``kx_stop`` when the planned transforms can skip the columns at and above it."""
        if self._fftw is None or kx_stop is None or not 1 <= int(kx_stop) < self.n // 2 + 1:
            return None
        return int(kx_stop)

    def plan_rfft2(self, src, dst, kx_stop=None):
        """FFTW plan of ``dst = rfft2(src)``. With ``kx_stop`` (the 2/3 rule's kept columns) it is
        pruned: real x transforms of all rows, then in-place y transforms of the columns
        ``kx < kx_stop`` only (the columns above hold x-transformed data afterwards)."""
        if self._fftw is None:
            return super().plan_rfft2(src, dst)
        stop = self._pruned(kx_stop)
        if stop is None:
            return self._fftw_plan(src, dst, True).execute
        fx = fftw_plan(src, dst, (-1,), True, self.planner, self.threads).execute
        cols = dst[..., :stop]
        fy = fftw_plan(cols, cols, (-2,), True, self.planner, self.threads).execute

        def run():
            fx()
            fy()
        return run

    def plan_irfft2(self, src, dst, kx_stop=None):
        """FFTW plan of ``dst = n**2 irfft2(src)``; overwrites ``src``. With ``kx_stop`` it is
        pruned: in-place y transforms of the columns ``kx < kx_stop`` only, then c2r x transforms
        that keep their input, so the columns ``kx >= kx_stop`` (zero, as the caller promises) are
        read but never written (``skips_kx``): they need no re-zeroing between calls."""
        if self._fftw is None:
            import scipy.fft
            n = self.n

            def run():
                scipy.fft.irfft2(src, s=(n, n), workers=self.threads, norm="forward", out=dst,
                                 overwrite_x=True)
            try:
                run()  # scipy>=1.? accepts out=; fall back to the generic version otherwise
                return run
            except TypeError:
                return super().plan_irfft2(src, dst)
        stop = self._pruned(kx_stop)
        if stop is None:
            return self._fftw_plan(src, dst, False).execute
        cols = src[..., :stop]
        fy = fftw_plan(cols, cols, (-2,), False, self.planner, self.threads).execute
        fx = fftw_plan(src, dst, (-1,), False, self.planner, self.threads, destroy_input=False).execute

        def run():
            fy()
            fx()
        return run


# --------------------------------------------------------------------------------------------
# torch: CPU or CUDA


class TorchFFT(FFTBackend):
    """torch tensors on CPU or CUDA (torch.fft; cuFFT on GPU)."""

    name = "torch"

    def __init__(self, n: int, dtype: str = "float64", device: str = "cpu", threads: int = 0):
        import torch
        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"dns.device = {device!r}: no CUDA device is available here "
                              "(accepted: cpu, or auto)", field="dns.device")
        self.device = str(torch.device(device)) if device != "cuda" else f"cuda:{torch.cuda.current_device()}"
        self.dtype_name = dtype
        self.dtype = torch.float64 if dtype == "float64" else torch.float32
        self.cdtype = torch.complex128 if dtype == "float64" else torch.complex64
        self.threads = threads or default_threads()
        if self.device == "cpu" and threads:
            torch.set_num_threads(threads)
        self.xp = torch
        self._setup_layout(n, slice(0, n), slice(0, n // 2 + 1))

    def describe(self) -> str:
        th = f", {self.torch.get_num_threads()} threads" if self.device == "cpu" else ""
        return f"torch {self.torch.__version__} n={self.n} {self.dtype_name} on {self.device}{th}"

    def rfft2(self, u, out=None):
        res = self.torch.fft.rfft2(u)
        if out is None:
            return res
        out.copy_(res)
        return out

    def irfft2(self, u_hat, out=None):
        res = self.torch.fft.irfft2(u_hat, s=(self.n, self.n))
        if out is None:
            return res
        out.copy_(res)
        return out

    def plan_rfft2(self, src, dst, kx_stop=None):
        fft = self.torch.fft.rfft2
        return lambda: fft(src, out=dst)

    def plan_irfft2(self, src, dst, kx_stop=None):
        ifft, s = self.torch.fft.irfft2, (self.n, self.n)
        return lambda: ifft(src, s=s, norm="forward", out=dst)

    def synchronize(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# factory


def make_backend(n: int, backend: str = "numpy", dtype: str = "float64", device: str = "cpu",
                 threads: int = 0, comm=None) -> FFTBackend:
    """The FFT backend for an ``n``² grid.

    ``backend`` numpy|torch, ``dtype`` float64|float32, ``device`` cpu|cuda|auto (cuda needs
    torch), ``threads`` FFT threads per rank (0 = automatic), ``comm`` an mpi4py communicator: with
    more than one rank the slab-decomposed ``solver.parallel.SlabFFT`` is returned.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"dns.backend = {backend!r}: must be one of {', '.join(BACKENDS)}", field="dns.backend")
    if dtype not in DTYPES:
        raise ConfigError(f"dns.dtype = {dtype!r}: must be one of {', '.join(DTYPES)}", field="dns.dtype")
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ConfigError(f"dns.device = {device!r}: must be one of {', '.join(DEVICES)}", field="dns.device")
    if not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"dns.threads = {threads!r}: must be an integer >= 0", field="dns.threads")
    if backend == "numpy" and device.startswith("cuda"):
        raise ConfigError(f"dns.device = {device!r}: the numpy backend runs on cpu only "
                          "(use dns.backend = 'torch' for cuda)", field="dns.device")
    if comm is not None and comm.Get_size() > 1:
        from .parallel import SlabFFT  # lazy: MPI only when asked for
        return SlabFFT(n, backend=backend, dtype=dtype, device=device, threads=threads, comm=comm)
    if backend == "numpy":
        return NumpyFFT(n, dtype=dtype, threads=threads)
    return TorchFFT(n, dtype=dtype, device=device, threads=threads)


def describe_default_backend() -> str:
    """One line for ``turbtl info``: the FFT library the numpy backend uses here."""
    pyfftw = _pyfftw()
    th = default_threads()
    if pyfftw is not None:
        return f"numpy + pyFFTW {pyfftw.__version__} (FFTW3, planned, {th} threads); torch.fft also available"
    return f"numpy + scipy.fft (pocketfft, {th} workers); torch.fft also available"
