"""The LES metrics of :mod:`suite.les` (pure functions on numpy arrays): spectral errors by band,
the vorticity PDF distance, E(t)/Z(t) errors, backscatter, and the skill against no closure."""
from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from solver import diagnostics

BANDS = ("low", "mid", "high")
SKILL_OF = ("e_spec_all", "z_spec_all", "pdf_w1", "energy_err")


def spectral_bands(kmax: int) -> dict[str, tuple[float, float]]:
    """low/mid/high: [1, k_c] split in three equal parts in log k (inclusive upper edges); all."""
    e1, e2 = kmax ** (1 / 3), kmax ** (2 / 3)
    return {"low": (1.0, e1), "mid": (e1, e2), "high": (e2, float(kmax)), "all": (1.0, float(kmax))}


def log_spectrum_error(k, s_model, s_true, band: tuple[float, float]) -> float:
    """RMS over the shells k in (lo, hi] (lo included when lo = 1) of log10(s_model / s_true).

    Shells where the truth is zero are skipped; a zero or non-finite model value gives inf/NaN."""
    k, sm, st = (np.asarray(a, dtype=float) for a in (k, s_model, s_true))
    lo, hi = band
    sel = ((k > lo) | ((lo <= 1.0) & (k >= lo))) & (k <= hi + 1e-9) & (st > 0)
    if not sel.any():
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log10(sm[sel] / st[sel])
    return float(np.sqrt(np.mean(r ** 2)))


def wasserstein1(a, b) -> float:
    """1D Wasserstein (earth mover's) distance between the empirical distributions of ``a`` and ``b``
    (non-finite values dropped): ∫ |F_a(x) − F_b(x)| dx."""
    a, b = np.ravel(a), np.ravel(b)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def relative_rms(model, true) -> float:
    """sqrt(mean (m − t)²) / sqrt(mean t²) over the entries where both are finite."""
    m, t = np.asarray(model, float), np.asarray(true, float)
    ok = np.isfinite(m) & np.isfinite(t)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((m[ok] - t[ok]) ** 2) / np.mean(t[ok] ** 2)))


def skill(d_model: float, d_none: float) -> float:
    """1 − d(model, truth) / d(none, truth): 0 for no closure, 1 for a perfect one, < 0 if worse."""
    if not (np.isfinite(d_none) and d_none > 0):
        return float("nan")
    return float(1.0 - d_model / d_none)


def mean_spectra(grid, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, mean E(k), mean Z(k)) over the finite snapshots of ``omega`` (..., n, n) on a numpy grid."""
    w = omega.reshape(-1, grid.n, grid.n)
    w = w[np.isfinite(w).all(axis=(-2, -1))]
    if len(w) == 0:
        k, _ = diagnostics.energy_spectrum(grid, np.zeros(grid.backend.spectral_shape, complex))
        return k / grid.kscale, np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    wh = np.fft.rfft2(w)
    k, e = diagnostics.energy_spectrum(grid, wh)
    _, z = diagnostics.enstrophy_spectrum(grid, wh)
    return k / grid.kscale, e.mean(axis=0), z.mean(axis=0)


def series_of(grid, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E and Z of physical snapshots (..., n, n) on a numpy grid (NaN where not finite)."""
    shape = omega.shape[:-2]
    w = omega.reshape(-1, grid.n, grid.n)
    ok = np.isfinite(w).all(axis=(-2, -1))
    e = np.full(len(w), np.nan)
    z = np.full(len(w), np.nan)
    if ok.any():
        wh = np.fft.rfft2(w[ok])
        e[ok] = np.atleast_1d(diagnostics.energy(grid, wh))
        z[ok] = np.atleast_1d(diagnostics.enstrophy(grid, wh))
    return e.reshape(shape), z.reshape(shape)


def pdf(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.ravel(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.full(len(edges) - 1, np.nan)
    return np.histogram(v, bins=edges, density=True)[0]


def closure_metrics(grid, omega: np.ndarray, omega_true: np.ndarray, backscatter: np.ndarray,
                    backscatter_true: np.ndarray) -> dict:
    """Distances of one closure's LES snapshots ``omega`` (member, time, n, n) from the FDNS ones at
    the same members and times (t > 0 only), as in :mod:`suite.les` (no skill: see :func:`add_skill`)."""
    kmax = grid.n // 2 - 1  # every LES mode below Nyquist is evolved
    k, e, z = mean_spectra(grid, omega)
    _, et, zt = mean_spectra(grid, omega_true)
    out = {}
    for name, band in spectral_bands(kmax).items():
        out[f"e_spec_{name}"] = log_spectrum_error(k, e, et, band)
        out[f"z_spec_{name}"] = log_spectrum_error(k, z, zt, band)
    sd = float(np.nanstd(omega_true))
    out["pdf_w1"] = wasserstein1(omega, omega_true) / sd if sd > 0 else float("nan")
    el, zl = series_of(grid, omega)
    ef, zf = series_of(grid, omega_true)
    out["energy_err"] = relative_rms(el, ef)
    out["enstrophy_err"] = relative_rms(zl, zf)
    out["backscatter"] = float(np.nanmean(backscatter)) if np.isfinite(backscatter).any() else float("nan")
    out["backscatter_fdns"] = float(np.nanmean(backscatter_true))
    return out


def add_skill(rows: list[dict]) -> list[dict]:
    """Add ``skill_<d>`` = 1 − d/d(none) to every row (the ``none`` row is the reference)."""
    ref = next(r for r in rows if r["closure"] == "none")
    for r in rows:
        for d in SKILL_OF:
            r[f"skill_{d}"] = skill(r[d], ref[d])
    return rows
