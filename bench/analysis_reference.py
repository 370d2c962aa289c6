"""The analysis' per-kernel path as it was before issue 21, kept as the reference the benchmarks and
the comparison of results measure the current path against (bench/analysis_harness.py).

- :func:`fit_gabor_trf`: the one-kernel Gabor fit (scipy ``least_squares``, trust-region
  reflective, numerical Jacobian, two starts φ = 0 and π/2, ``max_nfev = 400``), unchanged;
- :func:`kernel_features_old`: |Ŵ| of every kernel on the full n × n half plane
  (:func:`analysis.kernels.kernel_spectra`), :func:`analysis.classify.spectral_features` on it,
  the classes, then one :func:`fit_gabor_trf` per oriented kernel (the former
  ``analysis.aggregate.kernel_features``);
- :func:`layer_change_old`: a re-trained layer as ``analysis.aggregate.analyze_network`` did it:
  both layers' full spectra, the TL features and fits, ``kernel_change`` and ``change_profiles``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from analysis.change import kernel_change
from analysis.classify import CLASSES, _gabor, classify_features, spectral_features
from analysis.framework import change_profiles
from analysis.kernels import kernel_spectra
from analysis.radial import half_plane

GABOR = ("gabor_k0", "gabor_orientation", "gabor_sigma")


def fit_gabor_trf(w: np.ndarray, n: int) -> dict[str, float]:
    """The former ``analysis.classify.fit_gabor`` (plus ``converged``: scipy's status > 0 for the kept start)."""
    w = np.asarray(w, dtype=np.float64)
    k = w.shape[-1]
    y, x = np.mgrid[0:k, 0:k].astype(float)
    g = half_plane(n)
    mag = kernel_spectra(w, n, magnitude=True)
    masked = np.where(g.in_disk, mag, 0.0)
    iy, ix = np.unravel_index(np.argmax(masked), masked.shape)
    kx0, ky0 = 2 * np.pi * g.kx[iy, ix] / n, 2 * np.pi * g.ky[iy, ix] / n
    scale = np.abs(w).max() or 1.0
    c = (k - 1) / 2
    lo = [-np.inf, -0.5, -0.5, 0.3, -np.pi, -np.pi, -np.inf]
    hi = [np.inf, k - 0.5, k - 0.5, 2.0 * k, np.pi, np.pi, np.inf]
    best = None
    for phi0 in (0.0, np.pi / 2):
        p0 = [scale, c, c, max(k / 4, 0.6), kx0, ky0, phi0]
        r = least_squares(lambda p: (_gabor(p, x, y) - w).ravel(), p0, bounds=(lo, hi), method="trf",
                          max_nfev=400)
        if best is None or r.cost < best.cost:
            best = r
    amp, cx, cy, sig, kx, ky, phi = best.x
    norm = np.linalg.norm(w) or 1.0
    return {"k0": float(np.hypot(kx, ky) * n / (2 * np.pi)),
            "orientation": float(np.degrees(np.mod(np.arctan2(ky, kx), np.pi))),
            "sigma": float(sig), "phase": float(phi), "amp": float(amp),
            "rel_residual": float(np.sqrt(2 * best.cost) / norm), "converged": bool(best.status > 0),
            "nfev": int(best.nfev)}


def kernel_features_old(w: np.ndarray, n: int, fit: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The former ``analysis.aggregate.kernel_features``: features, classes, fits; and ``|Ŵ|``."""
    mag = kernel_spectra(w, n, magnitude=True)
    f = spectral_features(mag)
    out = {k: v.astype(np.float32) for k, v in f.items()}
    out["cls"] = classify_features(f)
    for g in GABOR:
        out[g] = np.full(w.shape[0], np.nan, dtype=np.float32)
    out["gabor_residual"] = np.full(w.shape[0], np.nan)
    out["gabor_converged"] = np.zeros(w.shape[0], dtype=bool)
    if fit:
        for i in np.flatnonzero(out["cls"] == CLASSES.index("oriented")):
            gf = fit_gabor_trf(w[i], n)
            out["gabor_k0"][i], out["gabor_orientation"][i], out["gabor_sigma"][i] = (
                gf["k0"], gf["orientation"], gf["sigma"])
            out["gabor_residual"][i], out["gabor_converged"][i] = gf["rel_residual"], gf["converged"]
    return out, mag


def layer_change_old(wb: np.ndarray, wt: np.ndarray, n: int, percentile: float = 99.9, fit: bool = True) -> dict:
    """One re-trained layer as the former ``analyze_network`` computed it (kernels ``(N, k, k)``)."""
    ft, mt = kernel_features_old(wt, n, fit=fit)
    mb = kernel_spectra(wb, n, magnitude=True)
    dw, ds = kernel_change(wb, wt, mb, mt)
    ch = change_profiles(mb, mt, ds, percentile)
    return ft | {"dW": dw, "dspec": ds, "threshold": ch["threshold"], "above": ch["above"], "top": ch["top"],
                 "all": ch["all"]}
