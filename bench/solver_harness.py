"""Benchmark harnesses of the solver: what the asv benchmarks (bench/solver.py, bench/fdns.py,
bench/mpi.py) and bench/run.sh time. They used to live in solver modules; the solver library holds
no timing code (docs/architecture.md).

- :func:`measure_step_vs_floor`: one forced-turbulence step against the FFT floor of its backend;
- :func:`bench_steps`: AB2-CN steps of an MPI ensemble (:class:`solver.ensemble.Ensemble`);
- :func:`bench_fft_pairs`: planned forward + inverse slab-FFT pairs over an MPI group;
- the MPI command line (one thread per rank; rank 0 prints one line of ``key=value``)::

    OMP_NUM_THREADS=1 mpiexec -n 2 python -P bench/solver_harness.py --bench 1024 20 [--solver]
        [--members M --ranks-per-member R --repeats K --backend numpy|torch]

Only the solver's public API is imported (absolute imports), so the file runs as a script under
``mpiexec`` as well as a module of the asv suite.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from types import SimpleNamespace

import numpy as np

from solver.backends import make_backend
from solver.ensemble import Ensemble
from solver.equation import Equation, Parameters
from solver.forcing import make_forcing
from solver.grid import Grid
from solver.initial import random_field
from solver.parallel import Decomposition, abort_on_error
from solver.stepping import make_stepper


def _summary(be) -> str:
    """The backend in one line: ``summary()`` (before it existed ``describe()`` returned that line)."""
    return be.summary() if hasattr(be, "summary") else be.describe()


def _kernels(eq):
    """The equation's hot-loop kernels (``kernels``; ``ops`` before solver/fastpath.py)."""
    return eq.kernels if hasattr(eq, "kernels") else eq.ops


def measure_step_vs_floor(n: int, backend: str = "numpy", dtype: str = "float64", steps: int = 20,
                          threads: int = 0, repeats: int = 5, device: str = "cpu",
                          stepper: str = "ab2cn") -> dict:
    """Time one forced-turbulence step (2/3 rule, advective Jacobian) against the FFT floor.

    The floor is the time of the 5 real 2D FFTs such a step needs (4 inverse, 1 forward), taken
    with the same backend object (same library, plans and threads). Best of ``repeats`` runs of
    ``steps`` steps each. Returns ms_per_step, floor_ms, ratio, mpoints_steps_per_s, a
    description of the backend and the hot-loop kernels, and (for the record) pruned_floor_ms /
    ratio_to_pruned: the same 5 transforms skipping the columns the 2/3 rule zeroes, as the step
    itself does them (for the numpy backend they are cheaper than the floor)."""
    be = make_backend(n, backend=backend, dtype=dtype, device=device, threads=threads)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper(stepper, eq, dt=1e-4)
    state = st.init_state(random_field(g, kp=10, seed=0))
    # the floor: 4 planned inverse + 1 planned forward transform on their own buffers
    specs = [be.zeros_spectral() for _ in range(4)]
    phys = [be.zeros_physical() for _ in range(4)]
    for sp in specs:
        sp[...] = state.omega_hat
    out = be.zeros_spectral()
    plans = [be.plan_irfft2(sp, ph) for sp, ph in zip(specs, phys)] + [be.plan_rfft2(phys[0], out)]
    # the same 5 transforms pruned as the step does them (columns kx > kmax skipped), for the record
    keep = g.kmax_dealias + 1
    pruned = [be.plan_irfft2(sp, ph, kx_stop=keep) for sp, ph in zip(specs, phys)] + \
        [be.plan_rfft2(phys[0], out, kx_stop=keep)]

    def floor_step():
        for p in plans:
            p()

    def pruned_step():
        for p in pruned:
            p()

    def timed(fn):
        be.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        be.synchronize()
        return (time.perf_counter() - t0) / steps

    for _ in range(3):
        st(state)
        floor_step()
    # interleaved, so that load from other processes hits both alike; best of each
    best = floor = floor_pruned = math.inf
    for _ in range(repeats):
        best = min(best, timed(lambda: st(state)))
        floor = min(floor, timed(floor_step))
        floor_pruned = min(floor_pruned, timed(pruned_step))
    return {"n": n, "backend": _summary(be), "kernels": _kernels(eq).name, "ms_per_step": best * 1e3,
            "floor_ms": floor * 1e3, "ratio": best / floor, "mpoints_steps_per_s": n * n / best / 1e6,
            "pruned_floor_ms": floor_pruned * 1e3, "ratio_to_pruned": best / floor_pruned}


