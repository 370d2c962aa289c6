"""Objective classification of kernels by the shape of ``|Ŵ(k)|``, and a fitted 2D Gabor.

Features of one kernel (from its magnitude spectrum on the n × n grid, inside the disk |k| ≤ n/2;
``a(s)`` is the shell-mean of |Ŵ| on shell s, normalized so that ``max a = 1``; ``kN = n/2``):

- ``dc``       a(0): gain at k = 0 relative to the peak gain
- ``hi``       mean of a(s) over the outer shells s ≥ 0.85 kN: gain near the grid cutoff
- ``k_peak``   argmax a(s) / kN (0 … 1)
- ``centroid`` Σ s a² / Σ a², in units of kN
- ``bandwidth`` standard deviation of s under the weight a², in units of kN
- ``aniso``    |Σ P e^{2iθ}| / Σ P with P = |Ŵ|² over the disk without k = 0 (0: isotropic,
  1: all power along one direction); ``orientation`` = ½ arg Σ P e^{2iθ} in degrees [0, 180),
  the direction of the dominant wavevector.
- ``dip``      min(dc, hi) − min of a(s) over the shells in between: how far the gain sinks below
  both ends (band-stop character; ≤ 0 for a monotone or single-peaked profile)

Classes (first rule that applies; thresholds are module constants, chosen from the filters'
definitions — a pass band has gain ≥ 0.7 of the peak, a stop band ≤ 0.5 — and validated on the
labelled synthetic set of :func:`synthetic_kernels` by :func:`validate`):

- ``oriented``  aniso ≥ ANISO_MIN and k_peak > 0: the peak off the origin, power along one direction
  (Gabor-like; an elongated Gaussian keeps its peak at k = 0 and stays low-pass)
- ``low-pass``  dc ≥ DC_PASS and hi ≤ STOP
- ``high-pass`` dc ≤ STOP and hi ≥ DC_PASS
- ``band-pass`` dc ≤ STOP and hi ≤ STOP (the peak lies inside)

A kernel none of these rules takes gets the class of its largest *contrast* — ``dc − hi``
(low-pass), ``hi − dc`` (high-pass), ``1 − max(dc, hi)`` (band-pass: the peak lies inside and both
ends are lower) — when that contrast is at least WEAK_CONTRAST and larger than the kernel's ``dip`` (a weak member: learned kernels are
mostly broadband, with a gain that still falls, rises or peaks by 15–50 % across the shells); only
the rest are

- ``other``     flat (all-pass: every contrast < WEAK_CONTRAST) or band-stop (both ends high).

``classify_features(f, weak=False)`` applies the strict rules alone.

:func:`fit_gabor` fits ``A exp(-|x-c|²/2σ²) cos(k₀·(x-c) + φ)`` to the kernel in physical space
(least squares from the spectral peak, :mod:`.gabor`: batched Levenberg–Marquardt), returning k₀ in
integer wavenumbers of the n-grid.
"""
from __future__ import annotations

import numpy as np
from .gabor import fit_gabor_batch
from .kernel_stats import chunks, sym_dft
from .radial import half_plane

CLASSES = ("low-pass", "high-pass", "band-pass", "oriented", "other")
FEATURES = ("dc", "hi", "k_peak", "centroid", "bandwidth", "aniso", "orientation", "dip")
ANISO_MIN = 0.35
DC_PASS = 0.7
STOP = 0.5
HI_FROM = 0.85
WEAK_CONTRAST = 0.15


