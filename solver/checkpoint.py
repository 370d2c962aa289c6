"""Checkpoints of a DNS ensemble, independent of the number of MPI ranks.

One file per ensemble member, ``<directory>/member-<m:05d>.npz``, holding the member's *global*
spectral state in the serial ``rfft2`` layout (gathered from the slabs of its group), so a run
checkpointed on 4 ranks restarts on 2 (or 1) ranks, in slab or ensemble mode:

- arrays: the stepper's spectral state (``omega_hat``, the AB2 history term ...) and any other
  per-member arrays (e.g. the stochastic forcing's RNG state);
- ``meta`` (JSON): ``format`` = "turbtl-checkpoint", ``version``, ``member``, ``n``, ``step``,
  ``time``, ``dt``, the physical and numerical parameters, provenance — whatever the caller puts in;
- ``sha256``: a checksum over every array (name, dtype, shape, bytes) and the canonical JSON of
  ``meta``. :func:`read_checkpoint` recomputes it and refuses a file that does not match.

Files are written atomically (:mod:`solver.atomic`: temporary file in the same folder, fsync,
``os.replace``, fsync of the folder), so a killed writer leaves either the previous checkpoint or
the new one, never half a file. A missing, truncated, foreign or tampered file raises
:class:`solver.errors.CheckpointError` naming the path and what to do.

    >>> write_checkpoint("ck/member-00000.npz", {"omega_hat": w}, {"step": 10, "time": 0.1})
    >>> arrays, meta = read_checkpoint("ck/member-00000.npz")

:func:`save_members` / :func:`load_members` do the same collectively for the members a group of
ranks holds, through the FFT backend's ``gather_spectral``/``scatter_spectral``.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .errors import CheckpointError

FORMAT = "turbtl-checkpoint"
VERSION = 1
_META_KEY = "__meta__"
_SUM_KEY = "__sha256__"

__all__ = ["FORMAT", "VERSION", "member_path", "checksum", "write_checkpoint", "read_checkpoint",
           "peek_meta", "save_members", "load_members", "latest_step"]


def member_path(directory, member: int) -> Path:
    """The checkpoint file of ensemble member ``member`` in ``directory``."""
    return Path(directory) / f"member-{member:05d}.npz"


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"checkpoint meta: {type(o).__name__} is not JSON serializable")


def checksum(arrays: dict, meta: dict) -> str:
    """sha256 over the arrays (sorted by name: name, dtype, shape, bytes) and the meta JSON."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + b"\0" + a.dtype.str.encode() + b"\0" + repr(a.shape).encode() + b"\0")
        h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    h.update(_canonical(meta))
    return h.hexdigest()


