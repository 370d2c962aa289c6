"""A-priori metrics of a Π prediction (CONTRACTS.md "Metrics"), used by train, transfer, les, report.

Arrays are ``(..., ny, nx)`` (numpy or torch, any float dtype; computed in float64). The leading
dims are snapshots: every metric is computed per snapshot over its grid points and then averaged
over snapshots (the papers' "CC averaged over test snapshots").

- :func:`cc`: Pearson correlation coefficient between predicted and true Π.
- :func:`enstrophy_transfer`: T = Π ∇²ω̄ (T > 0 diffusion / forward transfer, T < 0 backscatter).
- :func:`cc_masked`: CC over the points of a mask only (backscatter or diffusion points, by the
  *true* T).
- :func:`rel_l2`: ‖pred − true‖₂ / ‖true‖₂.
- :func:`spectrum`: angle-averaged (shell-summed) power spectrum, averaged over snapshots.
- :func:`evaluate`: all of the above as one dict with the keys of the sweep results table.
"""
from __future__ import annotations

import numpy as np

from solver import sgs, spectra


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _flat(a) -> np.ndarray:
    a = _np(a)
    return a.reshape(-1, a.shape[-2] * a.shape[-1])


def _pearson(p: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson CC per row (weights 0/1 select points); NaN where undefined."""
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pm = (w * p).sum(axis=1) / n
        tm = (w * t).sum(axis=1) / n
        dp, dt = (p - pm[:, None]) * w, (t - tm[:, None]) * w
        return (dp * dt).sum(axis=1) / np.sqrt((dp * dp).sum(axis=1) * (dt * dt).sum(axis=1))


def cc(pred, true) -> float:
    """Correlation coefficient over grid points, averaged over snapshots."""
    p, t = _flat(pred), _flat(true)
    return float(np.nanmean(_pearson(p, t, np.ones_like(p))))


def cc_masked(pred, true, mask) -> float:
    """CC over the points where ``mask`` is true, per snapshot, averaged (NaN if never defined)."""
    p, t = _flat(pred), _flat(true)
    w = _flat(mask).astype(np.float64)
    vals = _pearson(p, t, w)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def enstrophy_transfer(pi, omega, L: float) -> np.ndarray:
    """T = Π ∇²ω̄ (:func:`solver.sgs.enstrophy_transfer` of float64 numpy copies)."""
    return sgs.enstrophy_transfer(_np(pi), _np(omega), L)


def rel_l2(pred, true) -> float:
    """‖pred − true‖ / ‖true‖ per snapshot, averaged."""
    p, t = _flat(pred), _flat(true)
    return float(np.mean(np.linalg.norm(p - t, axis=1) / np.linalg.norm(t, axis=1)))


def spectrum(field, L: float) -> tuple[np.ndarray, np.ndarray]:
    """Angle-averaged spectrum: (k, E(k)) with E(k) = Σ_{|k|∈[k−½, k+½)} |f̂|² / n⁴, snapshot mean.

    The shells of :mod:`solver.spectra` over the full fft2 plane, cut to the disk: ``k`` are the
    integer shell wavenumbers (units of 2π/L) 0 … n/2. Parseval: ΣE(k) over all shells (including
    the corners beyond n/2, not returned) equals the mean of f².
    """
    f = _np(field)
    n = f.shape[-1]
    f = f.reshape(-1, f.shape[-2], n)
    fh = np.fft.fft2(f)
    power = (np.abs(fh) ** 2).mean(axis=0) / n ** 4
    k1 = np.fft.fftfreq(n, 1.0 / n)
    shell = spectra.shell_index(k1[None, :], k1[:, None])
    e = spectra.shell_sum(power, shell, spectra.shell_count(n))
    kmax = spectra.disk_shells(n)
    return np.arange(kmax, dtype=np.float64), e[:kmax]


def variance_fraction_above(field, kc: int) -> float:
    """The fraction of the variance of ``field`` ((..., n, n), pooled) in the modes with
    max(|kx|, |ky|) > ``kc`` (integer wavenumbers): with kc = (n−1)//3, the band a 2/3-truncated
    LES Jacobian would leave to −\\overline{J} (docs/science.md §3)."""
    f = _np(field)
    n = f.shape[-1]
    power = (np.abs(np.fft.fft2(f.reshape(-1, f.shape[-2], n))) ** 2).sum(axis=0)
    power[0, 0] = 0.0  # the variance, not the mean square
    k1 = np.abs(np.fft.fftfreq(n, 1.0 / n))
    high = (k1[None, :] > kc) | (k1[:, None] > kc)
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else float("nan")


def evaluate(pred, true, omega, L: float, spectra: bool = False) -> dict:
    """cc, cc_backscatter, cc_diffusion (by the true T = Π∇²ω̄), rel_l2; spectra if asked."""
    t = enstrophy_transfer(true, omega, L)
    out = {"cc": cc(pred, true), "cc_backscatter": cc_masked(pred, true, t < 0),
           "cc_diffusion": cc_masked(pred, true, t > 0), "rel_l2": rel_l2(pred, true),
           "backscatter_fraction": float((t < 0).mean())}
    if spectra:
        k, e_true = spectrum(true, L)
        _, e_pred = spectrum(pred, L)
        out["spectrum"] = {"k": k.tolist(), "true": e_true.tolist(), "pred": e_pred.tolist()}
    return out
