"""A small forced-turbulence ensemble job, run under mpiexec by the tests (not a test module).

    mpiexec -n 4 python tests/ensemble_job.py --n 32 --members 2 --rpm 2 --steps 60 \
        --checkpoint-dir DIR --checkpoint-every 30 [--restart] [--nan-at STEP --nan-rank R] \
        [--fail-at STEP --fail-rank R] [--out FILE.npy]

Writes the ensemble's global spectral vorticity (members, n, n//2+1) to --out from world rank 0.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from solver.ensemble import Ensemble  # noqa: E402
from solver.parallel import abort_on_error  # noqa: E402
from suite.config import load_config  # noqa: E402


def build(comm, a):
    cfg = load_config(preset="ci")
    return Ensemble(comm, n=a.n, members=a.members, system=cfg.system(a.system), dt=a.dt, seed=a.seed,
                       ranks_per_member=a.rpm, check_every=a.check_every, checkpoint_dir=a.checkpoint_dir)


def gather_all(comm, run):
    """Every member's global field on world rank 0 (group roots send theirs)."""
    mine = run.gather_omega_hat()
    parts = comm.gather((list(run.members), mine) if mine is not None else None, root=0)
    if comm.Get_rank() != 0:
        return None
    out = {}
    for p in parts:
        if p is not None:
            for i, m in enumerate(p[0]):
                out[m] = p[1][i]
    return np.stack([out[m] for m in sorted(out)])


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--rpm", type=int, default=1)
    p.add_argument("--system", default="base")
    p.add_argument("--dt", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--check-every", type=int, default=10)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--restart", action="store_true")
    p.add_argument("--nan-at", type=int, default=-1)
    p.add_argument("--nan-rank", type=int, default=0)
    p.add_argument("--fail-at", type=int, default=-1)
    p.add_argument("--fail-rank", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        run = build(comm, a)
        if not (a.restart and run.restore()):
            run.start()
        for _ in range(a.steps):
            step = run.step + 1 if a.nan_at >= 0 or a.fail_at >= 0 else None
            if step == a.nan_at and comm.Get_rank() == a.nan_rank and run.state is not None:
                run.state.omega_hat[..., 1, 1] = np.nan
            if step == a.fail_at and comm.Get_rank() == a.fail_rank:
                raise RuntimeError(f"rank {a.fail_rank} fails on purpose at step {step}")
            run.advance(1, checkpoint_every=a.checkpoint_every)
        field = gather_all(comm, run)
        if a.out and comm.Get_rank() == 0:
            np.save(a.out, field)


if __name__ == "__main__":
    main()
