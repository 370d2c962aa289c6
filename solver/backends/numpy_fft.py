"""The serial numpy backend: planned pyFFTW transforms, scipy.fft (pocketfft) as fallback."""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..openmp import share as share_openmp
from .base import FFTBackend, default_planner, default_threads, fftw_plan


def _pyfftw():
    share_openmp()  # before pyFFTW loads its OpenMP runtime (solver/openmp.py)
    try:
        import pyfftw  # optional dependency: scipy.fft serves without it
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
            raise ParameterError("pyFFTW is not installed: use the scipy.fft fallback (use_fftw=False)",
                              name="backend")
        self.planner = planner or default_planner()
        self.skips_kx = self._fftw is not None  # the pruned planned inverse never writes kx >= kx_stop
        self._plans: dict = {}
        self._setup_layout(n, slice(0, n), slice(0, n // 2 + 1))

    @property
    def library(self) -> str:
        if self._fftw is not None:
            return f"pyFFTW {self._fftw.__version__} (FFTW3, {self.planner}, {self.threads} threads)"
        return f"scipy.fft (pocketfft, {self.threads} workers)"

    def describe(self) -> dict:
        return super().describe() | {"library": self.library, "threads": self.threads}

    def summary(self) -> str:
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
            import scipy.fft  # the fallback without pyFFTW: loaded only when used
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

    def plan_rfft2(self, src, dst, kx_stop=None):
        """FFTW plan of ``dst = rfft2(src)``. With ``kx_stop`` (the 2/3 rule's kept columns) it is
        pruned (:func:`fftw_rfft2_plan`)."""
        if self._fftw is None:
            return super().plan_rfft2(src, dst)
        return fftw_rfft2_plan(src, dst, self._pruned(kx_stop), self.planner, self.threads)

    def plan_irfft2(self, src, dst, kx_stop=None):
        """FFTW plan of ``dst = n**2 irfft2(src)``; overwrites ``src``. With ``kx_stop`` it is pruned
        (:func:`fftw_irfft2_plan`): the columns ``kx >= kx_stop`` (zero, as the caller promises) are
        read but never written (``skips_kx``), so they need no re-zeroing between calls."""
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
        return fftw_irfft2_plan(src, dst, self._pruned(kx_stop), self.planner, self.threads)


def fftw_rfft2_plan(src, dst, kx_stop, planner: str, threads: int):
    """``dst = rfft2(src)`` on numpy arrays (any leading dims) as a zero-argument FFTW plan. With
    ``kx_stop`` (None: all columns) it is pruned: real x transforms of all rows, then in-place y
    transforms of the columns ``kx < kx_stop`` only (the columns above hold x-transformed data
    afterwards). The numpy backend and the torch backend on CPU (on its tensors' memory) plan here."""
    if kx_stop is None:
        return fftw_plan(src, dst, (-2, -1), True, planner, threads).execute
    fx = fftw_plan(src, dst, (-1,), True, planner, threads).execute
    fy = fftw_y_plan(dst, kx_stop, True, planner, threads)

    def run():
        fx()
        fy()
    return run


def fftw_irfft2_plan(src, dst, kx_stop, planner: str, threads: int):
    """``dst = n**2 irfft2(src)`` on numpy arrays as a zero-argument FFTW plan that overwrites
    ``src``. With ``kx_stop`` it is pruned: in-place y transforms of the columns ``kx < kx_stop``
    only, then c2r x transforms that keep their input, so the columns ``kx >= kx_stop`` are read
    but never written."""
    if kx_stop is None:
        return fftw_plan(src, dst, (-2, -1), False, planner, threads).execute
    fy = fftw_y_plan(src, kx_stop, False, planner, threads)
    fx = fftw_plan(src, dst, (-1,), False, planner, threads, destroy_input=False).execute

    def run():
        fy()
        fx()
    return run


def fftw_y_plan(a, kx_stop: int, forward: bool, planner: str, threads: int):
    """The y pass of a pruned 2D transform as a zero-argument FFTW plan: in-place complex
    transforms along the rows' axis of the columns ``kx < kx_stop`` of the spectral array ``a``
    (forward or unnormalised backward). :func:`fftw_rfft2_plan` and :func:`fftw_irfft2_plan` are
    an x pass plus this; the fused x pass (:mod:`solver.fftw_rows`) runs it alone."""
    cols = a[..., :kx_stop]
    return fftw_plan(cols, cols, (-2,), forward, planner, threads).execute


def describe_default_backend() -> str:
    """One line for ``turbtl info``: the FFT library the numpy backend uses here."""
    pyfftw = _pyfftw()
    th = default_threads()
    if pyfftw is not None:
        return f"numpy + pyFFTW {pyfftw.__version__} (FFTW3, planned, {th} threads); torch.fft also available"
    return f"numpy + scipy.fft (pocketfft, {th} workers); torch.fft also available"
