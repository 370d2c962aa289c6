"""The serial torch backend: torch tensors on CPU or CUDA (torch.fft; cuFFT on GPU).

On CPU the *planned* transforms of the hot loop (:meth:`TorchFFT.plan_rfft2`,
:meth:`TorchFFT.plan_irfft2`) run as FFTW plans (pyFFTW) on the tensors' own memory when pyFFTW
is installed: torch's CPU FFT (MKL's, in the PyPI wheels) runs several times slower than FFTW on
the same transforms here (``bench/solver_harness.py`` measures the step against the FFTW floor).
The tensors stay torch tensors; only the transform is FFTW's, with the numpy backend's planner,
wisdom and threads. ``use_fftw=False`` keeps torch.fft everywhere."""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .base import FFTBackend, default_planner, default_threads
from .numpy_fft import _pyfftw, fftw_irfft2_plan, fftw_rfft2_plan


class TorchFFT(FFTBackend):
    """torch tensors on CPU or CUDA (torch.fft; cuFFT on GPU)."""

    name = "torch"

    def __init__(self, n: int, dtype: str = "float64", device: str = "cpu", threads: int = 0,
                 use_fftw: bool | None = None):
        import torch  # heavy: loaded only when a torch backend is built
        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError(f"device = {device!r}: no CUDA device is available here "
                              "(accepted: cpu, or auto)", name="device")
        self.device = str(torch.device(device)) if device != "cuda" else f"cuda:{torch.cuda.current_device()}"
        self.dtype_name = dtype
        self.dtype = torch.float64 if dtype == "float64" else torch.float32
        self.cdtype = torch.complex128 if dtype == "float64" else torch.complex64
        self.threads = threads or default_threads()
        if self.device == "cpu" and threads:
            torch.set_num_threads(threads)
        self.xp = torch
        # FFTW plans for the planned transforms on CPU (see the module doc)
        self._fftw = _pyfftw() if (self.device == "cpu" and use_fftw in (None, True)) else None
        if use_fftw and self._fftw is None:
            raise ParameterError("use_fftw=True needs pyFFTW and device='cpu'", name="backend")
        self.planner = default_planner() if self._fftw is not None else None
        self.skips_kx = self._fftw is not None  # pruned FFTW inverses never write kx >= kx_stop
        self._setup_layout(n, slice(0, n), slice(0, n // 2 + 1))

    @property
    def library(self) -> str:
        lib = f"torch {self.torch.__version__}"
        if self._fftw is not None:
            lib += f" + pyFFTW {self._fftw.__version__} plans ({self.planner})"
        return lib

    def _fftw_views(self, src, dst):
        """numpy views of ``src`` and ``dst`` when FFTW may transform them in place of torch.fft
        (CPU, contiguous, pyFFTW installed), else None."""
        if self._fftw is None or not (src.is_contiguous() and dst.is_contiguous()):
            return None
        return src.numpy(), dst.numpy()

    def describe(self) -> dict:
        th = {"threads": self.torch.get_num_threads()} if self.device == "cpu" else {}
        return super().describe() | {"library": self.library} | th

    def summary(self) -> str:
        th = f", {self.torch.get_num_threads()} threads" if self.device == "cpu" else ""
        return f"{self.library} n={self.n} {self.dtype_name} on {self.device}{th}"

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
        """``dst = rfft2(src)``: on CPU an FFTW plan on the tensors' memory, pruned with ``kx_stop``
        as the numpy backend's (:func:`~solver.backends.numpy_fft.fftw_rfft2_plan`); else
        torch.fft, all columns."""
        views = self._fftw_views(src, dst)
        if views is not None:
            return fftw_rfft2_plan(*views, self._pruned(kx_stop), self.planner, self.threads)
        fft = self.torch.fft.rfft2
        return lambda: fft(src, out=dst)

    def plan_irfft2(self, src, dst, kx_stop=None):
        """``dst = n**2 irfft2(src)`` (may overwrite ``src``): on CPU an FFTW plan, pruned with
        ``kx_stop`` (:func:`~solver.backends.numpy_fft.fftw_irfft2_plan`: columns at and above it are
        never written, ``skips_kx``); else torch.fft."""
        views = self._fftw_views(src, dst)
        if views is not None:
            return fftw_irfft2_plan(*views, self._pruned(kx_stop), self.planner, self.threads)
        ifft, s = self.torch.fft.irfft2, (self.n, self.n)
        return lambda: ifft(src, s=s, norm="forward", out=dst)

    def synchronize(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
