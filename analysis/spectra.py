"""Spectra of the data: ψ̄, ω̄ and Π of the base system against each target (docs/science.md §6).

``E_v(k)`` is the angle-averaged spectrum of variable ``v`` (``suite.metrics.spectrum``, integer
shells 0 … n/2, mean over snapshots) of the training members of an FDNS store. The difference
between two systems is measured shell by shell as ``D_v(k) = |log10 E_target(k) − log10 E_base(k)|``
(decades); :func:`difference_bands` returns the contiguous band around the largest difference
where ``D`` stays above half its maximum.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from suite import layout

VARIABLES = ("psi", "omega", "pi")
TINY = 1e-300


def fdns_path(run_dir, system: str) -> Path:
    return layout.fdns_store(run_dir, system)


def training_fields(ds, split: str = "train", max_snapshots: int | None = None):
    """The ``split`` members of an opened FDNS dataset (all members if none has that split)."""
    sel = ds.isel(member=np.flatnonzero(ds["split"].values == split)) if split in ds["split"].values else ds
    if max_snapshots is not None:
        sel = sel.isel(time=slice(0, max(1, max_snapshots // max(sel.sizes["member"], 1))))
    return sel


def data_spectra(run_dir, system: str, max_snapshots: int | None = None) -> dict[str, np.ndarray]:
    """``{"k": shells, "psi": E, "omega": E, "pi": E}`` of the training members of one system."""
    from suite.fdns import open_fdns, reading
    from suite.metrics import spectrum

    path = fdns_path(run_dir, system)
    ds = training_fields(open_fdns(path), max_snapshots=max_snapshots)
    L = float(ds.attrs.get("L", 2 * np.pi))
    out = {}
    for v in VARIABLES:
        with reading(path):
            a = ds[v].values
        a = a.reshape(-1, *a.shape[-2:])
        a = a[np.isfinite(a).all(axis=(1, 2))]        # incomplete snapshots are NaN
        k, e = spectrum(a, L)
        out[v] = e
    out["k"] = k
    return out


def log_difference(e_base: np.ndarray, e_target: np.ndarray) -> np.ndarray:
    """``|log10 E_target − log10 E_base|`` per shell (0 where both vanish)."""
    return np.abs(np.log10(np.maximum(e_target, TINY)) - np.log10(np.maximum(e_base, TINY)))


def difference_bands(d: np.ndarray, k: np.ndarray | None = None, skip_mean: bool = True) -> tuple[float, float, float]:
    """``(k_lo, k_hi, k_max)``: the contiguous band where ``d ≥ max d / 2`` around its maximum.

    Shell 0 (the mean) is skipped by default: it says nothing about scales.
    """
    d = np.asarray(d, dtype=float)
    k = np.arange(d.size, dtype=float) if k is None else np.asarray(k, dtype=float)
    lo0 = 1 if skip_mean and d.size > 1 else 0
    dd = d[lo0:]
    i = int(np.argmax(dd)) + lo0
    half = d[i] / 2
    lo, hi = i, i
    while lo - 1 >= lo0 and d[lo - 1] >= half:
        lo -= 1
    while hi + 1 < d.size and d[hi + 1] >= half:
        hi += 1
    return float(k[lo]), float(k[hi]), float(k[i])
