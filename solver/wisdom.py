"""Deterministic FFTW planning: a per-host cache of FFTW wisdom shared by every process.

``FFTW_MEASURE`` times candidate algorithms, so two processes planning the same transform may pick
different ones and round differently. FFTW reuses *wisdom* (the recorded choice for a problem) when
it is present, so planning becomes deterministic when every process plans under the same wisdom:

- :func:`planning` holds an exclusive lock on the cache (``fcntl.flock`` on
  ``<cache>/fftw-wisdom-<host>.lock``), imports the cached wisdom when the file changed since this
  process last read it, lets the caller plan, and, if planning added wisdom, writes the merged
  wisdom back atomically (:func:`solver.atomic.write_bytes_atomic`).
- The first process that plans a transform measures it; every later process (every MPI rank too:
  ranks plan one after another under the lock) finds the recorded plan and uses it unchanged.

The cache folder is ``$TURBTL_CACHE`` if set, else ``~/.cache/turbtl``; one file per host (the
hostname is part of the name), since the best plan depends on the machine. Deleting the file makes
the next process measure afresh (results may then differ from earlier runs to rounding).

    >>> from solver.wisdom import planning
    >>> with planning() as ok:        # ok False: no usable cache, plan with FFTW_ESTIMATE instead
    ...     plan = pyfftw.FFTW(a, b, flags=("FFTW_MEASURE",) if ok else ("FFTW_ESTIMATE",))
"""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import warnings
from pathlib import Path

from .atomic import write_bytes_atomic

CACHE_ENV = "TURBTL_CACHE"
MAGIC = b"turbtl-fftw-wisdom 1\n"

_state = {"signature": None, "warned": False, "loads": 0, "saves": 0}


def stats() -> dict:
    """How often this process imported the cache (``loads``) and wrote new wisdom to it (``saves``)."""
    return {"loads": _state["loads"], "saves": _state["saves"]}


def cache_dir() -> Path:
    """``$TURBTL_CACHE`` if set (and not empty), else ``~/.cache/turbtl``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "turbtl"


def wisdom_path() -> Path:
    """The wisdom file of this host in :func:`cache_dir`."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return cache_dir() / f"fftw-wisdom-{host}.bin"


def _encode(wisdom: tuple[bytes, ...]) -> bytes:
    return MAGIC + b"".join(struct.pack("<Q", len(w)) + w for w in wisdom)


def _decode(data: bytes) -> tuple[bytes, ...] | None:
    """The wisdom tuple of a cache file, or None when it is not one of ours (or truncated)."""
    if not data.startswith(MAGIC):
        return None
    out, pos = [], len(MAGIC)
    while pos < len(data):
        if pos + 8 > len(data):
            return None
        (k,), pos = struct.unpack_from("<Q", data, pos), pos + 8
        if pos + k > len(data):
            return None
        out.append(data[pos:pos + k])
        pos += k
    return tuple(out) if len(out) == 3 else None


def _signature(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def load(path: Path | None = None) -> bool:
    """Import the wisdom of ``path`` (default :func:`wisdom_path`) into this process; False when
    there is none or it is unreadable/foreign (FFTW rejects wisdom of another FFTW version)."""
    import pyfftw  # optional dependency: wisdom exists only with pyFFTW
    path = wisdom_path() if path is None else Path(path)
    try:
        wisdom = _decode(path.read_bytes())
    except FileNotFoundError:
        return False
    if wisdom is None:
        return False
    return all(pyfftw.import_wisdom(wisdom))


def _save(path: Path, wisdom: tuple[bytes, ...]) -> None:
    write_bytes_atomic(path, _encode(wisdom))


@contextlib.contextmanager
def planning():
    """Plan FFTW transforms deterministically inside this block (see the module docstring).

    Yields True when the cache is in use; False when it cannot be (the folder is not writable,
    no ``fcntl``): then the caller should plan with ``FFTW_ESTIMATE`` (deterministic without
    wisdom). A warning says so, once per process."""
    import pyfftw  # optional dependency: wisdom exists only with pyFFTW
    path = wisdom_path()
    try:
        import fcntl  # POSIX only: without it the caller plans with FFTW_ESTIMATE (below)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a+b")
    except (ImportError, OSError) as e:
        if not _state["warned"]:
            _state["warned"] = True
            warnings.warn(f"FFTW wisdom cache {path} unusable ({e}); planning with FFTW_ESTIMATE "
                          f"instead (set ${CACHE_ENV} to a writable folder)", RuntimeWarning, stacklevel=3)
        yield False
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            sig = _signature(path)
            if sig is not None and sig != _state["signature"]:
                _state["loads"] += load(path)
                _state["signature"] = sig
            before = pyfftw.export_wisdom()
            yield True
            after = pyfftw.export_wisdom()
            if after != before:
                try:
                    _save(path, after)
                    _state["signature"] = _signature(path)
                    _state["saves"] += 1
                except OSError as e:  # planned fine; only later processes lose the reuse
                    warnings.warn(f"could not write the FFTW wisdom cache {path}: {e}", RuntimeWarning,
                                  stacklevel=3)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
