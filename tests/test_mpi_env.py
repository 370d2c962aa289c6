"""MPI plumbing: collectives work on every rank count, and a failing rank fails the job fast."""
import os
import subprocess
import sys
import textwrap
import time

import pytest


@pytest.mark.mpi
def test_allreduce_over_ranks(comm):
    n = comm.Get_size()
    assert comm.allreduce(comm.Get_rank() + 1) == n * (n + 1) // 2


def _mpiexec():
    return os.path.join(os.path.dirname(sys.executable), "mpiexec")


def test_failing_rank_aborts_the_job_quickly(tmp_path):
    prog = tmp_path / "fail.py"
    prog.write_text(textwrap.dedent("""
        import sys
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        try:
            if comm.rank == 1:
                raise RuntimeError("rank 1 fails on purpose")
            comm.Barrier()          # the others would wait forever without the abort
        except Exception as e:
            sys.stderr.write(f"[rank {comm.rank}] {e}\\n"); sys.stderr.flush()
            comm.Abort(3)
    """))
    t0 = time.time()
    r = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(prog)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode != 0
    assert "rank 1 fails on purpose" in r.stderr
    assert time.time() - t0 < 60
