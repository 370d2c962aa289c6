"""Atomic writes: the one way this project replaces a file or a directory.

A reader (or a run killed half-way, or a full disk) sees the old file or the new one, never half of
one:

- :func:`atomic_file` / :func:`write_bytes_atomic`: the bytes go to a temporary file beside
  ``path`` (same folder, so the rename never crosses file systems), are fsync'ed, then
  ``os.replace`` puts the file in place. A failed write removes its temporary file and raises
  ``OSError`` naming ``path`` (a full disk names the file the user knows, not the temporary one).
  ``sync_dir=True`` also fsyncs the folder, so the rename itself survives a power loss
  (checkpoints).
- :func:`replace_dir_atomic`: a directory (a zarr store) is built by ``build(tmp)`` beside
  ``path`` (``.<name>.tmp``); only when that returned is the old one moved aside (``.<name>.old``),
  the new one renamed into place and the old one removed. A failed build removes the temporary
  folder and leaves ``path`` as it was. Leftovers of a killed build are removed by the next one.

The solver's checkpoints and FFTW wisdom use it, and so do the run folder's files and stores
(``suite``, ``analysis``, ``jobs``) — the solver imports nothing of those packages, so it lives here.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_file", "write_bytes_atomic", "replace_dir_atomic"]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, sync_dir: bool = False) -> Iterator:
    """``with atomic_file(path) as f: f.write(...)``: a binary file that appears at ``path`` whole
    when the block ends, and not at all when it raises (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one name per process and thread (a file created like any other: mode from the umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # name the file in the error (full disk ...)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes, *, sync_dir: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`). Returns the path."""
    with atomic_file(path, sync_dir=sync_dir) as f:
        f.write(data)
    return Path(path)


def replace_dir_atomic(path: str | Path, build: Callable[[Path], object]) -> Path:
    """Build a directory with ``build(tmp)`` beside ``path``, then swap it in place of ``path``
    (see the module docstring). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path
