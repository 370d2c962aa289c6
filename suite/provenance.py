"""Provenance stored with every artefact: config, seeds, code version, library versions, time."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import platform
import socket
import subprocess
from pathlib import Path

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
    from . import __version__
    return f"turbtl-{__version__}"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = "absent"
    return out


def provenance(config: dict | None = None, **extra) -> dict:
    rec = {
        "code_version": code_version(),
        "libraries": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    if config is not None:
        rec["config"] = config
    rec.update(extra)
    return rec
