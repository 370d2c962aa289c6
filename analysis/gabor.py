"""Batched 2D Gabor fits: Levenberg–Marquardt with an analytic Jacobian over thousands of kernels.

The model (:func:`analysis.classify.gabor_kernel`) of a ``k × k`` kernel, ``p = (A, cx, cy, σ, kx, ky, φ)``:

    f(x, y) = A g cos ψ,   g = exp(−(dx² + dy²) / 2σ²),   ψ = kx dx + ky dy + φ,   (dx, dy) = (x − cx, y − cy)

with the partial derivatives (``s = sin ψ``, ``c = cos ψ``)

    ∂f/∂A  = g c                 ∂f/∂cx = A g (c dx/σ² + s kx)     ∂f/∂cy = A g (c dy/σ² + s ky)
    ∂f/∂σ  = A g c (dx²+dy²)/σ³   ∂f/∂kx = −A g s dx    ∂f/∂ky = −A g s dy    ∂f/∂φ = −A g s

Every problem of the batch takes its own Marquardt step ``(JᵀJ + λ diag JᵀJ) δ = −Jᵀr``, projected
onto the same box as the former one-kernel fit (scipy ``least_squares``, trust-region reflective,
numerical Jacobian, two starts): centre inside the kernel, ``0.3 ≤ σ ≤ 2k``, ``|kx|, |ky| ≤ π``.
A parameter at a bound that the gradient pushes outwards is held there for that step (its row and
column leave the system: projected LM stalls without it). A step is kept when it lowers the cost (λ shrinks), refused otherwise (λ grows); a problem stops when
its cost falls by less than ``FTOL`` relative, its step is below ``XTOL`` relative, or λ overflows. Only the problems still running are
evaluated (the batch shrinks as they converge), so a batch costs its mean, not its worst, iteration
count.

One start per kernel (:func:`starts`): as before, the spectral peak inside the disk gives
``(kx, ky)``, the centre of the kernel and ``σ = max(k/4, 0.6)``; ``A`` and ``φ`` are no longer
guessed (before: ``A = max |w|`` and two runs, ``φ = 0`` and ``π/2``) but solved for, the model being
linear in ``A cos φ`` and ``A sin φ`` at fixed geometry. A kernel whose fit stays poor (relative
residual above ``RETRY``) is fitted again from the two former starts (:func:`guess_starts`), and the
lowest cost of the three is kept; a restart still above ``SCOUT_MARGIN`` × the cost in hand after
``SCOUT_ITER`` iterations is dropped (learned kernels are often poor Gabors: without this cut the
restarts took three quarters of the fitting time). bench/analysis_harness.py compares the fits
with the former scipy fit kernel by kernel (parameters and residuals).
"""
from __future__ import annotations

import numpy as np

from .kernel_stats import chunks, sym_dft

MAX_ITER = 200
NYQUIST_START = 0.95
SCOUT_ITER = 40    # iterations of a restart before it must be within SCOUT_MARGIN of the fit in hand
SCOUT_MARGIN = 1.2
RETRY = 0.1     # relative residual above which the two former starts run as well
FTOL = 1e-8
XTOL = 1e-8
LAMBDA0 = 1e-3


