"""The run folder: one lock per folder, atomic small-file writes, and stage records.

Two commands working on the same run folder at once would interleave writes; the second one stops
instead with a clear message (:class:`RunLocked`, exit status 2) naming the command and process that
holds the folder. The lock is an ``fcntl.flock`` on ``DIR/.turbtl.lock``: the kernel drops it when
its holder dies (even by SIGKILL), so a killed run never leaves a stale lock behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import UsageError

LOCK_NAME = ".turbtl.lock"


class RunLocked(UsageError):
    """Another turbtl command holds the run folder."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str, comm=None, shared: bool = False):
    """Hold the run folder's lock for the duration of the block.

    Under MPI only rank 0 of ``comm`` takes the lock (the ranks of one job are one command); the
    outcome is broadcast so that every rank raises the same error. ``shared=True`` is for commands
    designed to run side by side on one folder (the slices of a transfer sweep, which never write the
    same file): they share the lock with each other and exclude every exclusive holder.
    """
    rank = comm.Get_rank() if comm is not None else 0
    fd = None
    err = None
    if rank == 0:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(Path(path).read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            os.close(fd)
            fd = None
            who = (f"`turbtl {holder['command']}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                   f"since {holder.get('since', '?')})" if holder.get("command")
                   else "other turbtl commands (e.g. transfer slices)")
            err = f"run folder {run_dir} is in use by {who}; wait for it to finish or use another --run-dir"
        else:
            if not shared:  # shared holders (several at once) leave the record empty
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                                         "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
                os.fsync(fd)
    if comm is not None and comm.Get_size() > 1:
        err = comm.bcast(err, root=0)
    if err:
        raise RunLocked(err, field="run-dir")
    try:
        yield
    finally:
        if fd is not None:
            if not shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str).encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes so that a reader sees the old file or the new one; a failed write (full disk)
    removes its temporary file and raises OSError naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # name the file in the error (full disk ...)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def stage_record_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "stages" / f"{stage}.json"


def record_stage(run_dir: str | Path, stage: str, wall_s: float, summary: str, **extra) -> None:
    """Record that a stage finished: its wall time and one summary line (read by run and report)."""
    write_json_atomic(stage_record_path(run_dir, stage),
                      {"stage": stage, "wall_s": round(wall_s, 3), "summary": summary,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")} | extra)


def read_stage(run_dir: str | Path, stage: str) -> dict | None:
    p = stage_record_path(run_dir, stage)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
