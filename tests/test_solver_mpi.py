"""MPI layer of the solver: decomposition, slab FFT, rank-count invariance, restart, blow-up, abort.

Tests marked ``mpi`` run serially and on every rank under ``mpiexec -n 2`` / ``-n 4``; the others
spawn small ``mpiexec`` jobs (tests/ensemble_job.py) with a timeout.
"""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from solver.ensemble import Ensemble
from solver.backends.slab import SlabFFT
from solver.parallel import Decomposition, block_range, check_slab_grid
from suite.config import load_config
from solver.errors import SimulationBlowUp
from solver.errors import ParameterError as ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "ensemble_job.py")
SYSTEM = load_config(preset="ci").system("base")  # Re = 400, cos-xy forcing kf = 4, mu = 0.1
STOCHASTIC = type(SYSTEM)(**{**{k: getattr(SYSTEM, k) for k in SYSTEM.__dataclass_fields__},
                             "forcing": "stochastic", "eps": 0.5, "name": "stochastic"})


@pytest.fixture
def shared_dir(comm, tmp_path):
    """One folder for all ranks (rank 0's tmp_path)."""
    return comm.bcast(str(tmp_path), root=0)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------------------------
# decomposition


def test_block_range_splits_contiguously_and_balanced():
    for n in range(0, 20):
        for p in range(1, 7):
            blocks = [block_range(n, p, r) for r in range(p)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(blocks[r][1] == blocks[r + 1][0] for r in range(p - 1))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_bad_rank_counts_raise_config_errors():
    with pytest.raises(ConfigError, match="ranks_per_member = 2.*divide the number of MPI ranks"):
        Decomposition(None, members=4, ranks_per_member=2)
    with pytest.raises(ConfigError, match="n = 30 cannot be slab-decomposed over 4"):
        check_slab_grid(30, 4)
    with pytest.raises(ConfigError, match="n//2\\+1 >= ranks"):
        check_slab_grid(4, 4)


@pytest.mark.mpi
def test_members_spread_over_groups(comm):
    size = comm.Get_size()
    for rpm in [d for d in range(1, size + 1) if size % d == 0]:
        for members in (1, 3, 5):
            d = Decomposition(comm, members, rpm)
            assert d.n_groups == size // rpm and d.group_comm.Get_size() == rpm
            held = comm.allgather(list(d.members) if d.group_rank == 0 else [])
            assert sorted(m for h in held for m in h) == list(range(members))  # each member once
            assert all(d.owner(m) == d.group for m in d.members)
            assert d.idle == (d.group >= members)
            d.free()


# --------------------------------------------------------------------------------------------
# slab FFT


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_slab_fft_matches_numpy_fft(comm, backend):
    for n in (12, 16, 64):  # 12: kx columns split unevenly over 2 and 4 ranks
        for batch in ((), (3,), (2, 2)):
            f = SlabFFT(n, comm, backend=backend, threads=1)
            g = np.random.default_rng(n).standard_normal(batch + (n, n))  # same on every rank
            ref = np.fft.rfft2(g)
            u = f.scatter_physical(g)
            assert tuple(u.shape) == batch + f.physical_shape
            u_hat = f.rfft2(u)
            assert tuple(u_hat.shape) == batch + f.spectral_shape
            np.testing.assert_allclose(f.to_numpy(u_hat), ref[..., f.kx_slice], rtol=0, atol=1e-13 * abs(ref).max())
            back = f.gather_physical(f.irfft2(f.scatter_spectral(ref)))
            # planned transforms on preallocated buffers; the inverse is unnormalised
            src, dst, out = f.empty_physical(batch), f.empty_spectral(batch), f.empty_physical(batch)
            src[...] = u
            f.plan_rfft2(src, dst)()
            full = f.gather_spectral(dst)
            f.plan_irfft2(dst, out)()
            again = f.gather_physical(out)
            if f.is_root:
                np.testing.assert_allclose(back, np.fft.irfft2(ref, s=(n, n)), rtol=0, atol=1e-14 * abs(g).max())
                assert _rel(full, ref) < 1e-14
                np.testing.assert_allclose(again / n**2, g, rtol=0, atol=1e-13)
            else:
                assert back is None and full is None


@pytest.mark.mpi
def test_reductions_are_bit_identical_on_every_rank(comm):
    f = SlabFFT(16, comm)
    x = np.random.default_rng(comm.Get_rank()).standard_normal(7) * 10.0 ** np.arange(7)
    s, m = f.allsum(x), f.allmax(x)
    every = comm.allgather((s.tobytes(), m.tobytes()))
    assert all(e == every[0] for e in every)
    xs = np.array(comm.allgather(x))
    np.testing.assert_allclose(s, xs.sum(axis=0), rtol=1e-15)
    assert np.array_equal(m, xs.max(axis=0))
    assert f.allsum(1.5) == 1.5 * comm.Get_size() and isinstance(f.allsum(1.5), float)


# --------------------------------------------------------------------------------------------
# forced turbulence: the same fields at any rank count


def _serial(members, system, steps, n=32):
    return Ensemble(None, n=n, members=members, system=system, dt=0.01, seed=3).start().advance(steps)


@pytest.mark.mpi
def test_slab_mode_matches_serial_after_200_steps(comm):
    n = 64 if comm.Get_size() <= 2 else 32
    run = Ensemble(comm, n=n, members=1, system=SYSTEM, dt=0.01, seed=3,
                      ranks_per_member=comm.Get_size()).start().advance(200)
    got = run.gather_omega_hat()
    if comm.Get_rank() == 0:
        ref = _serial(1, SYSTEM, 200, n=n).state.omega_hat
        assert np.abs(ref).max() > 1.0  # the flow is alive
        assert _rel(got, ref) < 1e-12


@pytest.mark.mpi
@pytest.mark.parametrize("system", [SYSTEM, STOCHASTIC], ids=["cos-xy", "stochastic"])
def test_ensemble_mode_matches_serial_after_200_steps(comm, system):
    size, members = comm.Get_size(), 3
    ref = None
    for rpm in [d for d in range(1, size + 1) if size % d == 0]:
        run = Ensemble(comm, n=32, members=members, system=system, dt=0.01, seed=3,
                          ranks_per_member=rpm).start().advance(200)
        got = run.gather_omega_hat()
        if got is not None:
            ref = _serial(members, system, 200).state.omega_hat if ref is None else ref
            mine = ref[run.members.start:run.members.stop]
            assert _rel(got, mine) < 1e-12, (rpm, list(run.members))
        run.decomp.free()


@pytest.mark.mpi
def test_torch_backend_slabs_match_the_numpy_serial_run(comm):
    """The torch backend (host-staged transposes) gives the numpy serial fields to rounding."""
    run = Ensemble(comm, n=32, members=2, system=SYSTEM, dt=0.01, seed=3, ranks_per_member=comm.Get_size(),
                      backend="torch").start().advance(100)
    got = run.gather_omega_hat()
    if comm.Get_rank() == 0:
        assert _rel(got, _serial(2, SYSTEM, 100).state.omega_hat) < 1e-12


# --------------------------------------------------------------------------------------------
# checkpoint / restart


@pytest.mark.mpi
def test_restart_same_ranks_is_bit_identical(comm, shared_dir):
    size = comm.Get_size()
    kw = dict(n=32, members=2, system=STOCHASTIC, dt=0.01, seed=5, ranks_per_member=size if size > 1 else 1,
              checkpoint_dir=os.path.join(shared_dir, "ck"))
    full = Ensemble(comm, **kw).start().advance(60).gather_omega_hat()
    first = Ensemble(comm, **kw).start().advance(35, checkpoint_every=35)
    assert first.last_checkpoint[1] == 35
    second = Ensemble(comm, **kw)
    assert second.restore() and second.step == 35 and second.t == pytest.approx(0.35)
    resumed = second.advance(25).gather_omega_hat()
    if comm.Get_rank() == 0:
        assert np.array_equal(resumed, full)


@pytest.mark.mpi
def test_restart_on_another_rank_count_within_1e12(comm, shared_dir):
    """Write on every rank (one slab-decomposed member group), continue serially on rank 0."""
    size = comm.Get_size()
    kw = dict(n=32, members=2, system=STOCHASTIC, dt=0.01, seed=5, checkpoint_dir=os.path.join(shared_dir, "ck2"))
    full = Ensemble(comm, ranks_per_member=size, **kw).start().advance(50).gather_omega_hat()
    Ensemble(comm, ranks_per_member=size, **kw).start().advance(30, checkpoint_every=30)
    if comm.Get_rank() == 0:
        serial = Ensemble(None, **kw)
        assert serial.restore() and serial.step == 30
        got = serial.advance(20).state.omega_hat
        assert _rel(got, full) < 1e-12
    comm.Barrier()


@pytest.mark.mpi
def test_restore_with_a_damaged_file_fails_on_every_rank(comm, shared_dir):
    from solver.errors import CheckpointError as DataError
    kw = dict(n=16, members=2, system=SYSTEM, dt=0.01, ranks_per_member=1, checkpoint_dir=os.path.join(shared_dir, "ck3"))
    Ensemble(comm, **kw).start().advance(2, checkpoint_every=2)
    if comm.Get_rank() == 0:
        p = os.path.join(shared_dir, "ck3", "member-00001.npz")
        data = open(p, "rb").read()
        open(p, "wb").write(data[:-100])
    comm.Barrier()
    with pytest.raises(DataError, match="member-00001.npz"):
        Ensemble(comm, **kw).restore()


# --------------------------------------------------------------------------------------------
# spawned jobs: other rank counts, blow-up, a dying rank


def _mpiexec(np_, *args, timeout=120):
    cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(np_), sys.executable, JOB, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in [k for k in env if k.startswith(("PMI_", "MPI_", "HYDRA_", "OMPI_", "PMIX_"))]:
        env.pop(k)  # a fresh job even when this test itself runs under mpiexec
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_checkpoint_on_4_ranks_restarts_on_2(tmp_path):
    ck, a, b = str(tmp_path / "ck"), str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    common = ["--n", "32", "--members", "2", "--system", "base"]
    r = _mpiexec(4, *common, "--rpm", "2", "--steps", "30", "--checkpoint-dir", ck, "--checkpoint-every", "30")
    assert r.returncode == 0, r.stderr
    r = _mpiexec(2, *common, "--rpm", "2", "--steps", "30", "--checkpoint-dir", ck, "--restart", "--out", a)
    assert r.returncode == 0, r.stderr
    ref = _serial(2, SYSTEM, 60)
    assert ref.state.step == 60
    got = np.load(a)
    assert _rel(got, ref.state.omega_hat) < 1e-12
    # and the 2-rank restart continued from step 30 (not from scratch): a fresh 30-step run differs
    r = _mpiexec(2, *common, "--rpm", "1", "--steps", "30", "--out", b)
    assert r.returncode == 0, r.stderr
    assert _rel(np.load(b), ref.state.omega_hat) > 1e-3


def test_nan_on_one_rank_stops_every_rank_with_a_clear_error(tmp_path):
    ck = str(tmp_path / "ck")
    t0 = time.time()
    r = _mpiexec(2, "--n", "32", "--members", "1", "--rpm", "2", "--steps", "60", "--check-every", "10",
                 "--checkpoint-dir", ck, "--checkpoint-every", "20", "--nan-at", "25", "--nan-rank", "1")
    assert r.returncode != 0
    msg = "non-finite vorticity in member 0 at step 30, t = 0.3"
    assert r.stderr.count(msg) == 2, r.stderr  # both ranks raise it, neither hangs
    assert f"last good checkpoint: {ck} (step 20)" in r.stderr
    assert "SimulationBlowUp" in r.stderr and "Abort" not in r.stderr
    assert time.time() - t0 < 90


def test_blow_up_in_one_group_stops_the_other_groups_too(tmp_path):
    r = _mpiexec(2, "--n", "32", "--members", "2", "--rpm", "1", "--steps", "40", "--check-every", "10",
                 "--nan-at", "12", "--nan-rank", "0")
    assert r.returncode != 0
    assert r.stderr.count("non-finite vorticity in member 0 at step 20") == 2, r.stderr
    assert "no checkpoint written yet" in r.stderr


def test_a_rank_that_dies_aborts_the_job(tmp_path):
    t0 = time.time()
    r = _mpiexec(2, "--n", "32", "--members", "1", "--rpm", "2", "--steps", "40", "--fail-at", "7", "--fail-rank", "1")
    assert r.returncode != 0
    assert "[rank 1] aborting the MPI job" in r.stderr and "fails on purpose at step 7" in r.stderr
    assert time.time() - t0 < 90


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_blow_up_is_raised_serially_too():
    run = Ensemble(None, n=16, members=1, system=SYSTEM, dt=0.01, check_every=5).start()
    run.state.omega_hat[..., 2, 2] = np.inf
    with pytest.raises(SimulationBlowUp, match="at step 5, t = 0.05; no checkpoint written yet"):
        run.advance(10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_health_names_the_members_that_blew_up_and_why():
    from solver import health
    run = Ensemble(None, n=16, members=3, system=SYSTEM, dt=0.01, seed=3).start()
    grid, w = run.runner.grid, run.state.omega_hat.copy()
    h = health.check(grid, w, 0.01, cfl_max=2.0, step=7, t=0.07, names=run.members)
    assert h.ok and h.message() is None and h.blown_up == []
    w[1, 2, 2] = np.nan
    h = health.check(grid, w, 0.01, cfl_max=2.0, step=7, t=0.07, names=run.members)
    assert list(h.bad) == [False, True, False] and h.blown_up == [1]
    assert h.message() == "simulation blew up: non-finite vorticity in member 1 at step 7, t = 0.07"
    h = health.check(grid, run.state.omega_hat, 0.01, cfl_max=1e-9, step=7, t=0.07, names=run.members)
    worst = int(np.argmax(h.cfl))
    assert h.blown_up == [0, 1, 2] and f"> cfl_max = 1e-09 in member {worst} at step 7" in h.message()
    assert "in member" not in health.check(grid, run.state.omega_hat[0], 0.01, cfl_max=1e-9).message()


def test_one_member_at_a_time_matches_the_batch():
    """The one seeding rule: a member run alone (turbtl dns) is the batched ensemble's member."""
    batched = Ensemble(None, n=32, members=3, system=STOCHASTIC, dt=0.01, seed=3).start().advance(20)
    ens = Ensemble(None, n=32, members=3, system=STOCHASTIC, dt=0.01, seed=3, batch=False)
    assert ens.runner is None
    for m in ens.members:
        one = ens.member(m).start().advance_to(20)
        assert one.step == 20 and _rel(one.state.omega_hat, batched.state.omega_hat[m]) < 1e-12
