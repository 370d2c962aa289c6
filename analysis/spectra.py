"""Spectra of the data: ψ̄, ω̄ and Π of the base system against each target (docs/science.md §6).

``E_v(k)`` is the angle-averaged spectrum of variable ``v`` (``suite.metrics.spectrum``, integer
shells 0 … n/2, mean over snapshots) of the training members of an FDNS store. The difference
between two systems is measured shell by shell as ``D_v(k) = |log10 E_target(k) − log10 E_base(k)|``
(decades); :func:`difference_bands` returns the contiguous band around the largest difference
where ``D`` stays above half its maximum.

Step 1 of the framework (docs/science.md §6.1) works from *per-snapshot* spectra
(:func:`snapshot_spectra`: ``(member, time, k)`` of ψ̄, ω̄, Π and of the network's normalized
inputs ``x_psi``, ``x_omega`` and output ``y_pi``) and :func:`bootstrap_ratio`: the log ratio
``R_v(k) = log10 E_target − log10 E_base`` with a percentile interval from a two-level bootstrap
(members with replacement, then snapshots with replacement within each drawn member), the shells
where that interval excludes 0 (*significant*), and :func:`mismatch_profile`, the framework's
``M(k)`` and band.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from suite import layout
from suite.fdns import open_fdns, reading
from suite.metrics import spectrum

from .radial import half_plane

VARIABLES = ("psi", "omega", "pi")
NET_VARIABLES = ("x_psi", "x_omega", "y_pi")   # the network's normalized inputs and output
ALL_VARIABLES = VARIABLES + NET_VARIABLES
N_BOOT = 400
CI = (2.5, 97.5)
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


# --------------------------------------------------------------------------------------------
# step 1: per-snapshot spectra, bootstrap intervals, significant bands


def field_spectra(a: np.ndarray) -> np.ndarray:
    """Per-snapshot spectra ``(..., n//2+1)`` of fields ``(..., n, n)`` (``suite.metrics.spectrum``'s
    normalization and shells, without the mean over snapshots)."""

    a = np.asarray(a, dtype=np.float64)
    n = a.shape[-1]
    p = np.abs(np.fft.rfft2(a)) ** 2 / float(n) ** 4
    return half_plane(n).shell_sum(p)


def snapshot_spectra(run_dir, system: str, norm: dict) -> dict[str, np.ndarray]:
    """``{var: (member, time, k)}`` of the training members of one system (NaN rows for snapshots
    not written), for :data:`ALL_VARIABLES`; ``x_*``/``y_pi`` are standardized with ``norm`` (the
    base network's, as transfer learning uses it), and ``"k"``."""

    path = fdns_path(run_dir, system)
    ds = training_fields(open_fdns(path))
    out = {}
    for v in VARIABLES:
        with reading(path):
            a = np.asarray(ds[v].values, dtype=np.float64)     # (member, time, n, n)
        ok = np.isfinite(a).all(axis=(-2, -1))
        spec = np.full(a.shape[:2] + (a.shape[-1] // 2 + 1,), np.nan)
        spec[ok] = field_spectra(a[ok])
        out[v] = spec
        nv = {"psi": "x_psi", "omega": "x_omega", "pi": "y_pi"}[v]
        spec_n = np.full_like(spec, np.nan)
        spec_n[ok] = field_spectra((a[ok] - norm["mean"][v]) / norm["std"][v])
        out[nv] = spec_n
    out["k"] = np.arange(spec.shape[-1], dtype=float)
    return out


def _boot_means(spec: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """``(n_boot, k)`` means of ``(member, time, k)`` spectra over two-level bootstrap draws."""
    ok = np.isfinite(spec).all(axis=-1)
    rows = [spec[m][ok[m]] for m in range(spec.shape[0]) if ok[m].any()]
    if not rows:
        return np.full((n_boot, spec.shape[-1]), np.nan)
    out = np.empty((n_boot, spec.shape[-1]))
    for b in range(n_boot):
        ms = rng.integers(0, len(rows), len(rows))
        draws = [rows[m][rng.integers(0, len(rows[m]), len(rows[m]))] for m in ms]
        out[b] = np.concatenate(draws).mean(axis=0)
    return out


def pooled_mean(spec: np.ndarray) -> np.ndarray:
    """Mean spectrum over every finite (member, time) row."""
    flat = spec.reshape(-1, spec.shape[-1])
    return flat[np.isfinite(flat).all(axis=1)].mean(axis=0)


def bootstrap_ratio(spec_base: np.ndarray, spec_target: np.ndarray, n_boot: int = N_BOOT,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Log ratio of the mean spectra target/base with two-level bootstrap intervals.

    Returns ``R`` (k) from all snapshots, ``R_lo``/``R_hi`` (the :data:`CI` percentiles),
    ``significant`` (interval excludes 0; shell 0 never), ``R_boot`` (n_boot, k), and the intervals
    of each mean spectrum ``E_base_lo``… Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    mb, mt = _boot_means(spec_base, n_boot, rng), _boot_means(spec_target, n_boot, rng)
    lg = lambda e: np.log10(np.maximum(e, TINY))  # noqa: E731
    r_boot = lg(mt) - lg(mb)
    r = lg(pooled_mean(spec_target)) - lg(pooled_mean(spec_base))
    lo, hi = np.percentile(r_boot, CI, axis=0)
    sig = (lo > 0) | (hi < 0)
    sig[0] = False
    eb, et = np.percentile(mb, CI, axis=0), np.percentile(mt, CI, axis=0)
    return {"R": r, "R_lo": lo, "R_hi": hi, "significant": sig, "R_boot": r_boot,
            "E_base_lo": eb[0], "E_base_hi": eb[1], "E_target_lo": et[0], "E_target_hi": et[1]}


def mismatch_profile(ratios: dict[str, dict], variables=NET_VARIABLES) -> dict[str, np.ndarray]:
    """The framework's data mismatch ``M(k) = max_v |R_v(k)|·[significant_v(k)]`` over the network's
    inputs and output (decades), its bootstrap replicates ``M_boot`` (significance fixed from the
    full interval), and the band ``in_band = M ≥ max M / 2`` (shell 0 excluded; may be several runs).
    """
    m = np.max([np.abs(ratios[v]["R"]) * ratios[v]["significant"] for v in variables], axis=0)
    mb = np.max([np.abs(ratios[v]["R_boot"]) * ratios[v]["significant"] for v in variables], axis=0)
    band = (m >= 0.5 * m.max()) & (m > 0) if m.max() > 0 else np.zeros(m.shape, bool)
    band[0] = False
    return {"M": m, "M_boot": mb, "in_band": band}
