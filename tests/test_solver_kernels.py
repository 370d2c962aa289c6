"""The numpy backend's hot loop: pruned serial transforms, the piece runner and its threads, the
Numba kernels against the array kernels, and invariance of whole runs to threads and kernels."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field
from solver import kernels as K
from solver.backends import NumpyFFT
from solver.workers import BlockRunner, Team, split_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- pieces and threads -------------------------------------------------------------------------

@pytest.mark.parametrize("parts", [1, 2, 3, 5])
@pytest.mark.parametrize("rows_per_piece", [1, 4, 1000])
def test_split_rows_covers_every_element_once_in_balanced_parts(parts, rows_per_piece):
    rng = np.random.default_rng(parts * 100 + rows_per_piece)
    for _ in range(20):
        n, w = int(rng.integers(4, 60)), int(rng.integers(1, 30))
        cut = sorted(rng.choice(np.arange(1, n), size=2, replace=False))
        blocks = [(slice(0, int(cut[0])), slice(0, w)), (slice(int(cut[1]), n), slice(0, w))]
        out = split_rows(blocks, parts, rows_per_piece)
        assert len(out) == parts
        seen = np.zeros((n, w), int)
        for part in out:
            for r, c in part:
                assert 1 <= r.stop - r.start <= rows_per_piece
                seen[r, c] += 1
        want = np.zeros((n, w), int)
        for r, c in blocks:
            want[r, c] = 1
        assert np.array_equal(seen, want)
        sizes = [sum((r.stop - r.start) * w for r, _ in p) for p in out]
        assert max(sizes) - min(sizes) <= 2 * w  # a part boundary falls inside one row


def test_team_runs_every_part_and_reraises_a_workers_exception():
    team = Team(3)
    hits = []
    team.run(hits.append, [0, 1, 2])
    assert sorted(hits) == [0, 1, 2]

    def boom(part):
        if part == 2:
            raise RuntimeError("part 2 failed")
    with pytest.raises(RuntimeError, match="part 2 failed"):
        team.run(boom, [0, 1, 2])
    team.run(hits.append, [3, 4])  # still usable afterwards
    assert sorted(hits) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        team.run(hits.append, [0, 1, 2, 3])


def test_block_runner_regions_in_one_round_each_piece_once():
    a = np.zeros((10, 8))
    b = np.zeros((6, 5))
    run = BlockRunner([([(slice(0, 4), slice(0, 8)), (slice(7, 10), slice(0, 8))], 8 * 8),
                       ([(slice(0, 6), slice(1, 4))], 3 * 8)], threads=2, piece_bytes=16 * 8)

    def fa(r, c):
        a[r, c] += 1

    def fb(r, c):
        b[r, c] += 2
    run(fa, fb)
    assert a[:4].min() == 1 and a[7:].min() == 1 and a[4:7].max() == 0
    assert b[:, 1:4].min() == 2 and b[:, 0].max() == 0 and b[:, 4].max() == 0
    with pytest.raises(TypeError):
        run(fa)


# -- pruned serial transforms ------------------------------------------------------------------

@pytest.mark.parametrize("n", [12, 64])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_pruned_serial_transforms_equal_numpy_and_keep_the_zero_columns(n, batch):
    be = NumpyFFT(n, threads=2)
    if be._fftw is None:
        pytest.skip("pyFFTW not installed: no pruned transforms")
    keep = (n - 1) // 3 + 1
    rng = np.random.default_rng(n)
    g = rng.standard_normal(batch + (n, n))
    ref = np.fft.rfft2(g)
    src, dst = be.empty_physical(batch), be.empty_spectral(batch)
    fwd = be.plan_rfft2(src, dst, kx_stop=keep)
    src[...] = g
    fwd()
    np.testing.assert_allclose(dst[..., :keep], ref[..., :keep], rtol=0, atol=1e-13 * abs(ref).max())
    h = ref.copy()
    h[..., keep:] = 0
    h = np.fft.rfft2(np.fft.irfft2(h, s=(n, n)))  # Hermitian on kx = 0
    spec, out = be.empty_spectral(batch), be.empty_physical(batch)
    inv = be.plan_irfft2(spec, out, kx_stop=keep)
    for call in range(2):  # the zero columns are read, never written: no re-zeroing between calls
        spec[..., :keep] = h[..., :keep]
        if call == 0:
            spec[..., keep:] = 0
        inv()
        assert be.skips_kx and not spec[..., keep:].any()
        np.testing.assert_allclose(out / n**2, np.fft.irfft2(h, s=(n, n)), rtol=0, atol=1e-13)


# -- kernels -------------------------------------------------------------------------------------

needs_numba = pytest.mark.skipif(K.numba_version() is None, reason="numba not installed")


def _complex(seed):
    """(c, rng): ``c(*shape)`` draws standard complex normal arrays from ``rng``."""
    rng = np.random.default_rng(seed)
    return (lambda *shape: rng.standard_normal(shape) + 1j * rng.standard_normal(shape)), rng


@needs_numba
@pytest.mark.parametrize("batch", [(), (2,)])
def test_numba_kernels_equal_the_array_kernels(batch):
    c, rng = _complex(7)
    n, m = 24, 13
    w, j = c(*batch, n, m), c(*batch, n, m)
    vx, vy, q, A, B, F = c(1, m), c(n, 1), rng.standard_normal((n, m)), rng.standard_normal((n, m)), \
        rng.standard_normal((n, m)), c(n, m)
    pieces = [(slice(0, 9), slice(0, 9)), (slice(15, 24), slice(0, 9)), (slice(3, 5), slice(2, 13))]
    ops = {"array": K.ArrayOps(np), "numba": K.NumbaOps()}
    results = {}
    for name, op in ops.items():
        outs = [np.zeros((*batch, n, m), complex) for _ in range(8)]
        for r, cc in pieces:
            op.pair_x(w, vx, vy, q, outs[0], outs[1], r, cc)
            op.pair_y(w, vx, vy, q, outs[2], outs[3], r, cc)
            op.negate(j, outs[4], r, cc)
            op.negate_add(j, F, outs[5], r, cc)
            outs[6][...] = w
            op.ab2(outs[6], j.copy(), w.copy(), A, B, -0.25, r, cc)
            outs[7][...] = j
            op.dot2(outs[7], w, w.copy(), j, r, cc)
            op.zero(outs[7], slice(0, 2), cc)
        results[name] = outs
    for k, (a, b) in enumerate(zip(results["array"], results["numba"])):
        np.testing.assert_allclose(b, a, rtol=1e-15, atol=1e-14, err_msg=f"kernel output {k}")
    assert not results["numba"][0][..., 9:15, 9:].any()  # outside every piece: untouched
    ref = w * vx * 0  # pair_x's first output is ω vx where written
    ref[..., :9, :9] = (w * vx)[..., :9, :9]
    np.testing.assert_allclose(results["numba"][0][..., :9, :9], ref[..., :9, :9], rtol=1e-15)


def test_bad_kernel_choice_is_a_config_error(monkeypatch):
    from solver.errors import ParameterError as ConfigError
    monkeypatch.setenv(K.KERNELS_ENV, "fortran")
    with pytest.raises(ConfigError, match=K.KERNELS_ENV):
        K.choose(make_backend(8))


# -- whole runs ----------------------------------------------------------------------------------

def _run(n=48, steps=30, stepper="ab2cn", batch=None, beta=0.0, extra=None, tune=None):
    be = make_backend(n, threads=1)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=3e3, mu=0.1, beta=beta), forcing=make_forcing(g, "cos-xy", kf=4),
                  extra=extra)
    if tune is not None:
        tune(eq)
    st = make_stepper(stepper, eq, dt=2e-3)
    w = random_field(g, kp=8, seed=1)
    if batch:
        w = np.stack([w * (1 + 0.1 * i) for i in range(batch)])
    s = st.init_state(w)
    for _ in range(steps):
        st(s)
    return be.to_numpy(s.omega_hat), eq


@pytest.mark.parametrize("stepper", ["ab2cn", "rk3cn"])
def test_results_do_not_depend_on_the_hot_loop_threads_or_pieces(stepper):
    """Pieces do elementwise work only, so the hot loop on 1 thread in whole blocks and on 3
    threads in pieces of a few rows give the same bits (same FFT plans)."""
    out = []
    for threads, piece in ((1, 1 << 30), (3, 2 * 16 * 16 * 2)):  # 2 rows of 16 kept columns, 2 members
        def tune(eq):
            eq.fast.threads, eq.fast.piece_bytes = threads, piece
        a, eq = _run(stepper=stepper, batch=2, tune=tune)
        runner = eq.fast.runner((2,))
        assert (runner.team is None) == (threads == 1)
        if threads == 1:
            assert len(runner.pieces) == 2  # the two kept row blocks, whole
        else:
            assert len(runner.pieces) > 6 and len(runner.parts) == 3
        out.append(a)
    assert np.array_equal(out[0], out[1])


@needs_numba
@pytest.mark.parametrize("beta", [0.0, 8.0])
def test_numba_and_array_kernels_agree_over_a_run(beta):
    code = ("import numpy as np, sys; sys.path.insert(0, %r); from tests.test_solver_kernels import _run; "
            "a, eq = _run(beta=%r); print(eq.kernels.name); np.save(sys.argv[1], a)") % (ROOT, beta)
    out = {}
    for kind in ("numba", "numpy"):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"turbtl-kernels-{os.getpid()}-{kind}.npy")
        env = dict(os.environ, TURBTL_KERNELS=kind)
        r = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[-1] == ("numba" if kind == "numba" else "array")
        out[kind] = np.load(path)
        os.unlink(path)
    scale = abs(out["numpy"]).max()
    assert abs(out["numba"] - out["numpy"]).max() <= 1e-13 * scale


@pytest.mark.parametrize("kind", ["numba", "numpy"])
def test_extra_term_with_unmasked_output_leaves_the_removed_modes_alone(kind, monkeypatch):
    monkeypatch.setenv(K.KERNELS_ENV, kind)
    """An extra term that is nonzero everywhere: the update still touches only the modes the 2/3
    rule keeps (AB2 and its Euler start, RK3), with array kernels (whole-row blocks) too."""
    for stepper in ("ab2cn", "rk3cn"):
        w, eq = _run(n=36, steps=5, stepper=stepper, extra=lambda w, t: np.ones_like(w))
        outside = eq.grid.host.dealias == 0
        assert not w[np.broadcast_to(outside, w.shape)].any()
        assert w[np.broadcast_to(~outside, w.shape)].all()


# -- the serial numpy step: four inverse inputs in one round, one batched inverse (issue 21) ------

@needs_numba
@pytest.mark.parametrize("batch", [(), (3,)])
def test_fields4_makes_the_inputs_of_pair_x_and_pair_y_bit_for_bit(batch):
    c, rng = _complex(11)
    n, m = 20, 11
    w, vx, vy, q = c(*batch, n, m), c(1, m), c(n, 1), rng.standard_normal((n, m))
    pieces = [(slice(0, 7), slice(0, 7)), (slice(14, 20), slice(0, 7)), (slice(3, 5), slice(2, 11))]
    for op in (K.ArrayOps(np), K.NumbaOps()):
        ref, got = np.zeros((4, *batch, n, m), complex), np.zeros((4, *batch, n, m), complex)
        for r, cc in pieces:
            op.pair_x(w, vx, vy, q, ref[0], ref[1], r, cc)
            op.pair_y(w, vx, vy, -q, ref[2], ref[3], r, cc)
            op.fields4(w, vx, vy, q, -q, got, r, cc)
        assert np.array_equal(got, ref), op.name


@pytest.mark.parametrize("stepper", ["ab2cn", "rk3cn"])
@pytest.mark.parametrize("batch", [None, 3])
def test_serial_numpy_step_batches_its_four_inverses_and_agrees_with_the_pairs(stepper, batch, monkeypatch):
    """The serial numpy backend makes the 4 inverse inputs in one round and transforms them in one
    batched plan (``NonlinearPlan.quad``); the pairwise rounds the other backends use (forced here by
    hiding the NumpyFFT class from the hot loop) give the same run to rounding."""
    from solver import fastpath
    shape = (batch,) if batch else ()
    a, eq = _run(n=48, steps=20, stepper=stepper, batch=batch)
    plan = eq.fast.plan(shape)
    assert plan.quad and len(plan.ws.inverse) == 1 and plan.ws.spec.shape[:1] == (4,)
    assert plan.spectral_regions == ("kept", "zero")
    monkeypatch.setattr(fastpath, "NumpyFFT", type("NotNumpyFFT", (), {}))
    b, eq2 = _run(n=48, steps=20, stepper=stepper, batch=batch)
    plan2 = eq2.fast.plan(shape)
    assert not plan2.quad and len(plan2.ws.inverse) == 2 and plan2.ws.spec.shape[:1] == (2,)
    assert abs(a - b).max() <= 1e-13 * abs(a).max()


def test_elementwise_work_of_small_arrays_runs_on_the_calling_thread(monkeypatch):
    """Without parallel kernels (no shared OpenMP runtime, solver/openmp.py): serial kernels, and
    the runner's own team only for large arrays. tests/test_openmp.py covers the parallel kernels."""
    from solver import fastpath
    from solver.fastpath import TEAM_MIN_ENTRIES
    monkeypatch.setattr(fastpath, "parallel_available", lambda: False)

    def equation(threads=None):
        g = Grid(64, backend=make_backend(64, threads=2))
        eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
        if threads is not None:
            eq.fast.threads = threads
        return eq
    eq = equation()
    big = (TEAM_MIN_ENTRIES // (64 * 33) + 1,)
    assert eq.fast.threads is None and eq.fast.team_threads() == 1 and eq.fast.team_threads(big) == 2
    assert eq.fast.runner().team is None and eq.fast.runner(big).team is not None
    eq3 = equation(3)
    assert eq3.fast.team_threads() == 3 and eq3.fast.runner().team is not None


def test_fft_floor_takes_the_faster_way_of_its_four_inverses():
    pytest.importorskip("pyfftw")
    from bench.solver_harness import FFTFloor
    fl = FFTFloor(16, 1)
    fl.inverses(batched=False)
    separate = [p.copy() for p in fl.phys]
    fl.inverses(batched=True)
    for a, b in zip(separate, fl.phys):  # the same transforms of the same inputs either way
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * abs(a).max())
    t_fft, t_copy = fl.floor()
    assert t_fft > 0 and t_copy > 0 and sum(fl.wins.values()) == 1
    assert "batched over the 4" in fl.describe()


