"""The filtered-DNS store: ``DIR/fdns/<system>.zarr`` (zarr v3, read with xarray).

Layout (docs/CONTRACTS.md, "FDNS store"):

* dims ``(member, time, y, x)``; float64 ``psi``, ``omega``, ``pi`` on the LES grid (Π with the
  sign of the filtered equation: ∂ω̄/∂t + J(ψ̄, ω̄) = … + Π);
* per snapshot diagnostics ``energy``, ``enstrophy`` (of the DNS field), ``spectrum_dns``
  ``(member, time, k)`` (the DNS energy spectrum in integer shells ``k``), ``backscatter``
  (fraction of LES points with T = Π∇²ω̄ < 0) and ``transfer`` (the mean of T);
* optional (``save_dns``) ``omega_dns`` ``(member, time, y_dns, x_dns)``;
* coords ``member``, ``time`` (model time after spin-up), ``x``, ``y`` (cell positions in
  [0, L)), ``k``, ``split`` (member -> "train" | "val" | "test"), and ``x_dns``/``y_dns`` with
  ``omega_dns``;
* ``complete`` ``(member, time)`` bool, written after the chunk's data;
* attrs ``schema_version`` = 2, ``kind`` = "turbtl-fdns", the definition of Π
  (:data:`solver.sgs.LES_CONVENTIONS`: ``les_jacobian`` = "exact: ...", ``pi_definition``,
  ``nyquist``: the LES Nyquist row and column of ψ̄, ω̄, Π are zero), and the parameters given to
  :func:`create_store` (system, grids, filter, times, seeds, provenance JSON ...). Schema 1 held Π
  formed with a 2/3-truncated LES Jacobian (docs/science.md §3); readers refuse it.

Every variable with a ``member`` dimension is chunked as (1 member, ``chunk_time`` snapshots,
whole rest): a writer that owns a member writes whole chunks, so no two MPI writers ever touch
the same chunk (writers sharing a chunk would silently lose data). Zarr's local store writes
each chunk to a temporary file and renames it, so a chunk is either old or new, never half.
Every chunk is zstd-compressed with the frame checksum on, so a chunk truncated or altered on disk
fails to decode; readers wrap their reads in :func:`reading`, which turns that into a DataError
naming the store and what to do.

Writers: :func:`create_store` (one process, before the others write), :class:`Writer` /
:func:`write_chunk` (any process, for the chunks of its own members). Readers: :func:`open_fdns` (validated, only
complete snapshots), :func:`completed`, :func:`read_attrs`.
"""
from __future__ import annotations

import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from solver.atomic import replace_dir_atomic
from solver.sgs import LES_CONVENTIONS

from .errors import DataError, UsageError

SCHEMA_VERSION = 2  # 2: Π with the exact LES Jacobian (1: 2/3-truncated, refused)
KIND = "turbtl-fdns"
FIELDS = ("psi", "omega", "pi")
SERIES = ("energy", "enstrophy", "backscatter", "transfer")
SPLITS = ("train", "val", "test")
_DESCRIPTIONS = {
    "psi": "filtered, coarse-grained streamfunction",
    "omega": "filtered, coarse-grained vorticity",
    "pi": "SGS term Pi = J(psibar, omegabar) - bar(J(psi, omega)) on the LES grid, J(psibar, omegabar) exact",
    "energy": "DNS kinetic energy 0.5 <|u|^2>",
    "enstrophy": "DNS enstrophy 0.5 <omega^2>",
    "backscatter": "fraction of LES points with T = Pi lap(omegabar) < 0",
    "transfer": "mean of T = Pi lap(omegabar) over the LES grid",
    "spectrum_dns": "DNS energy spectrum E(k) in integer shells",
    "omega_dns": "DNS vorticity",
    "complete": "True once the chunk holding this snapshot is fully written",
}


@dataclass(frozen=True)
class Layout:
    """The shape of a store: what :func:`create_store` needs besides the attributes."""

    members: int
    snapshots: int
    chunk_time: int
    n_les: int
    n_dns: int
    L: float
    sample_interval: float
    split: tuple[str, ...]
    save_dns: bool = False

    @property
    def nk(self) -> int:
        """Number of integer spectral shells 0 .. n_dns//2 of ``spectrum_dns``."""
        return self.n_dns // 2 + 1

    @property
    def chunks_per_member(self) -> int:
        return math.ceil(self.snapshots / self.chunk_time)

    def chunk_slice(self, chunk: int) -> slice:
        return slice(chunk * self.chunk_time, min((chunk + 1) * self.chunk_time, self.snapshots))

    def times(self) -> np.ndarray:
        return np.arange(self.snapshots) * self.sample_interval


def split_labels(train: int, val: int, test: int) -> tuple[str, ...]:
    """The ``split`` coordinate: the first ``train`` members train, then ``val``, then ``test``."""
    return ("train",) * train + ("val",) * val + ("test",) * test


