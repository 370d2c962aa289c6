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


@pytest.mark.parametrize("batch", [None, 2])
def test_the_cpu_hot_loop_runs_the_numpy_path_on_the_tensors_memory(batch, monkeypatch):
    """Torch on CPU takes the numpy backend's hot loop on its tensors' numpy views: Numba kernels
    (:class:`~solver.kernels.TensorNumbaOps`), all four inverse inputs in one round, pruned FFTW plans
    that never write the columns above the 2/3 rule's; the state stays a torch tensor and the run
    equals the numpy backend's (to rounding), and ``TURBTL_KERNELS=numpy`` keeps torch's own array
    operations with the same result."""
    pytest.importorskip("numba")
    from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field
    from solver.kernels import KERNELS_ENV, TensorNumbaOps

    def run(backend):
        be = make_backend(48, backend=backend, threads=1)
        g = Grid(48, backend=be)
        eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
        st = make_stepper("ab2cn", eq, dt=2e-3)
        w = random_field(g, kp=8, seed=1)
        if batch:
            w = be.asarray(np.stack([be.to_numpy(w) * (1 + 0.1 * i) for i in range(batch)]), complex=True)
        s = st.init_state(w)
        for _ in range(20):
            st(s)
        return s.omega_hat, eq

    w_t, eq_t = run("torch")
    w_n, _ = run("numpy")
    plan = eq_t.fast.plan(tuple(w_t.shape[:-2]))
    assert isinstance(eq_t.kernels, TensorNumbaOps) and plan.host and plan.quad
    assert eq_t.backend.skips_kx and isinstance(w_t, torch.Tensor)
    assert isinstance(plan.jacobian(w_t), torch.Tensor)
    a = w_t.numpy()
    assert abs(a - w_n).max() <= 1e-13 * abs(w_n).max()
    monkeypatch.setenv(KERNELS_ENV, "numpy")
    w_a, eq_a = run("torch")
    assert not eq_a.fast.plan(tuple(w_a.shape[:-2])).host and eq_a.kernels.name == "array"
    assert abs(w_a.numpy() - w_n).max() <= 1e-13 * abs(w_n).max()