@pytest.mark.parametrize("kind", ["numba", "numpy"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_fused_n_and_ab2_update_give_the_bits_of_n_then_the_update(kind, batch, monkeypatch):
    """``minus_jacobian(w, out, then)`` with a ``then`` carrying ``ab2_update`` makes N and the AB2
    update in one pass (``kernels.negate_ab2``); without the attribute, N first and ``then`` on each
    piece: the same N, ω̂ and history to the bit (the forced modes and k = 0 included)."""
    monkeypatch.setenv(K.KERNELS_ENV, kind)
    if kind == "numba" and K.numba_version() is None:
        pytest.skip("numba not installed")
    n = 48
    be = make_backend(n, threads=1)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper("ab2cn", eq, dt=2e-3)
    w0 = random_field(g, kp=8, seed=1)
    w0 = np.stack([w0, 1.1 * w0]) if batch else w0
    prev0 = eq.nonlinear(w0 * 0.9, 0.0)
    A, B, f0 = st.A, st._B_scaled(1.5), -1 / 3
    calls, fuse = [], eq.kernels.negate_ab2
    monkeypatch.setattr(eq.kernels, "negate_ab2", lambda *a: (calls.append(1), fuse(*a)))
    out = {}
    for fused in (True, False):
        w, prev, n_now = w0.copy(), prev0.copy(), be.zeros_spectral(batch)

        def then(r, c, w=w, prev=prev, n_now=n_now):
            eq.kernels.ab2(w, prev, n_now, A, B, f0, r, c)
        if fused:
            then.ab2_update = (w, prev, n_now, A, B, f0)
        eq.fast.plan(batch).minus_jacobian(w, n_now, then)
        out[fused] = (w, prev, n_now)
    for a, b in zip(out[True], out[False]):
        assert np.array_equal(a, b) and not np.shares_memory(a, b)
    assert out[True][2].any() and not np.array_equal(out[True][0], w0)
    # Numba kernels take exact kept blocks: fused; array kernels' whole-row blocks zero a tail: not
    assert (len(calls) > 0) == (kind == "numba")


def test_the_sparse_entries_are_only_those_inside_the_kept_blocks():
    """Under the 2/3 rule the mask removes only k = 0 inside the kept blocks (the rows between them
    are not the hot loop's to fix, once per step); the cos-xy forcing is its 3 stored modes."""
    n = 48
    be = make_backend(n, threads=1)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    ws = eq.fast.plan(()).ws
    rows, cols = (np.asarray(a) for a in ws.removed[:2])
    assert rows.tolist() == [0] and cols.tolist() == [0]
    assert len(ws.forcing[0]) == np.count_nonzero(eq.forcing_hat_host) == 3
