"""The fused x pass of the Jacobian (solver/fftw_rows.py, NumbaOps.x_pass): FFTW's row plans run
from inside a Numba kernel, block of rows by block of rows. Checked against the unfused transforms
(the same Ĵ to rounding), against itself (the same bits for any number of parts and threads, and
in every process), and against wrong shapes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field

pytest.importorskip("numba")
from solver import fftw_rows  # noqa: E402  (imports pyFFTW, if at all, after solver/openmp.py's share())
from solver import kernels as K  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not fftw_rows.available():
    pytest.skip("pyFFTW's bundled FFTW not found: no fused x pass", allow_module_level=True)


def _equation(n, dtype="float64", threads=1):
    g = Grid(n, backend=make_backend(n, dtype=dtype, threads=threads))
    return Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))


def _omega(eq, batch, seed=2):
    w = eq.backend.to_numpy(random_field(eq.grid, kp=8, seed=seed))
    rng = np.random.default_rng(seed)
    w = w + 1e-3 * eq.mask_host * (rng.standard_normal(w.shape) + 1j * rng.standard_normal(w.shape))
    if batch:
        w = np.stack([w * (1 + 0.2 * i) for i in range(batch[0])])
    return w.astype(eq.backend.cdtype)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("n", [32, 96])
def test_fused_jacobian_equals_the_unfused_one(n, batch, dtype, tol, monkeypatch):
    """Ĵ from y pass + fused x pass + y pass against the unfused pruned transforms with the
    product in between (TURBTL_FUSED_X=0), on the kept modes, members and precisions."""
    out = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(fftw_rows.FUSED_ENV, mode)
        eq = _equation(n, dtype)
        plan = eq.fast.plan(batch)
        assert plan.fused_x == (mode == "1")
        assert (plan.ws.phys is None) == (mode == "1")  # fused: no physical fields at all
        j = np.array(plan.jacobian(_omega(eq, batch)))
        out[mode] = j[..., eq.mask_host.astype(bool)]
    a, b = out["1"], out["0"]
    assert np.abs(a - b).max() <= tol * np.abs(b).max()


def test_fused_run_keeps_the_columns_above_the_kept_ones_zero():
    """The c2r of the fused pass keeps its input: the columns of the inputs above the kept ones
    stay zero over a run (the pruned y pass never writes them, nothing else does)."""
    eq = _equation(48)
    st = make_stepper("ab2cn", eq, dt=2e-3)
    s = st.init_state(random_field(eq.grid, kp=8, seed=1))
    for _ in range(5):
        st(s)
    plan = eq.fast.plan(())
    assert plan.fused_x
    assert not plan.ws.spec[..., eq.fast.kept_cols.stop:].any()


def _blocks_case(n=32, rows=96, block=8, parts=3, seed=0):
    import pyfftw
    rng = np.random.default_rng(seed)
    ncol = n // 2 + 1
    spec = pyfftw.zeros_aligned((4, rows, ncol), complex, n=64)
    j = pyfftw.zeros_aligned((rows, ncol), complex, n=64)
    tmp = pyfftw.zeros_aligned((parts, 4, block, n), float, n=64)
    c2r, r2c = fftw_rows.row_plans(spec, tmp, j, block)
    spec[...] = rng.standard_normal(spec.shape) + 1j * rng.standard_normal(spec.shape)
    spec[..., 0].imag = spec[..., -1].imag = 0  # the values a c2r of real data takes
    spec[..., ncol - 3:] = 0
    return spec, tmp, j, c2r, r2c, block


def test_x_pass_is_the_product_of_the_four_row_transforms():
    """j rows = rfft(irfft(a) irfft(b) + irfft(c) irfft(d)) (unnormalised) in every block."""
    spec, tmp, j, c2r, r2c, block = _blocks_case()
    K.NumbaOps(1).x_pass(c2r, r2c, spec, tmp, j, block)
    n = tmp.shape[-1]
    p = np.fft.irfft(spec, n=n, axis=-1) * n
    want = np.fft.rfft(p[0] * p[1] + p[2] * p[3], axis=-1)
    assert np.abs(j - want).max() <= 1e-12 * np.abs(want).max()


def test_x_pass_gives_the_same_bits_for_any_split_of_its_parts():
    """All parts in one serial call, one part per call in any order, and the OpenMP-parallel
    kernel (where the process has one runtime) give the same bits: each block is the same plans'
    work whoever runs it."""
    spec, tmp, j, c2r, r2c, block = _blocks_case(parts=3)
    K.NumbaOps(1).x_pass(c2r, r2c, spec, tmp, j, block)
    want = j.copy()
    j[...] = 0
    for t in (2, 0, 1):
        K.NumbaOps(1).x_pass(c2r, r2c, spec, tmp, j, block, slice(t, t + 1))
    assert np.array_equal(j, want)
    par = K.NumbaOps(3)
    if par.parallel:
        j[...] = 0
        par.x_pass(c2r, r2c, spec, tmp, j, block)
        assert np.array_equal(j, want)


def test_row_plans_refuse_shapes_that_do_not_fit():
    import pyfftw
    spec = pyfftw.zeros_aligned((4, 30, 17), complex)
    j = pyfftw.zeros_aligned((30, 17), complex)
    with pytest.raises(ValueError, match="do not fit"):  # 30 rows are no whole number of 8-row blocks
        fftw_rows.row_plans(spec, pyfftw.zeros_aligned((1, 4, 8, 32), float), j, 8)
    with pytest.raises(ValueError, match="do not fit"):
        fftw_rows.row_plans(spec[:3], pyfftw.zeros_aligned((1, 4, 5, 32), float), j, 5)


@pytest.mark.parametrize("rows,n,itemsize", [(512, 512, 8), (768, 128, 8), (96, 48, 4), (7, 64, 8)])
def test_block_rows_divide_the_rows_and_fit_the_cache(rows, n, itemsize):
    b = fftw_rows.block_rows(rows, n, itemsize)
    assert rows % b == 0 and b >= 1
    assert 4 * n * itemsize * b <= 256 * 1024 or b == 1
    assert all(rows % c or 4 * n * itemsize * c > 256 * 1024 for c in range(b + 1, rows + 1))


RUN = r"""
import sys, numpy as np
from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field
g = Grid(64, backend=make_backend(64, threads=2))
eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
st = make_stepper("ab2cn", eq, dt=2e-3)
s = st.init_state(np.stack([random_field(g, kp=8, seed=1)] * 2))
for _ in range(10):
    st(s)