def spectral_features(mag: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`FEATURES` of kernels from ``|Ŵ|`` arrays ``(..., n, n//2+1)``; each ``(...)``.
    (:func:`kernel_features` computes the same from the kernels without these arrays.)"""
    mag = np.asarray(mag, dtype=np.float64)
    n = mag.shape[-2]
    g = half_plane(n)
    lead = mag.shape[:-2]
    flat = mag.reshape(-1, n * g.m)
    p = flat * flat
    out = profile_features(g.shell_mean(flat.reshape(-1, n, g.m)), p @ g.cos2, p @ g.sin2, p @ g.wdisk0, n)
    return {k: v.reshape(lead) for k, v in out.items()}


def kernel_features(w: np.ndarray, n: int, profile: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The :data:`FEATURES` of kernels ``w (N, k, k)`` zero-padded to ``n × n``, equal to
    ``spectral_features(kernel_spectra(w, n, magnitude=True))`` to rounding: the shell means of
    ``|Ŵ|`` from :class:`.kernel_stats.SymDFT` chunk by chunk (or ``profile (N, shells)``, those
    shell means when the caller has them), the orientation sums from the kernels' autocorrelation
    (no spectrum of the whole batch is kept)."""
    w = np.asarray(w, dtype=np.float64)
    S = sym_dft(w.shape[-1], n)
    a = profile
    if a is None:
        a = np.empty((w.shape[0], half_plane(n).n_shells))
        for sl in chunks(w.shape[0]):
            a[sl] = S.shell_mean(S.magnitudes(w[sl]))
    pf = S.power_functionals(w)
    return profile_features(a, pf["c"], pf["s"], pf["p"], n)


def profile_features(a: np.ndarray, c: np.ndarray, sn: np.ndarray, pt: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The :data:`FEATURES` ``(N,)`` from the shell means ``a (N, shells)`` of ``|Ŵ|`` and the
    full-plane sums ``Σ P cos 2θ``, ``Σ P sin 2θ``, ``Σ P`` over the disk without k = 0 (``P = |Ŵ|²``)."""
    amax = a.max(axis=1, keepdims=True)
    a = a / np.where(amax > 0, amax, 1.0)
    kn = n / 2
    s = half_plane(n).k_shells
    a2 = a * a
    tot = a2.sum(axis=1)
    tot = np.where(tot > 0, tot, 1.0)
    centroid = (a2 * s).sum(axis=1) / tot
    bandwidth = np.sqrt(np.maximum((a2 * (s - centroid[:, None]) ** 2).sum(axis=1) / tot, 0.0))
    pt = np.where(pt > 0, pt, 1.0)
    return {
        "dc": a[:, 0],
        "hi": a[:, s >= HI_FROM * kn].mean(axis=1),
        "k_peak": np.argmax(a, axis=1) / kn,
        "centroid": centroid / kn,
        "bandwidth": bandwidth / kn,
        "aniso": np.hypot(c, sn) / pt,
        "orientation": np.degrees(np.mod(0.5 * np.arctan2(sn, c), np.pi)),
        "dip": np.minimum(a[:, 0], a[:, s >= HI_FROM * kn].mean(axis=1))
        - a[:, (s > 0) & (s < HI_FROM * kn)].min(axis=1),
    }


def classify_features(f: dict[str, np.ndarray], weak: bool = True) -> np.ndarray:
    """Class index into :data:`CLASSES` for every kernel described by ``f`` (see the module doc);
    ``weak=False``: the strict rules only."""
    dc, hi, an = f["dc"], f["hi"], f["aniso"]
    cls = np.full(np.shape(dc), CLASSES.index("other"), dtype=np.int8)
    rules = [("oriented", (an >= ANISO_MIN) & (f["k_peak"] > 0)),
             ("low-pass", (dc >= DC_PASS) & (hi <= STOP)),
             ("high-pass", (dc <= STOP) & (hi >= DC_PASS)),
             ("band-pass", (dc <= STOP) & (hi <= STOP))]
    done = np.zeros(np.shape(dc), dtype=bool)
    for name, cond in rules:
        take = cond & ~done
        cls[take] = CLASSES.index(name)
        done |= take
    if weak:
        contrast = np.stack([dc - hi, hi - dc, 1.0 - np.maximum(dc, hi)])      # low, high, band
        best = np.argmax(contrast, axis=0)
        top = np.max(contrast, axis=0)
        take = ~done & (top >= WEAK_CONTRAST) & (top > f["dip"])
        cls[take] = np.array([CLASSES.index(c) for c in ("low-pass", "high-pass", "band-pass")])[best[take]]
    return cls


def classify_kernels(w: np.ndarray, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Classes and features of kernels ``w (..., k, k)`` zero-padded to ``n × n``."""
    w = np.asarray(w, dtype=np.float64)
    lead = w.shape[:-2]
    f = kernel_features(w.reshape(-1, *w.shape[-2:]), n)
    f = {k: v.reshape(lead) for k, v in f.items()}
    return classify_features(f), f


# --------------------------------------------------------------------------------------------
# Gabor fit


def _gabor(params, x, y):
    amp, cx, cy, sig, kx, ky, phi = params
    dx, dy = x - cx, y - cy
    return amp * np.exp(-(dx * dx + dy * dy) / (2 * sig * sig)) * np.cos(kx * dx + ky * dy + phi)


def gabor_kernel(k: int, k0: float, orientation_deg: float, sigma: float, phase: float = 0.0,
                 n: int = 128, amp: float = 1.0, center: tuple[float, float] | None = None) -> np.ndarray:
    """A ``k × k`` Gabor kernel whose wavevector has magnitude ``k0`` (integer wavenumbers of the
    ``n`` grid) and direction ``orientation_deg`` (from the x axis); ``sigma`` in grid spacings."""
    c = (k - 1) / 2
    cx, cy = center if center is not None else (c, c)
    kg = 2 * np.pi * k0 / n
    th = np.radians(orientation_deg)
    y, x = np.mgrid[0:k, 0:k].astype(float)
    return _gabor((amp, cx, cy, sigma, kg * np.cos(th), kg * np.sin(th), phase), x, y)


def fit_gabor(w: np.ndarray, n: int) -> dict[str, float]:
    """Least-squares 2D Gabor fit of one ``k × k`` kernel (:func:`.gabor.fit_gabor_batch` fits many).

    Returns ``k0`` (integer wavenumbers of the n-grid), ``orientation`` (degrees in [0, 180), the
    direction of the wavevector measured from the kx axis towards ky), ``sigma`` (grid spacings),
    ``phase``, ``amp`` and ``rel_residual`` = ‖w − fit‖ / ‖w‖.
    """
    r = fit_gabor_batch(np.asarray(w, dtype=np.float64)[None], n)
    return {k: float(r[k][0]) for k in ("k0", "orientation", "sigma", "phase", "amp", "rel_residual")}


# --------------------------------------------------------------------------------------------
# labelled synthetic kernels


def _gauss(k, sigma, center):
    y, x = np.mgrid[0:k, 0:k].astype(float)
    g = np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def synthetic_kernels(n_per_class: int, k: int = 5, n: int = 128, noise: float = 0.05,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A labelled set ``(w (N, k, k), labels (N,))`` of the :data:`CLASSES`, with noise.

    low-pass: Gaussians (σ 0.7–1.5); high-pass: δ − Gaussian (σ 0.8–1.5); band-pass: differences
    of Gaussians (σ₁ 0.65–0.8, σ₂/σ₁ 1.8–2.5); oriented: Gabors (|k₀| from 1.6/σ to 2.6 rad per
    grid spacing, any orientation and phase, σ 1.0–1.5); other: all-pass (a δ) and band-stop
    (δ − DoG). Each kernel gets a random sign, scale and a small centre shift, then iid Gaussian
    noise of ``noise`` × its rms value.
    """
    if k < 3:
        raise ValueError(f"k = {k}: synthetic kernels need k >= 3")
    rng = np.random.default_rng(seed)
    c = (k - 1) / 2
    ws, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(n_per_class):
            ctr = (c + rng.uniform(-0.3, 0.3), c + rng.uniform(-0.3, 0.3))
            delta = np.zeros((k, k))
            delta[int(round(c)), int(round(c))] = 1.0
            if name == "low-pass":
                w = _gauss(k, rng.uniform(0.7, 1.5), ctr)
            elif name == "high-pass":
                w = delta - _gauss(k, rng.uniform(0.8, 1.5), ctr)
            elif name == "band-pass":
                s1 = rng.uniform(0.65, 0.8)
                w = _gauss(k, s1, ctr) - _gauss(k, s1 * rng.uniform(1.8, 2.5), ctr)
            elif name == "oriented":
                sig = rng.uniform(1.0, 1.5)
                kg = rng.uniform(1.6 / sig, 2.6)
                w = gabor_kernel(k, kg * n / (2 * np.pi), rng.uniform(0, 180), sig,
                                 phase=rng.uniform(0, 2 * np.pi), n=n, center=ctr)
            else:
                if rng.random() < 0.5:
                    w = delta
                else:
                    s1 = rng.uniform(0.65, 0.8)
                    w = delta - (_gauss(k, s1, ctr) - _gauss(k, s1 * rng.uniform(1.8, 2.5), ctr))
            w = w * rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 2.0)
            rms = np.sqrt(np.mean(w * w))
            ws.append(w + noise * rms * rng.standard_normal((k, k)))
            labels.append(label)
    return np.asarray(ws), np.asarray(labels, dtype=np.int8)


def validate(n_per_class: int = 200, k: int = 5, n: int = 128, noise: float = 0.05,
             seed: int = 0) -> dict:
    """Accuracy of the classifier on :func:`synthetic_kernels` and the confusion matrix (rows: truth)."""
    w, truth = synthetic_kernels(n_per_class, k, n, noise, seed)
    pred, _ = classify_kernels(w, n)
    conf = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(conf, (truth, pred), 1)
    return {"accuracy": float(np.mean(pred == truth)), "confusion": conf, "classes": CLASSES,
            "n": int(truth.size), "noise": noise, "k": k}
