"""Shared test set-up.

Tests marked ``mpi`` run serially here and again on every rank under ``mpiexec -n 2`` and
``-n 4`` (see the Makefile). Under MPI a failing test on any rank aborts the whole job at once
(MPI_Abort), so a rank never waits forever in a collective for a partner that has failed.
"""
from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _mpi_size() -> int:
    # Only ask MPI when launched by mpiexec: importing mpi4py in plain pytest runs is harmless,
    # but keeping it lazy keeps the serial suite free of MPI start-up cost.
    if not any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")):
        return 1
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_size()


MPI_SIZE = _mpi_size()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if MPI_SIZE > 1 and report.failed:
        from mpi4py import MPI
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(f"\n[rank {rank}] {item.nodeid} failed:\n{report.longreprtext}\n")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)


@pytest.fixture
def comm():
    """MPI.COMM_WORLD (size 1 in the serial run)."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


@pytest.fixture(scope="session")
def venv_bin() -> str:
    return os.path.dirname(sys.executable)
