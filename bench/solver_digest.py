"""Bitwise invariance check of the solver: sha256 digests of short seeded runs.

The renovation of ``solver/`` (issue 18) must not change a single bit of what the solver computes.
Run this before and after a change on the same machine and compare the outputs line by line::

    OMP_NUM_THREADS=1 python -m bench.solver_digest > before.txt       # serial cases
    OMP_NUM_THREADS=1 mpiexec -n 2 python -m bench.solver_digest --mpi  # + the MPI slab path
    ... change the code ...
    OMP_NUM_THREADS=1 python -m bench.solver_digest | diff before.txt -

Cases: the numpy backend (float64) with every stepper of ``solver.stepping.STEPPERS`` and every
dealias rule of ``solver.grid.DEALIAS_RULES``, on a seeded 64² cos-xy forced β-plane state, 50
steps each; a stochastic-forcing AB2-CN case; with ``--mpi`` (under ``mpiexec -n 2``) the same
forced β-plane state with AB2-CN and the 2/3 rule on the MPI slab backend (two ranks, one member).
Each line: ``<case> <sha256 of the final spectral state's bytes (gathered to rank 0 under MPI)>``.
Only the public solver API is used, so the script runs unchanged across the renovation.
"""
from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np

N, STEPS, DT = 64, 50, 2e-3


def _run(stepper: str, dealias: str, forcing: str = "cos-xy", comm=None) -> str:
    from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field

    be = make_backend(N, backend="numpy", dtype="float64", threads=1, comm=comm)
    g = Grid(N, backend=be)
    f = make_forcing(g, forcing, kf=4.0, eps=0.1 if forcing == "stochastic" else 0.0, seed=3)
    eq = Equation(g, Parameters(re=2e3, mu=0.05, beta=2.0, hyperviscosity=1e-8, hyper_order=2),
                  forcing=f, dealias=dealias)
    step = make_stepper(stepper, eq, DT)
    state = step.init_state(random_field(g, kp=8.0, seed=7))
    for _ in range(STEPS):
        step(state)
    local = np.ascontiguousarray(be.to_numpy(state.omega_hat))
    if comm is not None and comm.Get_size() > 1:
        parts = comm.gather(local, root=0)
        if comm.Get_rank() != 0:
            return ""
        local = np.ascontiguousarray(np.concatenate(parts, axis=-1))  # slabs along kx
    return hashlib.sha256(local.tobytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mpi", action="store_true", help="only the MPI slab case (run under mpiexec -n 2)")
    a = p.parse_args(argv)
    if a.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        d = _run("ab2cn", "2/3", comm=comm)
        if comm.Get_rank() == 0:
            print(f"mpi{comm.Get_size()}/ab2cn/2/3/cos-xy {d}")
        return 0
    from solver.grid import DEALIAS_RULES
    from solver.stepping import STEPPERS
    for stepper in STEPPERS:
        for dealias in DEALIAS_RULES:
            print(f"serial/{stepper}/{dealias}/cos-xy {_run(stepper, dealias)}")
    print(f"serial/ab2cn/2/3/stochastic {_run('ab2cn', '2/3', 'stochastic')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
