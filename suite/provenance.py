"""Provenance stored with every artefact: config, seeds, code version, library versions, time."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from solver.backends import default_threads

from . import __version__

_LIBS = ("numpy", "scipy", "torch", "mpi4py", "dask", "distributed", "xarray", "zarr", "pyFFTW", "numba")


def code_version() -> str:
    """`git describe` of the source tree (with -dirty), or the package version outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f"turbtl-{__version__}"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = "absent"
    return out


_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "TURBTL_KERNELS", "TURBTL_FFTW_PLANNER",
               "TURBTL_KEEP_FREED_MEMORY", "TURBTL_SHARED_OPENMP", "TURBTL_FUSED_X")


def thread_counts(config: dict | None = None) -> dict:
    """The effective parallelism of this process: torch intra-/inter-op threads, FFTW threads (the
    configured dns.threads, or what 0 resolves to), Numba threads, MPI ranks, DDP world size, and
    the environment variables that set them (docs/reliability.md: what is bitwise reproducible)."""
    out: dict = {}
    torch = sys.modules.get("torch")
    out["torch_intraop"] = torch.get_num_threads() if torch else None
    out["torch_interop"] = torch.get_num_interop_threads() if torch else None
    threads = ((config or {}).get("dns") or {}).get("threads", 0)
    out["fftw"] = threads or default_threads()  # where 0 ("automatic") is resolved
    numba = sys.modules.get("numba")
    out["numba"] = numba.get_num_threads() if numba else None
    openmp = sys.modules.get("solver.openmp")  # one OpenMP runtime for FFTW and Numba, or why not
    out["openmp"] = openmp.describe() if openmp else None
    fused = sys.modules.get("solver.fftw_rows")  # the fused x pass of the hot loop, or why not
    out["fused_x"] = fused.describe(load=False) if fused else None
    out["mpi_ranks"] = 1
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        out["mpi_ranks"] = mpi.COMM_WORLD.Get_size()
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        out["ddp_world"] = dist.get_world_size()
    else:
        out["ddp_world"] = int(os.environ.get("WORLD_SIZE", "1") or 1)
    out["env"] = {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}
    return out


def command_line(threads: dict) -> dict:
    """The command as run, and a shell line that reruns it with the same thread counts."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0].endswith("turbtl") else sys.argv[0]] + sys.argv[1:]
    env = dict(threads.get("env", {}))
    if threads.get("fftw"):
        env["OMP_NUM_THREADS"] = str(threads["torch_intraop"] or threads["fftw"])
    if threads.get("numba"):
        env["NUMBA_NUM_THREADS"] = str(threads["numba"])
    launch = [f"mpiexec -n {threads['mpi_ranks']}"] if threads.get("mpi_ranks", 1) > 1 else []
    if threads.get("ddp_world", 1) > 1 and not launch:
        launch = [f"torchrun --standalone --nproc_per_node {threads['ddp_world']}"]
    rerun = " ".join([f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())] + launch
                     + [shlex.quote(a) for a in argv])
    return {"argv": list(sys.argv), "rerun": rerun}


def provenance(config: dict | None = None, **extra) -> dict:
    threads = thread_counts(config)
    rec = {
        "code_version": code_version(),
        "libraries": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "threads": threads,
        "command": command_line(threads),
    }
    if config is not None:
        rec["config"] = config
    rec.update(extra)
    return rec
