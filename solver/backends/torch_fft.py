"""The serial torch backend: torch tensors on CPU or CUDA (torch.fft; cuFFT on GPU)."""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .base import FFTBackend, default_threads


class TorchFFT(FFTBackend):
    """torch tensors on CPU or CUDA (torch.fft; cuFFT on GPU)."""

    name = "torch"

    def __init__(self, n: int, dtype: str = "float64", device: str = "cpu", threads: int = 0):
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
        self._setup_layout(n, slice(0, n), slice(0, n // 2 + 1))

    def describe(self) -> dict:
        th = {"threads": self.torch.get_num_threads()} if self.device == "cpu" else {}
        return super().describe() | {"library": f"torch {self.torch.__version__}"} | th

    def summary(self) -> str:
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
