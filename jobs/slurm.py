"""Thin wrappers around the SLURM client commands (sbatch, squeue, sacct, scontrol, scancel).

Every call has a timeout; a missing command or a refused request raises :class:`SlurmError`
(a :class:`suite.errors.UsageError`: the CLI prints it and exits with status 2).
"""
from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass

from suite.errors import UsageError

TIMEOUT_S = 60
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


class SlurmError(UsageError):
    """A SLURM command is missing, timed out or refused the request."""


def run(cmd: list[str], timeout: float = TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess:
    """Run one SLURM client command; SlurmError when it is absent, hangs or (with check) fails."""
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"{cmd[0]} not found on PATH: the SLURM client commands are needed "
                         "(on this machine: `bash jobs/slurm_local.sh start` as root)", field=cmd[0])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(cmd)}` did not answer within {timeout:g} s (is slurmctld up?)",
                         field=cmd[0]) from None
    if check and r.returncode != 0:
        raise SlurmError(f"`{' '.join(cmd)}` failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}",
                         field=cmd[0])
    return r


def sbatch(script: str, *options: str) -> str:
    """Submit ``script``; return the job ID (``sbatch --parsable``)."""
    out = run(["sbatch", "--parsable", *options, script]).stdout.strip()
    job_id = out.split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed {out!r}, expected a job ID", field="sbatch")
    return job_id


def sbatch_test_only(script: str, *options: str) -> str:
    """``sbatch --test-only``: would the cluster accept ``script``? Returns SLURM's answer."""
    r = run(["sbatch", "--test-only", *options, script])
    return (r.stderr + r.stdout).strip()


def scancel(*job_ids: str) -> None:
    if job_ids:
        run(["scancel", *job_ids], check=False)


def update_dependency(job_id: str, dependency: str) -> bool:
    """Replace the dependency of a pending job; False when SLURM refuses (e.g. the job is gone)."""
    r = run(["scontrol", "update", f"JobId={job_id}", f"Dependency={dependency}"], check=False)
    return r.returncode == 0


@dataclass(frozen=True)
class JobState:
    """The state of one job or array task. ``exit_code`` is None while unknown."""

    state: str
    exit_code: int | None = None
    reason: str = ""
    source: str = ""  # squeue | sacct | exit-file | none

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def stuck(self) -> bool:
        """Pending forever: an afterok dependency failed."""
        return self.state == "PENDING" and "DependencyNeverSatisfied" in self.reason

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"


def queue() -> dict[str, JobState]:
    """This user's jobs in the queue, array tasks one by one, keyed ``JOBID`` or ``ARRAYID_TASK``."""
    r = run(["squeue", "--me", "-h", "-r", "-o", "%i|%T|%r"])
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = JobState(parts[1], None, parts[2], "squeue")
    return out


@functools.lru_cache(maxsize=1)
def accounting_enabled() -> bool:
    """Whether sacct works on this cluster (the local test cluster runs without slurmdbd)."""
    if shutil.which("sacct") is None:
        return False
    r = run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], check=False)
    return r.returncode == 0 and "disabled" not in (r.stderr + r.stdout)


def accounting(job_ids: list[str]) -> dict[str, JobState]:
    """Final states from sacct, keyed like :func:`queue`; empty when accounting is disabled."""
    if not job_ids or not accounting_enabled():
        return {}
    r = run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode"], check=False)
    out = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            code = parts[2].split(":")[0]
            out[parts[0]] = JobState(parts[1].split()[0], int(code) if code.isdigit() else None, "", "sacct")
    return out
