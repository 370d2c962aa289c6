"""A real single-node SLURM cluster for the tests marked ``slurm`` (session scope).

Import the fixture into a test module (``from slurm_cluster import slurm_cluster``). It starts
munged, slurmctld and slurmd with ``jobs/slurm_local.sh`` in a private folder and on free ports,
advertises 4 CPUs (``SLURM_LOCAL_CPUS=4``: MPI jobs with 2-4 tasks run on 2 cores), points
``SLURM_CONF`` at it for the session, and stops every daemon by its PID afterwards. Without root
or without the Debian packages (``bash jobs/sysdeps.sh`` installs them) the tests skip and say why.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "jobs" / "slurm_local.sh"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "not root: the local SLURM cluster (munged, slurmctld, slurmd) must be started as root"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [c for c in DAEMONS if shutil.which(c, path=path) is None]
    if missing:
        return (f"SLURM/munge not installed (missing {', '.join(missing)}): `bash jobs/sysdeps.sh` as root "
                "installs slurmctld slurmd slurm-client munge")
    return None


def _free_port_base() -> int:
    """A base port P with P..P+3 free (slurmctld, slurmd, slurmdbd, mariadb)."""
    for base in range(17817, 40000, 10):
        try:
            socks = []
            for p in range(base, base + 4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports for the local SLURM cluster")


@dataclass(frozen=True)
class LocalCluster:
    base: Path
    env: dict
    cpus: int

    def script(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="turbtl-slurm-"))
    env = dict(os.environ, SLURM_LOCAL_DIR=str(base), SLURM_LOCAL_CPUS="4",
               SLURM_LOCAL_PORT_BASE=str(_free_port_base()), PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    cluster = LocalCluster(base=base, env=env, cpus=4)
    old_conf = os.environ.get("SLURM_CONF")
    try:
        r = cluster.script("start")
        if r.returncode != 0:
            pytest.fail(f"the local SLURM cluster did not start (exit {r.returncode}):\n{r.stderr[-4000:]}")
        os.environ["SLURM_CONF"] = str(base / "etc" / "slurm.conf")
        yield cluster
    finally:
        cluster.script("stop")
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        shutil.rmtree(base, ignore_errors=True)
