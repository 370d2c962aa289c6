"""The torch backend on CPU runs its planned transforms as FFTW plans on the tensors' memory
(solver/backends/torch_fft.py): the same values as torch.fft's to rounding, the tensors untouched
as torch tensors, and ``use_fftw=False`` keeps torch.fft."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyfftw")

from solver.backends.torch_fft import TorchFFT  # noqa: E402


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 2e-5)])
def test_planned_transforms_equal_torch_fft(dtype, tol):
    n = 48
    fftw, plain = TorchFFT(n, dtype=dtype), TorchFFT(n, dtype=dtype, use_fftw=False)
    assert "pyFFTW" in fftw.library and "pyFFTW" not in plain.library
    u = torch.from_numpy(np.random.default_rng(1).standard_normal((3, n, n))).to(fftw.dtype)
    out = {}
    for be in (fftw, plain):
        src, dst = be.empty_physical((3,)), be.empty_spectral((3,))
        src.copy_(u)
        be.plan_rfft2(src, dst)()
        spec = be.empty_spectral((3,))
        spec.copy_(dst)
        back = be.empty_physical((3,))
        be.plan_irfft2(spec, back)()  # unnormalised inverse: n² u
        assert isinstance(dst, torch.Tensor) and isinstance(back, torch.Tensor)
        out[be.library] = (dst.clone(), back.clone())
    (f1, b1), (f2, b2) = out.values()
    scale = float(f2.abs().max())
    assert float((f1 - f2).abs().max()) <= tol * scale
    assert float((b1 / n**2 - u).abs().max()) <= tol * float(u.abs().max()) * 10
    assert float((b2 / n**2 - u).abs().max()) <= tol * float(u.abs().max()) * 10


def test_non_contiguous_buffers_fall_back_to_torch_fft():
    """FFTW needs the tensors' memory as arrays: a strided view takes torch.fft, same values."""
    n = 32
    be = TorchFFT(n)
    u = torch.from_numpy(np.random.default_rng(2).standard_normal((n, n)))
    src = be.empty_physical((2,))[:, :, :]
    src = src.transpose(-2, -1)  # non-contiguous view of the same memory
    src.copy_(torch.stack([u, 2 * u]))
    dst = be.empty_spectral((2,))
    assert be._fftw_views(src, dst) is None
    be.plan_rfft2(src, dst)()
    ref = torch.fft.rfft2(torch.stack([u, 2 * u]))
    assert float((dst - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
