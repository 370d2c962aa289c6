"""Batched 2D Gabor fits: variable-projection Levenberg–Marquardt over thousands of kernels.

The model (:func:`analysis.classify.gabor_kernel`) of a ``k × k`` kernel, ``p = (A, cx, cy, σ, kx, ky, φ)``:

    f(x, y) = A g cos ψ,   g = exp(−(dx² + dy²) / 2σ²),   ψ = kx dx + ky dy + φ,   (dx, dy) = (x − cx, y − cy)

with the partial derivatives (``s = sin ψ``, ``c = cos ψ``)

    ∂f/∂A  = g c                 ∂f/∂cx = A g (c dx/σ² + s kx)     ∂f/∂cy = A g (c dy/σ² + s ky)
    ∂f/∂σ  = A g c (dx²+dy²)/σ³   ∂f/∂kx = −A g s dx    ∂f/∂ky = −A g s dy    ∂f/∂φ = −A g s

Variable projection. The model is linear in ``(A cos φ, A sin φ)``: for every geometry
``θ = (cx, cy, σ, kx, ky)`` the best ``A, φ`` solve a 2 × 2 least-squares problem
(:func:`_linear`), and the fit runs on ``θ`` alone. Each problem of the batch takes the Marquardt step
``(JᵀJ + λ diag JᵀJ) δ = −Jᵀr`` of all seven parameters with the ``A, φ`` gradient zero (they are at
their optimum) and keeps the ``θ`` part, i.e. the Gauss–Newton step of the projected residual
(Kaufman's approximation: the Schur complement of the ``A, φ`` block); after the step ``A, φ`` are
solved for again. ``A`` and ``φ`` are the only unbounded parameters: many learned kernels are
odd, derivative-of-Gaussian-like filters, the limit ``k → 0``, ``A → ∞`` (``A cos(k·d + φ) → A k n̂·d``),
along which the fit of all seven parameters crawled (accept, accept, refuse, ~3 % of ``A`` a step)
until the iteration cap; projected, the geometry stays in the box. On learned kernels this
shortens the first fit and lets far fewer of them stop at the iteration cap (bench/analysis_harness.py
measures it: ``measure_run_fits``).

The box of the former one-kernel fit (scipy ``least_squares``, trust-region reflective, numerical
Jacobian, two starts): centre inside the kernel, ``0.3 ≤ σ ≤ 2k``, ``|kx|, |ky| ≤ π``. A parameter at
a bound that the gradient pushes outwards is held there for that step (its row and column leave
the system: projected LM stalls without it). A step is kept when it lowers the cost (λ shrinks),
refused otherwise (λ grows); a problem stops when its cost falls by less than ``FTOL`` relative, its
step of the geometry is below ``XTOL`` relative to it, its step is not finite, or λ overflows.

Evaluation, problems along the last axis of every array. On integer taps ``ψ = φ₀ + kx x + ky y``
(``φ₀ = φ − kx cx − ky cy``), so ``g e^{iψ} = (gy e^{i(φ₀ + ky y)}) ⊗ (gx e^{i kx x})``: the
exponentials run on ``2k + 3`` values per problem (the powers of ``e^{i kx}``, ``e^{i ky}`` by
products) where the plain model takes ``exp``, ``cos`` and ``sin`` of every tap (:func:`_taps`).
A trial step costs this product, the 2 × 2 solve and the residual; the Jacobian is formed only
where the step is kept, as ``[J r]ᵀ[J r]`` (normal matrix, gradient) in one stacked product
(:func:`_gram`), and the 7 × 7 systems are solved by Gaussian elimination vectorized over the
problems (:func:`_solve`; LAPACK's per-matrix calls cost three times more). The problems run in a
pool of ``POOL`` that is refilled from the queue as they stop (:func:`levenberg_marquardt`), so a
batch costs its total iteration count, with one tail of slow problems per pass (first fits,
restarts) instead of one per chunk of kernels. Each problem's iterations depend on that problem
alone: the fits do not depend on the batch or the pool.

Starts (:func:`starts`): the spectral peak inside the disk gives ``(kx, ky)``, with the centre of the
kernel and ``σ = max(k/4, 0.6)``. A kernel whose fit stays poor (relative residual above ``RETRY``)
is fitted again from two other geometries (:func:`restart_starts`): the wavevector scaled by
``RESTART_K = 0.5``, and the narrow envelope ``σ = RESTART_SIGMA = 0.7``; the lowest cost of the
three is kept. The former two restarts, ``A = max |w|`` with ``φ = 0`` and ``π/2``, differ from the
first start only in ``A, φ``, which the projection solves for: they would repeat the first fit.
These two were chosen, on the medium run's learned kernels, as the pair that lowered the residuals
most among the tried geometries (wavevector × 0.05, 0.25, 0.5, 0.75 or rotated by 90°, σ = 0.7 or
2.5, the centre at the centroid of ``w²``, the Nyquist peak not moved inside, and the former
restarts after 3 or 8 steps of the seven-parameter fit). A restart still above ``SCOUT_MARGIN`` ×
the cost in hand after ``SCOUT_ITER`` iterations stops there.

bench/analysis_harness.py compares the fits with the former scipy fit kernel by kernel (parameters
and residuals). Learned kernels are mostly poor Gabors (most fits end above ``RETRY``), so their restarts
set the cost; docs/benchmarks.md records the measured costs and the comparison.
"""
from __future__ import annotations