def bounds(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``(A, cx, cy, σ, kx, ky, φ)`` for a ``k × k`` kernel."""
    lo = np.array([-np.inf, -0.5, -0.5, 0.3, -np.pi, -np.pi, -np.inf])
    hi = np.array([np.inf, k - 0.5, k - 0.5, 2.0 * k, np.pi, np.pi, np.inf])
    return lo, hi


def model(p: np.ndarray, x: np.ndarray, y: np.ndarray, jac: bool = False):
    """Gabor values ``(M, k²)`` of parameters ``p (M, 7)`` on the taps ``x, y (k²,)``; with ``jac``
    also the Jacobian ``(M, k², 7)``."""
    amp, cx, cy, sig, kx, ky, phi = (p[:, i:i + 1] for i in range(7))
    dx, dy = x[None, :] - cx, y[None, :] - cy
    r2 = dx * dx + dy * dy
    inv = 1.0 / (sig * sig)
    g = np.exp(-0.5 * r2 * inv)
    psi = kx * dx + ky * dy + phi
    c = np.cos(psi)
    f = amp * g * c
    if not jac:
        return f
    s = np.sin(psi)
    ag = amp * g
    ags = ag * s
    J = np.empty(f.shape + (7,))
    J[..., 0] = g * c
    J[..., 1] = f * dx * inv + ags * kx
    J[..., 2] = f * dy * inv + ags * ky
    J[..., 3] = f * r2 * inv / sig
    J[..., 4] = -ags * dx
    J[..., 5] = -ags * dy
    J[..., 6] = -ags
    return f, J


def levenberg_marquardt(w: np.ndarray, p0: np.ndarray, max_iter: int = MAX_ITER, ftol: float = FTOL
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the Gabor model to kernels ``w (M, k, k)`` from starts ``p0 (M, 7)``.

    Returns ``(p, cost, iterations)``, ``cost = ½ ‖f(p) − w‖²`` per problem.
    """
    M, k = w.shape[0], w.shape[-1]
    y, x = (a.ravel().astype(float) for a in np.mgrid[0:k, 0:k])
    lo, hi = bounds(k)
    target = w.reshape(M, k * k)
    p = np.clip(np.array(p0, dtype=float), lo, hi)
    f, J = model(p, x, y, jac=True)
    r = f - target
    del f
    cost = 0.5 * np.einsum("mi,mi->m", r, r)
    lam = np.full(M, LAMBDA0)
    iters = np.zeros(M, dtype=int)
    act = np.arange(M)
    for _ in range(max_iter):
        if not act.size:
            break
        Ja, ra = J[act], r[act]
        Jt = Ja.transpose(0, 2, 1)
        A = Jt @ Ja                                         # stacked GEMMs: 5x faster than einsum here
        grad = (Jt @ ra[..., None])[..., 0]
        d = np.einsum("mii->mi", A)
        d = np.maximum(d, np.maximum(1e-12 * d.max(axis=1, keepdims=True), 1e-30))
        A[:, np.arange(7), np.arange(7)] += lam[act, None] * d
        pa = p[act]                                           # a parameter at a bound that the descent
        held = ((pa <= lo) & (grad > 0)) | ((pa >= hi) & (grad < 0))   # pushes outwards is held there
        A[held[:, :, None] | held[:, None, :]] = 0.0
        A[:, np.arange(7), np.arange(7)] += held
        grad[held] = 0.0
        bad = ~(np.isfinite(A).all(axis=(1, 2)) & np.isfinite(grad).all(axis=1))
        A[bad], grad[bad] = np.eye(7), 0.0                    # a non-finite problem: zero step, it stops
        step = -np.linalg.solve(A, grad[..., None])[..., 0]
        pn = np.clip(pa + step, lo, hi)
        rn = model(pn, x, y) - target[act]
        cn = 0.5 * np.einsum("mi,mi->m", rn, rn)
        ok = cn < cost[act]
        iters[act] += 1
        take = act[ok]
        drop = (cost[act] - cn) <= ftol * cost[act]          # converged: no (or too small a) decrease
        if take.size:                                          # the Jacobian only where the step is kept
            J[take] = model(pn[ok], x, y, jac=True)[1]
        p[take], r[take], cost[take] = pn[ok], rn[ok], cn[ok]
        lam[act] = np.where(ok, lam[act] * 0.3, lam[act] * 10.0)
        small = np.linalg.norm(step, axis=1) <= XTOL * (np.linalg.norm(pa, axis=1) + XTOL)
        done = (ok & drop) | small | (lam[act] > 1e12)
        act = act[~done]
    return p, cost, iters


def starts(w: np.ndarray, n: int, inside: bool = True) -> np.ndarray:
    """One start per kernel ``(N, 7)``: wavevector at the spectral peak inside the disk, the kernel's
    centre, ``σ = max(k/4, 0.6)``, and the amplitude and phase that fit best for that geometry (the
    model is linear in ``A cos φ`` and ``A sin φ``: a 2 × 2 least-squares problem per kernel)."""
    N, k = w.shape[0], w.shape[-1]
    S = sym_dft(k, n)
    kx, ky = np.empty(N), np.empty(N)
    for sl in chunks(N):
        kx[sl], ky[sl] = S.peak(S.magnitudes(w[sl]))
    c = (k - 1) / 2
    p = np.stack([np.ones(N), np.full(N, c), np.full(N, c), np.full(N, max(k / 4, 0.6)),
                  2 * np.pi * kx / n, 2 * np.pi * ky / n, np.zeros(N)], axis=1)
    # a peak on the Nyquist line starts just inside it: on integer taps the model is symmetric about
    # |k| = π (aliasing), a saddle the fit would not leave (scipy's TRF started strictly inside too)
    if inside:
        p[:, 4:6] = np.clip(p[:, 4:6], -NYQUIST_START * np.pi, NYQUIST_START * np.pi)
    y, x = (a.ravel().astype(float) for a in np.mgrid[0:k, 0:k])
    bc = model(p, x, y)                                   # g cos ψ₀
    q = p.copy()
    q[:, 6] = -np.pi / 2
    bs = model(q, x, y)                                   # g cos(ψ₀ − π/2) = g sin ψ₀
    t = w.reshape(N, k * k)
    a11, a12, a22 = (bc * bc).sum(1), (bc * bs).sum(1), (bs * bs).sum(1)
    r1, r2 = (bc * t).sum(1), (bs * t).sum(1)
    det = a11 * a22 - a12 * a12
    two = (det > 1e-10 * a11 * a22) & (np.minimum(a11, a22) > 1e-12 * np.maximum(a11, a22))   # else the larger
    safe = np.where(two, det, 1.0)                        # basis alone (sin(π dx) vanishes on integer taps)
    use_c = a11 >= a22
    alpha = np.where(two, (a22 * r1 - a12 * r2) / safe, np.where(use_c, r1 / np.where(a11 > 0, a11, 1.0), 0.0))
    beta = np.where(two, (a11 * r2 - a12 * r1) / safe, np.where(use_c, 0.0, r2 / np.where(a22 > 0, a22, 1.0)))
    amp = np.hypot(alpha, beta)                           # w ≈ α g cos ψ₀ + β g sin ψ₀ = A g cos(ψ₀ + φ)
    scale = np.abs(t).max(axis=1)
    ok = np.isfinite(amp) & (amp > 0)
    p[:, 0] = np.where(ok, amp, np.where(scale > 0, scale, 1.0))
    p[:, 6] = np.where(ok, np.arctan2(-beta, alpha), 0.0)
    return p


def guess_starts(w: np.ndarray, n: int) -> np.ndarray:
    """The former two starts per kernel ``(2, N, 7)``: the start of :func:`starts` with ``A = max |w|``
    and ``φ = 0``, then ``φ = π/2``, the wavevector on the peak even on the Nyquist line."""
    p = starts(w, n, inside=False)
    scale = np.abs(w).reshape(len(w), -1).max(axis=1)
    p[:, 0] = np.where(scale > 0, scale, 1.0)
    p[:, 6] = 0.0
    q = p.copy()
    q[:, 6] = np.pi / 2
    return np.stack([p, q])


def fit_gabor_batch(w: np.ndarray, n: int, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Gabor fits of kernels ``w (N, k, k)``: arrays ``(N,)`` of ``k0`` (integer wavenumbers of the
    n-grid), ``orientation`` (degrees in [0, 180) from the kx axis towards ky), ``sigma`` (grid
    spacings), ``phase``, ``amp``, ``rel_residual`` = ‖w − fit‖ / ‖w‖, ``iterations`` (of the start kept)."""
    w = np.asarray(w, dtype=np.float64)
    N = w.shape[0]
    keys = ("k0", "orientation", "sigma", "phase", "amp", "rel_residual", "iterations")
    out = {key: np.empty(N) for key in keys}
    for sl in chunks(N, chunk):
        blk = w[sl]
        b = blk.shape[0]
        p, cost, it = levenberg_marquardt(blk, starts(blk, n))
        norm2 = np.sum(blk * blk, axis=(1, 2))
        retry = np.flatnonzero(2 * cost > RETRY ** 2 * norm2)   # a poor fit: also the former two starts
        if retry.size:
            wr = np.concatenate([blk[retry]] * 2)
            pr, cr, ir = levenberg_marquardt(wr, guess_starts(blk[retry], n).reshape(-1, 7), max_iter=SCOUT_ITER)
            # only the restarts within reach of the fit in hand run on (most creep on to a worse optimum)
            on = np.flatnonzero(cr < SCOUT_MARGIN * np.tile(cost[retry], 2))
            if on.size:
                pr[on], cr[on], more = levenberg_marquardt(wr[on], pr[on], max_iter=MAX_ITER - SCOUT_ITER)
                ir[on] += more
            for j in range(2):
                sel = slice(j * retry.size, (j + 1) * retry.size)
                better = cr[sel] < cost[retry]
                p[retry[better]], cost[retry[better]] = pr[sel][better], cr[sel][better]
                it[retry[better]] = ir[sel][better]
        amp, _, _, sig, kx, ky, phi = p.T
        norm = np.linalg.norm(blk.reshape(b, -1), axis=1)
        out["k0"][sl] = np.hypot(kx, ky) * n / (2 * np.pi)
        out["orientation"][sl] = np.degrees(np.mod(np.arctan2(ky, kx), np.pi))
        out["sigma"][sl], out["phase"][sl], out["amp"][sl] = sig, phi, amp
        out["rel_residual"][sl] = np.sqrt(2 * cost) / np.where(norm > 0, norm, 1.0)
        out["iterations"][sl] = it
    return out