@contextmanager
def quiet_zarr():
    """zarr warns that consolidated metadata and fixed-width strings are not in the v3 spec yet."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        yield


def _json_safe(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return v


def create_store(path: str | Path, layout: Layout, attrs: dict) -> None:
    """Create (overwrite) an empty store: metadata, coordinates and attributes, no data chunks.

    Call on one process before any :func:`write_chunk`; unwritten values read as NaN / False.
    Built beside ``path`` and renamed into place, so a failure (full disk, kill) never leaves a
    half-created store behind.
    """
    if len(layout.split) != layout.members or set(layout.split) - set(SPLITS):
        raise ValueError(f"split must have {layout.members} labels from {SPLITS}, got {layout.split}")
    M, T, ct, n = layout.members, layout.snapshots, layout.chunk_time, layout.n_les
    ctc = min(ct, T)

    def var(dims, shape, dtype=float):
        chunks = (1, ctc) + tuple(shape[2:])
        return dims, da.zeros(shape, dtype=dtype, chunks=chunks)

    data = {f: var(("member", "time", "y", "x"), (M, T, n, n)) for f in FIELDS}
    data.update({s: var(("member", "time"), (M, T)) for s in SERIES})
    data["spectrum_dns"] = var(("member", "time", "k"), (M, T, layout.nk))
    data["complete"] = var(("member", "time"), (M, T), bool)
    h = layout.L / n
    coords = {"member": np.arange(M), "time": layout.times(), "y": np.arange(n) * h, "x": np.arange(n) * h,
              "k": np.arange(layout.nk), "split": ("member", np.array(layout.split))}
    if layout.save_dns:
        nd = layout.n_dns
        data["omega_dns"] = var(("member", "time", "y_dns", "x_dns"), (M, T, nd, nd))
        coords["y_dns"] = coords["x_dns"] = np.arange(nd) * (layout.L / nd)
    all_attrs = {k: _json_safe(v) for k, v in attrs.items()}
    all_attrs.update(schema_version=SCHEMA_VERSION, kind=KIND, chunk_time=ct, **LES_CONVENTIONS)
    ds = xr.Dataset(data, coords=coords, attrs=all_attrs)
    for name, v in ds.data_vars.items():
        v.attrs["description"] = _DESCRIPTIONS[name]
    encoding = {name: {"chunks": v.data.chunksize, "compressors": [ZstdCodec(level=0, checksum=True)]}
                for name, v in ds.data_vars.items()}
    encoding["complete"]["fill_value"] = False
    for name in ds.data_vars:
        if name != "complete":
            encoding[name]["fill_value"] = np.nan
    with quiet_zarr():
        replace_dir_atomic(path, lambda tmp: ds.to_zarr(str(tmp), mode="w", compute=False, encoding=encoding,
                                                         zarr_format=3, consolidated=True))


def _group(path, mode="r"):
    """The zarr group, from the stored metadata of every node (not the consolidated copy)."""
    try:
        with quiet_zarr():
            return zarr.open_group(str(path), mode=mode, use_consolidated=False)
    except FileNotFoundError:
        raise DataError(f"FDNS store {path}: not found (run `turbtl dns` first)", field="store") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse the metadata means a corrupt store
        raise DataError(f"FDNS store {path}: not a readable zarr store ({type(e).__name__}: {e})",
                        field="store") from None


class Writer:
    """Writes whole snapshot chunks into an existing store (opened once; one per writing process)."""

    def __init__(self, path: str | Path):
        self.path = path
        g = _group(path, "r+")
        self.chunk_time = int(g.attrs["chunk_time"])
        self.snapshots = g["complete"].shape[1]
        self.complete = g["complete"]
        self.arrays = {n: g[n] for n in g.array_keys() if n != "complete" and g[n].ndim >= 2
                       and g[n].metadata.dimension_names[:2] == ("member", "time")}

    def write_chunk(self, member: int, chunk: int, values: dict[str, np.ndarray]) -> None:
        """Write snapshot chunk ``chunk`` of ``member`` (every per-snapshot variable), then mark it
        complete. ``values`` maps each such variable (``psi``, ``omega``, ``pi``, ``energy``, ...;
        ``omega_dns`` when the store has it) to an array whose leading axis is the chunk's snapshots."""
        sl = slice(chunk * self.chunk_time, min((chunk + 1) * self.chunk_time, self.snapshots))
        missing = sorted(set(self.arrays) - set(values))
        if missing:
            raise ValueError(f"write_chunk: values for {missing} are missing")
        checked = {}
        for name, arr in self.arrays.items():
            v = np.asarray(values[name], dtype=arr.dtype)
            want = (sl.stop - sl.start,) + arr.shape[2:]
            if v.shape != want:
                raise ValueError(f"write_chunk: {name} has shape {v.shape}, expected {want}")
            checked[name] = v
        with quiet_zarr():
            for name, v in checked.items():
                self.arrays[name][member, sl] = v
            self.complete[member, sl] = True


