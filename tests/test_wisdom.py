"""Deterministic FFTW planning (solver.wisdom): FFTW_MEASURE plans shared through a per-host wisdom
cache, so separate processes (and every MPI rank) use the same algorithms and get bit-identical
results; the first process measures, later ones only import."""
import json
import os
import subprocess
import sys

import pytest

from solver import wisdom
from solver.backends import PLANNER_ENV, default_planner
from solver.errors import ParameterError as ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "wisdom_job.py")


def _env(cache):
    return {**os.environ, "TURBTL_CACHE": str(cache), PLANNER_ENV: "FFTW_MEASURE", "OMP_NUM_THREADS": "1"}


def _result(proc_or_out):
    out = proc_or_out if isinstance(proc_or_out, str) else proc_or_out.communicate(timeout=240)[0]
    return json.loads(out.strip().splitlines()[-1])


def test_separate_processes_are_bit_identical_and_each_plan_is_measured_once(tmp_path):
    # two processes start together on an empty cache: the lock lets one measure, the other imports
    cmd = [sys.executable, JOB, "96", "15"]
    procs = [subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    first = [_result(p) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    later = _result(subprocess.run(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, text=True, check=True,
                                   timeout=240).stdout)
    assert first[0]["sha256"] == first[1]["sha256"] == later["sha256"]
    # each distinct transform was measured once, by whichever process came first (the lock)
    alone = _result(subprocess.run(cmd, env=_env(tmp_path / "alone"), stdout=subprocess.PIPE, text=True,
                                   check=True, timeout=240).stdout)
    # (its own fresh measurements may pick other algorithms: its field need not equal ours bitwise)
    assert alone["stats"][0]["saves"] >= 1
    assert sum(r["stats"][0]["saves"] for r in first) == alone["stats"][0]["saves"], (first, alone)
    assert later["stats"][0] == {"loads": 1, "saves": 0}  # everything came from the cache
    assert wisdom._decode(next(tmp_path.glob("fftw-wisdom-*.bin")).read_bytes()) is not None


def test_mpi_runs_are_bit_identical_across_processes(tmp_path, venv_bin):
    cmd = [os.path.join(venv_bin, "mpiexec"), "-n", "2", sys.executable, JOB, "64", "15"]
    runs = [_result(subprocess.run(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, text=True, check=True,
                                   timeout=240).stdout) for _ in range(2)]
    assert runs[0]["sha256"] == runs[1]["sha256"]
    assert sum(s["saves"] for s in runs[0]["stats"]) >= 1
    assert [s["saves"] for s in runs[1]["stats"]] == [0, 0]  # both ranks reused the recorded plans


def test_a_foreign_or_truncated_cache_is_ignored_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("TURBTL_CACHE", str(tmp_path))
    path = wisdom.wisdom_path()
    assert path.parent == tmp_path
    path.write_bytes(b"not wisdom at all")
    assert wisdom.load(path) is False
    good = wisdom._encode((b"a", b"bc", b""))
    assert wisdom._decode(good) == (b"a", b"bc", b"")
    assert wisdom._decode(good[:-3]) is None
    out = subprocess.run([sys.executable, JOB, "32", "3"], env=_env(tmp_path), stdout=subprocess.PIPE,
                         text=True, check=True, timeout=240).stdout
    assert _result(out)["stats"][0]["saves"] >= 1
    assert wisdom._decode(path.read_bytes()) is not None  # rewritten with real wisdom


def test_an_unusable_cache_falls_back_to_estimate_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("TURBTL_CACHE", str(blocker / "sub"))  # cannot be created
    monkeypatch.setitem(wisdom._state, "warned", False)
    with pytest.warns(RuntimeWarning, match="planning with FFTW_ESTIMATE"):
        with wisdom.planning() as ok:
            assert ok is False


def test_planner_override_is_validated(monkeypatch):
    monkeypatch.setenv(PLANNER_ENV, "FFTW_ESTIMATE")
    assert default_planner() == "FFTW_ESTIMATE"
    monkeypatch.setenv(PLANNER_ENV, "FFTW_FAST")
    with pytest.raises(ConfigError, match="TURBTL_FFTW_PLANNER = 'FFTW_FAST'"):
        default_planner()
    monkeypatch.delenv(PLANNER_ENV)
    assert default_planner() == "FFTW_MEASURE"
