"""FDNS stores → torch tensors for training and evaluation.

A store (``DIR/fdns/<system>.zarr``, CONTRACTS.md "FDNS store") is opened lazily with
:func:`suite.fdns.open_fdns`; only complete snapshots are used. Members are split into
train/val/test by the store's ``split`` coordinate, so no trajectory is in two splits.

    >>> data = FDNSData("runs/small/fdns/base.zarr")
    >>> norm = data.normalization(fraction=1.0)            # mean/std per variable, training split
    >>> train = data.tensors("train", norm)                # SplitTensors: x (N,2,n,n), y (N,1,n,n)
    >>> test = data.tensors("test", norm)
    >>> test.raw("pi")                                     # Π in physical units (float64 numpy)

Reads go chunk by chunk (one zarr chunk = one member × ``chunk_time`` snapshots); a chunk is read
once and only if one of its snapshots is selected. The tensors of one split are then held in
memory (float32; the paper's training split is 2,100 × 3 × 128² ≈ 0.4 GB), so that training
never waits for the file system; :func:`batch_indices` gives each rank its share of every global
batch in a seeded order that does not depend on the world size.

``fraction`` < 1 selects a seeded random subset of the split's snapshots (at least one), the same
for every rank and every call with the same seed; the transfer sweep uses it for the 1–10 %
re-training sets.

``augment = "rot90"`` (``train.augment``, base training only) appends every snapshot rotated by 90,
180 and 270 degrees (:func:`augment_split`): 4× the samples. ψ̄, ω̄ and Π are scalar fields of the plane
(Π = J(ψ̄, ω̄) − \\overline{J(ψ, ω)}: the Jacobian is invariant under rotations, the Gaussian filter
and the square LES truncation too), so a rotated sample is the exact sample of the rotated flow; on
the periodic square grid a quarter turn about the grid point (0, 0) is an exact permutation of the
grid points (:func:`rotate90`), no interpolation. The flows are samples of the same system only if
the system is rotation invariant (no β, a forcing without a preferred direction): the configuration
refuses the option otherwise (docs/paper-preset.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from solver.filters import default_width

from .config import AUGMENTS
from .errors import DataError
from .fdns import open_fdns, reading

INPUTS = ("psi", "omega")
OUTPUT = "pi"
VARIABLES = INPUTS + (OUTPUT,)


@dataclass
class SplitTensors:
    """Normalized tensors of one split: ``x`` (N, 2, n, n) = (ψ̄, ω̄), ``y`` (N, 1, n, n) = Π."""

    x: torch.Tensor
    y: torch.Tensor
    norm: dict
    index: np.ndarray  # (N, 2): (member, time) positions in the store
    L: float
    delta: float
    turns: np.ndarray | None = None  # (N,): quarter turns of each row (augment "rot90"); None: not augmented

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def snapshots(self) -> int:
        """Distinct snapshots (rows without rotation): the training-set size fractions are of."""
        return len(self) if self.turns is None else int(np.sum(self.turns == 0))

    def raw(self, name: str) -> np.ndarray:
        """A variable back in physical units, float64 numpy (N, n, n)."""
        t = self.y[:, 0] if name == OUTPUT else self.x[:, INPUTS.index(name)]
        return denormalize(t, self.norm, name)

    def to(self, device) -> "SplitTensors":
        return SplitTensors(self.x.to(device), self.y.to(device), self.norm, self.index, self.L, self.delta,
                            self.turns)


def denormalize(t, norm: dict, name: str) -> np.ndarray:
    """``t * std + mean`` of variable ``name`` as float64 numpy (torch or numpy input)."""
    a = t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, np.float64)
    return a * norm["std"][name] + norm["mean"][name]


class FDNSData:
    """One FDNS store, opened lazily and validated (DataError for missing/foreign/corrupt stores)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.ds = open_fdns(self.path)
        attrs = self.ds.attrs
        self.L = float(attrs.get("L", 2 * np.pi))
        n = self.ds.sizes["x"]
        self.delta = float(attrs.get("filter_width") or default_width(self.L, n))
        self.chunk_time = int(attrs.get("chunk_time", 1))
        self.complete = np.asarray(self.ds["complete"].values, bool)
        self.labels = np.asarray(self.ds["split"].values).astype(str)
        self.n = n

    def members(self, split: str) -> np.ndarray:
        """Positions of the members of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split = {split!r}: must be train, val or test")
        return np.flatnonzero(self.labels == split)

    def snapshots(self, split: str, fraction: float = 1.0, seed: int = 0, count: int | None = None) -> np.ndarray:
        """(member, time) positions of the complete snapshots of ``split``; a seeded subset if fraction < 1.

        ``count`` (instead of ``fraction``) asks for exactly that many snapshots (the transfer sweep's
        fractions are of the *base* training size); DataError if the split has fewer.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction = {fraction!r}: must be in (0, 1]")
        mem = self.members(split)
        pairs = np.argwhere(self.complete[mem])
        pairs[:, 0] = mem[pairs[:, 0]]
        if len(pairs) == 0:
            raise DataError(f"{self.path}: the {split!r} split has no complete snapshots "
                            f"(members {mem.tolist()}); finish `turbtl dns` first", field="store")
        if count is not None and not 1 <= count <= len(pairs):
            raise DataError(f"{self.path}: {count} snapshots asked of the {split!r} split, which has "
                            f"{len(pairs)} complete ones (accepted: 1 to {len(pairs)})", field="fraction")
        if fraction < 1 or (count is not None and count < len(pairs)):
            k = count if count is not None else max(1, int(round(fraction * len(pairs))))
            rng = np.random.default_rng(seed)
            pairs = pairs[np.sort(rng.choice(len(pairs), size=k, replace=False))]
        return pairs

    def read(self, pairs: np.ndarray, variables=VARIABLES) -> dict[str, np.ndarray]:
        """float64 arrays (N, n, n) of the given snapshots, read chunk by chunk in store order."""
        out = {v: np.empty((len(pairs), self.n, self.n)) for v in variables}
        if len(pairs) == 0:
            return out
        chunk = pairs[:, 1] // self.chunk_time
        order = np.lexsort((pairs[:, 1], chunk, pairs[:, 0]))
        keys = np.stack([pairs[order, 0], chunk[order]], axis=1)
        starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
        ends = np.r_[starts[1:], len(order)]
        sub = self.ds[list(variables)]
        for s, e in zip(starts, ends):
            m, c = keys[s]
            t0 = c * self.chunk_time
            with reading(self.path):
                block = sub.isel(member=int(m), time=slice(t0, t0 + self.chunk_time)).load()
            rows = pairs[order[s:e], 1] - t0
            for v in variables:
                out[v][order[s:e]] = block[v].values[rows]
        for v in variables:
            if not np.isfinite(out[v]).all():
                raise DataError(f"{self.path}: variable {v} has NaN/inf in complete snapshots (corrupt store)",
                                field="store")
        return out

    def normalization(self, fraction: float = 1.0, seed: int = 0, split: str = "train") -> dict:
        """{"mean": {psi, omega, pi}, "std": {...}} over every point of the (sub)split's snapshots."""
        arrays = self.read(self.snapshots(split, fraction, seed))
        return norm_from_arrays(arrays)

    def tensors(self, split: str, norm: dict, fraction: float = 1.0, seed: int = 0,
                count: int | None = None, augment: str = "none") -> SplitTensors:
        """The normalized float32 tensors of a split (fixed, reusable: e.g. by the transfer sweep);
        ``augment`` (``train.augment``): "rot90" appends the rotated copies (:func:`augment_split`)."""
        pairs = self.snapshots(split, fraction, seed, count)
        return augment_split(to_tensors(self.read(pairs), norm, pairs, self.L, self.delta), augment)