assert eq.fast.plan((2,)).fused_x
np.save(sys.argv[1], s.omega_hat)
"""


def test_every_process_plans_the_same_row_transforms(tmp_path):
    """Fresh processes on one wisdom cache: the first plans and records, the others reuse; the
    same bits every time, and the cache unchanged after the first (block starts that are aligned
    in one process and not in another would plan differently; solver/fftw_rows.py)."""
    env = dict(os.environ, PYTHONPATH=ROOT, TURBTL_CACHE=str(tmp_path / "cache"))
    env.pop(fftw_rows.FUSED_ENV, None)
    runs, sizes = [], []
    for i in range(3):
        out = tmp_path / f"w{i}.npy"
        subprocess.run([sys.executable, "-c", RUN, str(out)], env=env, check=True, timeout=300)
        runs.append(np.load(out))
        sizes.append(sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.bin")))
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[1], runs[2])
    assert sizes[0] == sizes[1] == sizes[2]


def test_describe_and_the_switch_say_whether_it_runs(monkeypatch):
    assert fftw_rows.describe().startswith("on")
    assert fftw_rows.describe(load=False).startswith("on")  # probed above: known without loading
    assert fftw_rows.describe("float32", load=False) in ("not used in this process",
                                                         fftw_rows.describe("float32"))
    monkeypatch.setenv(fftw_rows.FUSED_ENV, "0")
    assert not fftw_rows.available() and fftw_rows.describe() == f"off ({fftw_rows.FUSED_ENV}=0)"
    assert not _equation(32).fast.plan(()).fused_x