def write_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` (name -> numpy array) and ``meta`` (JSON-able dict) to ``path`` atomically
    with a sha256 checksum. ``meta`` gains ``format`` and ``version``. Returns the path."""
    path = Path(path)
    for name in arrays:
        if name.startswith("__"):
            raise ValueError(f"checkpoint array name {name!r} is reserved")
    meta = dict(meta, format=FORMAT, version=VERSION)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    digest = checksum(arrays, meta)
    with atomic_file(path, sync_dir=True) as f:
        np.savez(f, **arrays, **{_META_KEY: np.frombuffer(_canonical(meta), dtype=np.uint8),
                                 _SUM_KEY: np.array(digest)})
    return path


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` of a checkpoint written by :func:`write_checkpoint`, after checking its
    format, version and checksum. Raises CheckpointError naming the path and what to do otherwise."""
    path = Path(path)
    advice = ("restart from an older checkpoint folder, or delete this checkpoint to start the "
              "member from its initial condition")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the run folder, or start without "
                        "--restart", name="checkpoint")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            names = list(z.files)
            if _META_KEY not in names or _SUM_KEY not in names:
                raise CheckpointError(f"{path} is not a turbtl checkpoint (no metadata/checksum): {advice}",
                                name="checkpoint")
            meta = json.loads(z[_META_KEY].tobytes().decode())
            stored = str(z[_SUM_KEY])
            arrays = {k: z[k] for k in names if k not in (_META_KEY, _SUM_KEY)}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}): {advice}",
                        name="checkpoint") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a turbtl checkpoint (format {meta.get('format')!r}): {advice}",
                        name="checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {meta.get('version')!r}, this code reads version "
                        f"{VERSION}: restart with the code version that wrote it, or start afresh",
                        name="checkpoint")
    actual = checksum(arrays, meta)
    if actual != stored:
        raise CheckpointError(f"checkpoint {path} fails its sha256 check (stored {stored[:12]}…, "
                        f"computed {actual[:12]}…): the file was modified or damaged; {advice}",
                        name="checkpoint")
    return arrays, meta


def peek_meta(path) -> dict | None:
    """The meta of the checkpoint at ``path`` without loading its arrays or checking its sum (cheap:
    is this file one to resume from?), or None when there is no file. A file that cannot be read
    raises CheckpointError (:func:`read_checkpoint`'s, naming the path and what to do)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(z[_META_KEY].tobytes().decode())
    except Exception:  # noqa: BLE001 - a damaged file: say which and what to do
        read_checkpoint(path)  # raises CheckpointError naming the path and the remedy
        raise CheckpointError(f"checkpoint {path} cannot be read: delete it to start the member from its "
                              "initial condition", name="checkpoint") from None


# --------------------------------------------------------------------------------------------
# collective: the members of a group of ranks


def save_members(directory, backend, members, arrays: dict, meta: dict) -> list[Path]:
    """Collective over the ranks of ``backend.comm`` (one member group): write one checkpoint per
    member of ``members`` (global indices, in batch order).

    ``arrays``: name -> array with the member batch as leading dimension; names ending in ``_hat``
    are local spectral blocks (gathered to the group root through ``backend.gather_spectral``),
    the others are identical on every rank of the group (taken from the root), e.g. RNG states.
    ``meta``: JSON-able scalars common to the members (step, time, dt, parameters ...); each file
    also records ``member`` and ``n``. Returns the paths on the group root, [] elsewhere."""
    members = list(members)
    gathered = {k: (backend.gather_spectral(v) if k.endswith("_hat") else backend.to_numpy(v))
                for k, v in arrays.items()}
    if not backend.is_root:
        return []
    return [write_checkpoint(member_path(directory, m), {k: v[i] for k, v in gathered.items()},
                             dict(meta, member=m, n=backend.n))
            for i, m in enumerate(members)]


def _read_members(directory, backend, members):
    read = []
    for m in members:
        arrays, meta = read_checkpoint(member_path(directory, m))
        if meta.get("member") != m or meta.get("n") != backend.n:
            raise CheckpointError(f"{member_path(directory, m)} holds member {meta.get('member')} on an "
                            f"n = {meta.get('n')} grid; this run needs member {m} on n = {backend.n}: "
                            "use the checkpoint folder of this run", name="checkpoint")
        read.append((arrays, meta))
    names = sorted(read[0][0])
    for (arrays, meta), m in zip(read, members):
        if sorted(arrays) != names:
            raise CheckpointError(f"{member_path(directory, m)} holds {', '.join(sorted(arrays))}, member "
                            f"{members[0]} holds {', '.join(names)}: the checkpoints come from "
                            "different runs or steppers", name="checkpoint")
    return read, names


def load_members(directory, backend, members) -> tuple[dict, list[dict]]:
    """Collective inverse of :func:`save_members`: ``(arrays, metas)`` with every array batched
    over ``members`` (spectral ``*_hat`` arrays as this rank's local blocks) on every rank of the
    group, and the per-member metas. A missing or bad file raises CheckpointError on *every* rank of
    the group (read on the root, the verdict broadcast)."""
    members = list(members)
    comm = backend.comm if backend.comm is not None and backend.comm.Get_size() > 1 else None
    read = names = error = None
    if backend.is_root:
        try:
            read, names = _read_members(directory, backend, members)
        except CheckpointError as e:
            error = e
    if comm is not None:
        error, names = comm.bcast((error, names), root=0)
    if error is not None:
        raise error
    out = {}
    for k in names:
        full = np.stack([a[k] for a, _ in read]) if backend.is_root else None
        if k.endswith("_hat"):
            out[k] = backend.scatter_spectral(full)
        else:
            out[k] = comm.bcast(full, root=0) if comm is not None else full
    metas = [meta for _, meta in read] if backend.is_root else None
    if comm is not None:
        metas = comm.bcast(metas, root=0)
    return out, metas


def latest_step(directory, members) -> int | None:
    """The step every member's checkpoint in ``directory`` has reached (the smallest), or None
    when some member has none. A damaged file raises CheckpointError (as :func:`read_checkpoint`)."""
    steps = []
    for m in members:
        p = member_path(directory, m)
        if not p.is_file():
            return None
        steps.append(int(read_checkpoint(p)[1]["step"]))
    return min(steps) if steps else None