import numpy as np

from .kernel_stats import chunks, sym_dft

MAX_ITER = 200
NYQUIST_START = 0.95
RETRY = 0.1          # relative residual above which the restarts run as well
RESTART_K = 0.5      # restarts: the wavevector scaled by RESTART_K, then σ = RESTART_SIGMA
RESTART_SIGMA = 0.7
SCOUT_ITER = 40      # iterations of a restart before it must be within SCOUT_MARGIN of the fit in hand
SCOUT_MARGIN = 1.2
FTOL = 1e-8
XTOL = 1e-8
LAMBDA0 = 1e-3
POOL = 1024          # problems iterated together (refilled from the queue as they stop)


def bounds(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``(A, cx, cy, σ, kx, ky, φ)`` for a ``k × k`` kernel."""
    lo = np.array([-np.inf, -0.5, -0.5, 0.3, -np.pi, -np.pi, -np.inf])
    hi = np.array([np.inf, k - 0.5, k - 0.5, 2.0 * k, np.pi, np.pi, np.inf])
    return lo, hi


def model(p: np.ndarray, x: np.ndarray, y: np.ndarray, jac: bool = False):
    """Gabor values ``(M, k²)`` of parameters ``p (M, 7)`` on the taps ``x, y (k²,)``; with ``jac``
    also the Jacobian ``(M, k², 7)`` (the plain formulas of the module doc: the reference that the
    fit's separable evaluation, :func:`_taps` and :func:`_gram`, is tested against)."""
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


# --------------------------------------------------------------------------------------------
# the fit's evaluation: problems along the last axis


def _taps(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``g e^{iψ}`` on the taps ``(k, k, M)`` (y, x, problem) for parameters ``p (7, M)``, and the
    offsets ``d (2, k, M)`` (``dx``, ``dy`` of the taps ``0 … k−1``): the product of one factor per
    axis, exponentials of ``2k + 3`` values per problem (powers of ``e^{i kx}``, ``e^{i ky}`` by products)."""
    t = np.arange(k, dtype=float)[:, None]
    d = t - p[1:3, None, :]                                      # (2, k, M)
    e = np.empty(d.shape, dtype=complex)
    e[:, 0] = 1.0
    e[:, 1:] = np.exp(1j * p[4:6, None, :])
    e = np.cumprod(e, axis=1)                                    # e^{i kx x}, e^{i ky y}
    e *= np.exp((-0.5 / (p[3] * p[3])) * (d * d))
    e[1] *= np.exp(1j * (p[6] - p[4] * p[1] - p[5] * p[2]))    # φ₀ = φ − kx cx − ky cy on the y factor
    return e[1][:, None] * e[0][None], d


def _linear(gc: np.ndarray, gs: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients ``(α, β)`` ``(M,)`` of the least-squares ``α gc + β gs ≈ t`` (arrays
    ``(k, k, M)``): 2 × 2 normal equations, or the larger basis alone when they are degenerate
    (``sin(π dx)`` vanishes on integer taps)."""
    a11, a12, a22 = (np.einsum("ijm,ijm->m", a, b) for a, b in ((gc, gc), (gc, gs), (gs, gs)))
    r1, r2 = np.einsum("ijm,ijm->m", gc, t), np.einsum("ijm,ijm->m", gs, t)
    det = a11 * a22 - a12 * a12
    two = (det > 1e-10 * a11 * a22) & (np.minimum(a11, a22) > 1e-12 * np.maximum(a11, a22))
    if two.all():
        return (a22 * r1 - a12 * r2) / det, (a11 * r2 - a12 * r1) / det
    safe = np.where(two, det, 1.0)
    use_c = a11 >= a22
    alpha = np.where(two, (a22 * r1 - a12 * r2) / safe, np.where(use_c, r1 / np.where(a11 > 0, a11, 1.0), 0.0))
    beta = np.where(two, (a11 * r2 - a12 * r1) / safe, np.where(use_c, 0.0, r2 / np.where(a22 > 0, a22, 1.0)))
    return alpha, beta


def _trial(p: np.ndarray, target: np.ndarray):
    """The residuals ``(k, k, M)`` and cost ``(M,)`` of the geometry of ``p (7, M)`` with its best
    linear part; and what :func:`_accept` needs (the taps, offsets, ``α, β``)."""
    Z, d = _taps(p, target.shape[0])
    gc, gs = Z.real, Z.imag
    al, be = _linear(gc, gs, target)
    r = al * gc + be * gs - target
    return r, 0.5 * np.einsum("ijm,ijm->m", r, r), (Z, d, al, be)


def _accept(p: np.ndarray, r: np.ndarray, aux) -> np.ndarray:
    """Set ``A, φ`` of ``p (7, M)`` from the linear part ``α g cos ψ + β g sin ψ = A g cos(ψ − θ)``
    (in place); return ``[J r]ᵀ[J r] (M, 8, 8)`` there."""
    Z, d, al, be = aux
    amp = np.hypot(al, be)
    ok = np.isfinite(amp) & (amp > 0)
    a = np.where(ok, amp, 1.0)
    c, s = np.where(ok, al / a, 1.0), np.where(ok, be / a, 0.0)
    p[0] = np.where(ok, amp, 0.0)
    p[6] -= np.arctan2(s, c)
    Z = Z * (c - 1j * s)                                         # g e^{iψ} at the new φ
    return _gram(p, Z.real, Z.imag, d, r)


def _gram(p: np.ndarray, gc: np.ndarray, gs: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``[J r]ᵀ[J r] (M, 8, 8)``: the normal matrix ``JᵀJ``, the gradient ``Jᵀr`` (column 7) and
    ``rᵀr``, one stacked product, from ``g cos ψ``, ``g sin ψ`` and the residuals ``r`` ``(k, k, M)``."""
    k, M = gc.shape[0], gc.shape[-1]
    amp, sig, kx, ky = p[0], p[3], p[4], p[5]
    out = np.empty((M, 8, k, k))
    J = out.transpose(1, 2, 3, 0)                                # written problem-last, multiplied problem-first
    DX, DY = d[0][None], d[1][:, None]
    v = amp * gs
    fi = gc * (amp / (sig * sig))
    J[0] = gc
    J[1] = fi * DX + v * kx
    J[2] = fi * DY + v * ky
    J[3] = fi * (DX * DX + DY * DY) / sig
    np.multiply(v, -DX, out=J[4])
    np.multiply(v, -DY, out=J[5])
    np.negative(v, out=J[6])
    J[7] = r
    out = out.reshape(M, 8, k * k)
    return out @ out.transpose(0, 2, 1)


def _solve(U: np.ndarray) -> np.ndarray:
    """The solutions ``(n, M)`` of the augmented systems ``U = [A | b] (n, n+1, M)``, ``A``
    symmetric positive definite (overwritten): Gaussian elimination without pivoting, vectorized
    over the problems. A zero or non-finite pivot gives a non-finite solution."""
    n = U.shape[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for j in range(n):
            U[j, j + 1:] /= U[j, j]
            U[j + 1:, j + 1:] -= U[j + 1:, j, None] * U[j, None, j + 1:]
        x = U[:, n].copy()
        for i in range(n - 2, -1, -1):
            x[i] -= np.einsum("im,im->m", U[i, i + 1:n], x[i + 1:])
    return x


# --------------------------------------------------------------------------------------------
# the fit


def levenberg_marquardt(w: np.ndarray, p0: np.ndarray, max_iter: int = MAX_ITER, ftol: float = FTOL,
                        bar: np.ndarray | None = None, pool: int = POOL
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit the Gabor model to kernels ``w (M, k, k)`` from the geometries of ``p0 (M, 7)`` (its ``A``
    and ``φ`` are replaced by the best for that geometry); with ``bar (M,)``, a problem whose cost
    after ``SCOUT_ITER`` iterations is above ``SCOUT_MARGIN × bar`` stops there.

    Returns ``(p, cost, iterations)``, ``cost = ½ ‖f(p) − w‖²`` per problem.
    """
    M, k = w.shape[0], w.shape[-1]
    lo, hi = (b[:, None] for b in bounds(k))
    P = np.clip(np.array(p0, dtype=float).T, lo, hi)
    C = np.empty(M)
    IT = np.zeros(M, dtype=int)
    bar = np.full(M, np.inf) if bar is None else np.asarray(bar, dtype=float)
    # the running problems, along the last axis: ids, parameters (7, m), targets (k, k, m), cost,
    # λ, iterations, and [J r]ᵀ[J r] (m, 8, 8) at the parameters
    idx, its = np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    p, t, cost, lam, G = np.zeros((7, 0)), np.zeros((k, k, 0)), np.zeros(0), np.zeros(0), np.zeros((0, 8, 8))
    nxt = 0
    dg = np.arange(7)
    while True:
        free = pool - idx.size
        if nxt < M and (4 * free >= pool or nxt + free >= M):        # refill: a quarter free, or the rest
            new = np.arange(nxt, min(M, nxt + free))
            nxt = new[-1] + 1
            pn, tn = P[:, new], np.ascontiguousarray(w[new].transpose(1, 2, 0), dtype=float)
            rn, cn, aux = _trial(pn, tn)
            Gn = _accept(pn, rn, aux)
            idx, its = np.concatenate([idx, new]), np.concatenate([its, np.zeros(new.size, dtype=int)])
            p, t, cost = np.concatenate([p, pn], axis=1), np.concatenate([t, tn], axis=2), np.concatenate([cost, cn])
            lam, G = np.concatenate([lam, np.full(new.size, LAMBDA0)]), np.concatenate([G, Gn])
        if not idx.size:
            break
        U = G[:, :7].transpose(1, 2, 0).copy()                   # [JᵀJ | Jᵀr] (7, 8, m)
        grad = U[:, 7]
        grad[0] = grad[6] = 0.0                                   # A and φ are at their optimum
        d = U[dg, dg]
        d = np.maximum(d, np.maximum(1e-12 * d.max(axis=0), 1e-30))
        U[dg, dg] += lam * d
        held = ((p <= lo) & (grad > 0)) | ((p >= hi) & (grad < 0))   # at a bound the descent pushes
        if held.any():                                                # outwards: held there
            U[:, :7][held[:, None] | held[None, :]] = 0.0
            U[dg, dg] += held
            grad[held] = 0.0
        step = -_solve(U)
        step[0] = step[6] = 0.0
        pn = np.clip(p + step, lo, hi)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rn, cn, aux = _trial(pn, t)
            ok = cn < cost
            drop = (cost - cn) <= ftol * cost                     # converged: no (or too small a) decrease
            norm = np.sqrt(np.einsum("im,im->m", step, step)), np.sqrt(np.einsum("im,im->m", p[1:6], p[1:6]))
        if ok.any():                                               # the Jacobian only where the step is kept
            o = np.flatnonzero(ok)
            po = pn[:, o]
            G[o] = _accept(po, rn[..., o], tuple(a[..., o] for a in aux))
            p[:, o], cost[o] = po, cn[o]
        lam = np.where(ok, lam * 0.3, lam * 10.0)
        its += 1
        done = ((ok & drop) | (norm[0] <= XTOL * (norm[1] + XTOL)) | ~np.isfinite(step).all(axis=0)
                | (lam > 1e12) | (its >= max_iter) | ((its == SCOUT_ITER) & (cost > SCOUT_MARGIN * bar[idx])))
        if done.any():
            P[:, idx[done]], C[idx[done]], IT[idx[done]] = p[:, done], cost[done], its[done]
            keep = ~done
            idx, its, p, t = idx[keep], its[keep], p[:, keep], t[..., keep]
            cost, lam, G = cost[keep], lam[keep], G[keep]
    return P.T.copy(), C, IT


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
    Z, _ = _taps(p.T, k)                                          # g e^{iψ₀}
    alpha, beta = _linear(Z.real, Z.imag, w.transpose(1, 2, 0))
    amp = np.hypot(alpha, beta)          # w ≈ α g cos ψ₀ + β g sin ψ₀ = A g cos(ψ₀ + φ)
    scale = np.abs(w).reshape(N, k * k).max(axis=1)
    ok = np.isfinite(amp) & (amp > 0)
    p[:, 0] = np.where(ok, amp, np.where(scale > 0, scale, 1.0))
    p[:, 6] = np.where(ok, np.arctan2(-beta, alpha), 0.0)
    return p


def restart_starts(p0: np.ndarray) -> np.ndarray:
    """The two restarts ``(2, N, 7)`` of the starts ``p0 (N, 7)``: the wavevector scaled by
    ``RESTART_K``, then the envelope ``σ = RESTART_SIGMA`` (``A`` and ``φ`` are solved for by the fit)."""
    a, b = p0.copy(), p0.copy()
    a[:, 4:6] *= RESTART_K
    b[:, 3] = RESTART_SIGMA
    return np.stack([a, b])


def fit_gabor_batch(w: np.ndarray, n: int, chunk: int = POOL) -> dict[str, np.ndarray]:
    """Gabor fits of kernels ``w (N, k, k)``: arrays ``(N,)`` of ``k0`` (integer wavenumbers of the
    n-grid), ``orientation`` (degrees in [0, 180) from the kx axis towards ky), ``sigma`` (grid
    spacings), ``phase``, ``amp``, ``rel_residual`` = ‖w − fit‖ / ‖w‖, ``iterations`` (of the start
    kept). ``chunk``: the problems iterated together (:func:`levenberg_marquardt`'s ``pool``)."""
    w = np.asarray(w, dtype=np.float64)
    p0 = starts(w, n)
    p, cost, it = levenberg_marquardt(w, p0, pool=chunk)
    norm2 = np.sum(w * w, axis=(1, 2))
    retry = np.flatnonzero(2 * cost > RETRY ** 2 * norm2)         # a poor fit: two more starts
    if retry.size:
        pr, cr, ir = levenberg_marquardt(np.concatenate([w[retry]] * 2), restart_starts(p0[retry]).reshape(-1, 7),
                                         bar=np.tile(cost[retry], 2), pool=chunk)
        for j in range(2):
            sel = slice(j * retry.size, (j + 1) * retry.size)
            better = cr[sel] < cost[retry]
            p[retry[better]], cost[retry[better]], it[retry[better]] = pr[sel][better], cr[sel][better], ir[sel][better]
    amp, _, _, sig, kx, ky, phi = p.T
    norm = np.sqrt(norm2)
    return {"k0": np.hypot(kx, ky) * n / (2 * np.pi), "orientation": np.degrees(np.mod(np.arctan2(ky, kx), np.pi)),
            "sigma": sig, "phase": phi, "amp": amp, "rel_residual": np.sqrt(2 * cost) / np.where(norm > 0, norm, 1.0),
            "iterations": it.astype(float)}
