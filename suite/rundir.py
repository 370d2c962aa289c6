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

from solver.atomic import write_bytes_atomic

from . import layout
from .errors import UsageError


class RunLocked(UsageError):
    """Another turbtl command holds the run folder."""


def is_busy(run_dir: str | Path) -> bool:
    """True while another command holds the run folder's lock exclusively (never creates the file)."""
    try:
        fd = os.open(layout.lock_file(run_dir), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a probe lock that was taken
    return False


def _writable(path: Path) -> bool:
    """May this process create entries in the folder ``path``?"""
    return os.access(path, os.W_OK | os.X_OK)


def read_run_record(run_dir: str | Path) -> dict | None:
    try:
        rec = json.loads(layout.run_record(run_dir).read_text())
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def check_run_dir(run_dir: str | Path, cfg=None, *, create: bool = True) -> Path:
    """Refuse (UsageError, exit 2) a ``--run-dir`` that cannot serve as a run folder, before anything is
    written: a path that is a file (or lies under one), a folder this user cannot write (or cannot
    create), an existing folder of other files, or a run folder made with another configuration
    (its ``run.json`` names another preset). ``create=False``: the folder must already exist."""
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--run-dir {p}: is a file, not a folder; give the path of a new or existing run "
                         "folder (or move the file away)", field="run-dir")
    if not p.exists():
        if not create:
            raise UsageError(f"--run-dir {p}: no such run folder (run `turbtl run` or the stages first)",
                             field="run-dir")
        anc = p.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise UsageError(f"--run-dir {p}: cannot be created, {anc} is a file, not a folder; give "
                             "another --run-dir", field="run-dir")
        if not _writable(anc):
            raise UsageError(f"--run-dir {p}: cannot be created, the folder {anc} is not writable by this "
                             "user; give a --run-dir in a writable place (or fix the permissions)", field="run-dir")
        return p
    if not _writable(p):
        raise UsageError(f"--run-dir {p}: the folder is not writable by this user; fix its permissions or "
                         "give another --run-dir", field="run-dir")
    rec = read_run_record(p)
    if rec is None:
        try:
            names = {q.name for q in p.iterdir()}
        except OSError as e:
            raise UsageError(f"--run-dir {p}: cannot be listed ({e.strerror}); give another --run-dir",
                             field="run-dir") from None
        if names and not names & set(layout.PARTS):
            shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
            raise UsageError(f"--run-dir {p}: an existing folder that is not a turbtl run folder (it holds "
                             f"{shown} and no fdns/, models/ or stages/); give a new or empty folder",
                             field="run-dir")
    elif cfg is not None and rec.get("preset") != cfg.preset:
        raise UsageError(f"--run-dir {p}: belongs to another configuration (made with preset "
                         f"{rec.get('preset')!r} from {rec.get('source')}; this command uses preset {cfg.preset!r} "
                         f"from {cfg.source}); pass the same --preset/--config, or give another --run-dir "
                         f"(default runs/{cfg.preset})", field="run-dir")
    return p


def claim_run_dir(run_dir: str | Path, cfg) -> None:
    """Record the configuration a run folder is made with (once; the lock must be held)."""
    if cfg is not None and read_run_record(run_dir) is None:
        write_json_atomic(layout.run_record(run_dir), {"preset": cfg.preset, "source": cfg.source,
                                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _acquire(run_dir: Path, command: str, shared: bool):
    """(fd, None) holding the lock of ``run_dir``, or (None, message naming the holder)."""
    path = layout.lock_file(run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(Path(path).read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            holder = {}
        os.close(fd)
        who = (f"`turbtl {holder['command']}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
               f"since {holder.get('since', '?')})" if holder.get("command")
               else "other turbtl commands (e.g. transfer slices)")
        return None, f"run folder {run_dir} is in use by {who}; wait for it to finish or use another --run-dir"
    if not shared:  # shared holders (several at once) leave the record empty
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        os.fsync(fd)
    return fd, None


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str, comm=None, shared: bool = False, cfg=None):
    """Hold the run folder's lock for the duration of the block.

    Under MPI only rank 0 of ``comm`` takes the lock (the ranks of one job are one command); the
    outcome is broadcast so that every rank raises the same error. ``shared=True`` is for commands
    designed to run side by side on one folder (the slices of a transfer sweep, which never write the
    same file): they share the lock with each other and exclude every exclusive holder. ``cfg``: the
    folder records the configuration it is made with (``run.json``, see :func:`check_run_dir`).
    """
    rank = comm.Get_rank() if comm is not None else 0
    fd = None
    err = None
    if rank == 0:
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError, PermissionError) as e:
            err = f"--run-dir {run_dir}: cannot be created ({e.strerror}); give another --run-dir"
        else:
            fd, err = _acquire(run_dir, command, shared)
    if comm is not None and comm.Get_size() > 1:
        err = comm.bcast(err, root=0)
    if err:
        raise RunLocked(err, field="run-dir")
    try:
        yield
        if rank == 0:  # a stage that finished (not one that stopped on bad input) claims the folder
            claim_run_dir(run_dir, cfg)
    finally:
        if fd is not None:
            if not shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one
    (:func:`solver.atomic.write_bytes_atomic`)."""
    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str).encode())


def stage_record_path(run_dir: str | Path, stage: str) -> Path:
    return layout.stage_record(run_dir, stage)


def record_stage(run_dir: str | Path, stage: str, wall_s: float, summary: str, fresh: bool = False,
                 **extra) -> None:
    """Record that a stage finished: its wall time and one summary line (read by run and report).

    A stage that continues an earlier, interrupted or finished invocation (``fresh`` False: no
    ``--force``) adds to it: ``wall_s`` is the total over the invocations since the last fresh one,
    listed in ``invocations`` (wall_s, finished, summary each), so a re-run that only skips
    finished work does not replace the stage's time by its own second."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    prev = None if fresh else read_stage(run_dir, stage)
    runs = list(prev.get("invocations") or [{k: prev.get(k) for k in ("wall_s", "finished", "summary")}]) if prev else []
    runs.append({"wall_s": round(wall_s, 3), "finished": now, "summary": summary})
    write_json_atomic(stage_record_path(run_dir, stage),
                      {"stage": stage, "wall_s": round(sum(float(r["wall_s"] or 0) for r in runs), 3),
                       "summary": summary, "finished": now, "invocations": runs} | extra)


def read_stage(run_dir: str | Path, stage: str) -> dict | None:
    p = stage_record_path(run_dir, stage)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