def write_chunk(path: str | Path, member: int, chunk: int, values: dict[str, np.ndarray]) -> None:
    """One-off :meth:`Writer.write_chunk` (opens the store each time; use a :class:`Writer` in loops)."""
    Writer(path).write_chunk(member, chunk, values)


@contextmanager
def reading(path: str | Path):
    """Read data of the store at ``path`` inside this block: a chunk that cannot be decoded (cut
    short or altered on disk: the zstd frame or its checksum fails) raises DataError naming the
    store and what to do, instead of a codec error from deep inside zarr."""
    try:
        yield
    except UsageError:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise DataError(f"FDNS store {path} is damaged: a data chunk cannot be read ({type(e).__name__}: {e}); "
                        f"re-create it with `turbtl dns --force --systems {Path(path).name.removesuffix('.zarr')}`",
                        field="store") from None


def read_attrs(path: str | Path) -> dict:
    """The attributes of a validated FDNS store (DataError if missing, foreign or of another schema)."""
    g = _group(path)
    attrs = dict(g.attrs)
    kind, version = attrs.get("kind"), attrs.get("schema_version")
    if kind != KIND:
        raise DataError(f"{path}: kind = {kind!r}, expected {KIND!r} (not an FDNS store written by turbtl dns)",
                        field="store")
    if version != SCHEMA_VERSION or attrs.get("les_jacobian") != LES_CONVENTIONS["les_jacobian"]:
        old = " (its Π used the old 2/3-truncated LES Jacobian)" if version == 1 else ""
        raise DataError(f"{path}: schema_version = {version!r}{old}, this turbtl reads schema_version "
                        f"{SCHEMA_VERSION} only (Π with the exact LES Jacobian): rerun `turbtl dns --force`",
                        field="store")
    need = set(FIELDS) | {"complete"}
    have = set(g.array_keys())
    if need - have:
        raise DataError(f"{path}: corrupt FDNS store, variables {sorted(need - have)} are missing", field="store")
    return attrs


def stored_splits(path: str | Path) -> np.ndarray:
    """The split label (``train``, ``val``, ``test``) of each member of a validated store."""
    read_attrs(path)
    return np.asarray(_group(path)["split"][...]).astype(str)


def completed(path: str | Path) -> np.ndarray:
    """The ``complete`` marker ``(member, time)`` of a validated store (unreadable chunks = False)."""
    read_attrs(path)
    g = _group(path)
    arr = g["complete"]
    M, T = arr.shape
    ct = arr.chunks[1]
    out = np.zeros((M, T), bool)
    for m in range(M):
        for t0 in range(0, T, ct):
            try:
                out[m, t0:t0 + ct] = arr[m, t0:t0 + ct]
            except Exception:  # noqa: BLE001 - a chunk cut short by a crash counts as not written
                pass
    return out


def is_finished(path: str | Path) -> bool:
    """True when ``path`` is a valid FDNS store whose every snapshot is complete."""
    try:
        return bool(completed(path).all())
    except DataError:
        return False


def open_fdns(path: str | Path, *, complete_only: bool = True):
    """Open an FDNS store as a lazy ``xarray.Dataset`` after validating it.

    Raises :class:`DataError` for a missing, foreign (``kind``), other-schema or corrupt store.
    With ``complete_only`` (the default) only complete snapshots are returned: times and members
    with no complete snapshot are dropped and the per-snapshot variables of the remaining
    incomplete (member, time) pairs are masked to NaN. A finished store is returned unchanged.
    """
    attrs = read_attrs(path)
    done = completed(path)
    try:
        with quiet_zarr():
            ds = xr.open_zarr(str(path), consolidated=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"FDNS store {path}: corrupt ({type(e).__name__}: {e})", field="store") from None
    expected = ("member", "time", "y", "x")
    for f in FIELDS:
        if ds[f].dims != expected or ds[f].dtype != np.float64:
            raise DataError(f"{path}: corrupt FDNS store, {f} has dims {ds[f].dims} and dtype {ds[f].dtype}, "
                            f"expected {expected} float64", field="store")
    ds = ds.drop_vars("complete").assign(complete=(("member", "time"), done))
    ds.attrs = attrs
    if not complete_only or done.all():
        return ds
    ds = ds.isel(member=np.flatnonzero(done.any(axis=1)), time=np.flatnonzero(done.any(axis=0)))
    mask = ds["complete"]
    per_snapshot = [v for v in ds.data_vars if v != "complete" and ds[v].dims[:2] == ("member", "time")]
    return ds.assign({v: ds[v].where(mask) for v in per_snapshot})
