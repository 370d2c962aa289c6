"""Helpers shared by the benchmarks: devices, optional stages, subprocess runners.

Not a benchmark module (no ``time_``/``track_``/``peakmem_`` names here).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy  # noqa: F401 - imported once in asv's forkserver, so that every forked benchmark
import torch  # noqa: F401   process starts with them loaded (one process per benchmark and parameter)

#: devices every device-aware benchmark is parameterised over; "cuda" is n/a without a GPU.
DEVICES = ["cpu", "cuda"]


def cuda_available() -> bool:
    return torch.cuda.is_available()


def require_device(device: str) -> None:
    """Raise NotImplementedError (asv: "n/a") for a device this machine does not have."""
    if device.startswith("cuda") and not cuda_available():
        raise NotImplementedError("no CUDA device on this machine")


def synchronize(device: str) -> None:
    """Wait for queued device work (a no-op on CPU)."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def require(module: str, *names: str):
    """The module, or NotImplementedError (asv: "n/a") when it or one of ``names`` does not exist
    in the installed version of the project (older commits, stages not written yet)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise NotImplementedError(f"{module} is not in this version of turbtl ({e})") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise NotImplementedError(f"{module} has no {', '.join(missing)} in this version of turbtl")
    return mod


def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def executable(name: str) -> str:
    """A console script of the benchmarked environment (beside its python), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.path.exists(here) else shutil.which(name)
    if found is None:
        raise NotImplementedError(f"{name} not found beside {sys.executable} or on PATH")
    return found


def run(cmd: list[str], timeout: float = 300, threads: int = 1) -> str:
    """Run ``cmd`` (OMP_NUM_THREADS=threads), return its stdout; a failure raises with its stderr."""
    # cwd: a neutral folder, so that ``python -m`` imports the installed project, not a checkout
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(threads),
                       cwd=tempfile.gettempdir())
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-4000:]}")
    return p.stdout


def mpi_bench(ranks: int, args: list[str], timeout: float = 300) -> dict:
    """``mpiexec -n ranks python bench/solver_harness.py --bench ...``: the ``key=value`` line of rank 0."""
    harness = str(Path(__file__).with_name("solver_harness.py"))
    # -P: not the script's folder first on sys.path (bench/solver.py would shadow the solver package)
    out = run([executable("mpiexec"), "-n", str(ranks), sys.executable, "-P", harness, *args],
              timeout=timeout)
    line = [ln for ln in out.splitlines() if "=" in ln][-1]
    res = {}
    if " backend=" in line:  # the last field, free text (it contains spaces and "n=...")
        line, res["backend"] = line.split(" backend=", 1)
    for kv in line.split():
        k, v = kv.split("=", 1)
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    return res


def torchrun_json(nproc: int, script: str, args: list[str], timeout: float = 300) -> dict:
    """``torchrun --standalone --nproc-per-node nproc script args``: the last JSON line printed."""
    out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               script, *args], timeout=timeout)
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