def norm_from_arrays(arrays: dict[str, np.ndarray]) -> dict:
    """Mean and standard deviation of each variable (float64 accumulation)."""
    mean = {v: float(np.mean(arrays[v], dtype=np.float64)) for v in VARIABLES}
    std = {v: float(np.std(arrays[v], dtype=np.float64)) for v in VARIABLES}
    for v, s in std.items():
        if not s > 0:
            raise DataError(f"variable {v} is constant in the training split (std = {s}); cannot normalize",
                            field="store")
    return {"mean": mean, "std": std}


def to_tensors(arrays: dict[str, np.ndarray], norm: dict, pairs: np.ndarray, L: float, delta: float) -> SplitTensors:
    def z(v):
        return (arrays[v] - norm["mean"][v]) / norm["std"][v]
    x = torch.from_numpy(np.stack([z(v) for v in INPUTS], axis=1).astype(np.float32))
    y = torch.from_numpy(z(OUTPUT)[:, None].astype(np.float32))
    return SplitTensors(x, y, norm, pairs, L, delta)


def rotate90(a, turns: int = 1):
    """``a`` (numpy or torch, (..., n, n) with axes (y, x)) rotated counter-clockwise by ``turns``
    quarter turns about the grid point (0, 0) of the periodic grid: b(x, y) = a(y, −x), i.e.
    ``b[..., j, i] = a[..., -i mod n, j]``; an exact permutation of the grid points."""
    n = a.shape[-1]
    if a.shape[-2] != n:
        raise ValueError(f"rotate90: a square grid is needed, got {tuple(a.shape[-2:])}")
    neg = (-np.arange(n)) % n
    idx = torch.from_numpy(neg) if isinstance(a, torch.Tensor) else neg
    for _ in range(turns % 4):
        a = a.swapaxes(-1, -2)[..., idx]
    return a


def augment_split(data: SplitTensors, augment: str = "none") -> SplitTensors:
    """``data`` itself ("none"), or ("rot90") its rows followed by their copies rotated by 90, 180 and
    270 degrees (inputs and output alike; ``turns`` says which copy a row is, ``index`` repeats)."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment = {augment!r}: must be one of {', '.join(AUGMENTS)}")
    if augment == "none" or data.turns is not None:
        return data
    k = range(4)
    x = torch.cat([rotate90(data.x, t) for t in k]).contiguous()
    y = torch.cat([rotate90(data.y, t) for t in k]).contiguous()
    turns = np.repeat(np.arange(4), len(data))
    return SplitTensors(x, y, data.norm, np.concatenate([data.index] * 4), data.L, data.delta, turns)


def batch_indices(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0, world: int = 1,
                  shuffle: bool = True) -> list[tuple[np.ndarray, int]]:
    """This rank's share of every global batch of one epoch: [(local indices, global batch size)].

    The order is a permutation seeded by (seed, epoch) alone, so every world size sees the same
    global batches; each is split into ``world`` contiguous parts (``numpy.array_split``: sizes
    differ by at most one, a rank may get none of a small last batch).
    """
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    else:
        order = np.arange(n)
    out = []
    for b0 in range(0, n, batch_size):
        glob = order[b0:b0 + batch_size]
        out.append((np.array_split(glob, world)[rank], len(glob)))
    return out