def bench_steps(n: int, steps: int, comm=None, *, members: int = 1, ranks_per_member: int | None = None,
                repeats: int = 3, backend: str = "numpy", dtype: str = "float64", device: str = "cpu",
                threads: int = 1) -> dict:
    """Time ``steps`` AB2-CN steps of a forced-turbulence ensemble (Re 2e4, kf 4, 2/3 rule) on
    ``comm`` (best of ``repeats``; no health checks or checkpoints inside the timed loop).

    Returns seconds per step and members*steps/s, Mpoints*steps/s for the whole ensemble."""
    size = 1 if comm is None else comm.Get_size()
    rpm = size if ranks_per_member is None else ranks_per_member
    system = SimpleNamespace(re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                             kf=4.0, eps=0.0, kp=10.0, init_energy=0.5, init="random")
    run = Ensemble(comm, n=n, members=members, system=system, dt=1e-4, ranks_per_member=rpm,
                      backend=backend, dtype=dtype, device=device, threads=threads, check_every=10**9)
    run.start().advance(2)
    best = math.inf
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        run.advance(steps)
        if run.backend is not None:
            run.backend.synchronize()
        if comm is not None:
            comm.Barrier()
        best = min(best, time.perf_counter() - t0)
    per = best / steps
    return {"n": n, "ranks": size, "ranks_per_member": rpm, "members": members, "s_per_step": per,
            "members_steps_per_s": members / per, "mpoints_steps_per_s": members * n * n / per / 1e6,
            "backend": "idle" if run.backend is None else _summary(run.backend)}


def bench_fft_pairs(n: int, steps: int, comm=None, *, members: int = 1, ranks_per_member: int | None = None,
          repeats: int = 3, backend: str = "numpy", threads: int = 1) -> dict:
    """Time ``steps`` planned forward + inverse transform pairs of every member held by this
    group (best of ``repeats``; members over groups as in :class:`Decomposition`).

    Returns the seconds per pair and the throughput in members*pairs/s and Mpoints*pairs/s."""
    size = 1 if comm is None else comm.Get_size()
    rpm = size if ranks_per_member is None else ranks_per_member
    dec = Decomposition(comm, members, rpm)
    be = make_backend(n, backend=backend, threads=threads, comm=dec.group_comm)
    batch = (len(dec.members),) if len(dec.members) != 1 else ()
    u, u_hat = be.empty_physical(batch), be.empty_spectral(batch)
    u[...] = be.asarray(np.random.default_rng(dec.group).standard_normal(u.shape))
    fwd, inv = be.plan_rfft2(u, u_hat), be.plan_irfft2(u_hat, u)
    fwd(), inv()
    best = np.inf
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            fwd()
            inv()
        be.synchronize()
        if comm is not None:
            comm.Barrier()
        best = min(best, time.perf_counter() - t0)
    per = best / steps
    return {"n": n, "ranks": size, "ranks_per_member": rpm, "members": members, "s_per_pair": per,
            "members_pairs_per_s": members / per, "mpoints_pairs_per_s": members * n * n / per / 1e6,
            "backend": _summary(be)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/solver_harness.py", description=__doc__.split("\n")[0])
    p.add_argument("--bench", nargs=2, type=int, metavar=("N", "STEPS"), required=True)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--ranks-per-member", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    p.add_argument("--solver", action="store_true",
                   help="time AB2-CN steps of forced turbulence (bench_steps) instead of FFT pairs")
    a = p.parse_args(argv)
    from mpi4py import MPI  # optional dependency: only the MPI command line needs it
    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        n, steps = a.bench
        if a.solver:
            r = bench_steps(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                            repeats=a.repeats, backend=a.backend)
        else:
            r = bench_fft_pairs(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                      repeats=a.repeats, backend=a.backend)
        if comm.Get_rank() == 0:
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

