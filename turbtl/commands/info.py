"""`turbtl info`: what this machine and environment offer to the suite."""
from __future__ import annotations

import os
import platform

from solver.backends import describe_default_backend
from solver.fftw_rows import describe as describe_fused_x
from solver.kernels import describe as describe_kernels
from solver.openmp import describe as describe_openmp
from suite.provenance import code_version, library_versions


def gather() -> list[tuple[str, str]]:
    rows = [("turbtl", code_version()), ("python", platform.python_version()),
            ("platform", f"{platform.system()} {platform.machine()}")]
    libs = library_versions()
    for k in ("numpy", "scipy", "torch", "mpi4py", "dask", "distributed", "xarray", "zarr"):
        rows.append((k, libs[k]))
    try:
        from mpi4py import MPI
        rows.append(("MPI library", MPI.Get_library_version().splitlines()[0].strip()))
        rows.append(("MPI standard", "%d.%d" % MPI.Get_version()))
    except Exception as e:  # noqa: BLE001 - info must print whatever it can
        rows.append(("MPI library", f"unavailable ({e})"))
    rows.append(("CPUs (os)", str(os.cpu_count())))
    try:
        rows.append(("CPUs (affinity)", str(len(os.sched_getaffinity(0)))))
    except AttributeError:
        pass
    rows.append(("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")))
    try:
        import torch
        rows.append(("torch threads", str(torch.get_num_threads())))
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(n)) if n else "none"
        rows.append(("GPUs visible", f"{n} ({gpus})" if n else "0"))
        rows.append(("torch CUDA build", str(torch.version.cuda)))
    except Exception as e:  # noqa: BLE001
        rows.append(("torch", f"unavailable ({e})"))
    rows.append(("FFT backend", describe_default_backend()))
    rows.append(("OpenMP runtime", describe_openmp()))
    rows.append(("solver kernels", describe_kernels()))
    rows.append(("fused x pass", describe_fused_x()))
    return rows


def run(args) -> int:
    rows = gather()
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0


def register(sub):
    p = sub.add_parser("info", help="versions, CPUs, threads, GPUs and the FFT backend in use",
                       description="Print a table of the software and hardware the suite will use.")
    p.set_defaults(func=run)
