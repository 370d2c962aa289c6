"""Forced turbulence planned with FFTW_MEASURE under the wisdom cache (not a test module).

    [mpiexec -n P] python tests/wisdom_job.py N STEPS

Prints one JSON line from rank 0: the sha256 of the global spectral vorticity after STEPS steps
and, per rank, how often the process imported the cache and wrote new wisdom to it. The cache
folder is $TURBTL_CACHE (set by the test).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from solver import wisdom  # noqa: E402
from solver.ensemble import Ensemble  # noqa: E402
from suite.config import load_config  # noqa: E402


def main() -> None:
    n, steps = int(sys.argv[1]), int(sys.argv[2])
    comm = None
    if any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE")):
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    size = 1 if comm is None else comm.Get_size()
    run = Ensemble(comm, n=n, members=1, system=load_config(preset="ci").system("base"), dt=0.005,
                      seed=1, ranks_per_member=size, threads=1).start().advance(steps)
    assert run.backend.planner == "FFTW_MEASURE", run.backend.planner
    w = run.gather_omega_hat()
    st = [wisdom.stats()] if comm is None else comm.gather(wisdom.stats(), root=0)
    if comm is None or comm.Get_rank() == 0:
        print(json.dumps({"sha256": hashlib.sha256(w.tobytes()).hexdigest(), "stats": st}))


if __name__ == "__main__":
    main()
