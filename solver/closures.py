"""Physics closures of the SGS term Π on LES-grid fields (docs/science.md §7).

All four are eddy-viscosity models of the SGS vorticity flux, σ_i = −ν_e ∂_i ω̄, so that

    Π_model = ∇·(ν_e ∇ω̄)            (same sign convention as the data: ∂ω̄/∂t + J(ψ̄, ω̄) = … + Π)

and ⟨ω̄ Π_model⟩ = −⟨ν_e |∇ω̄|²⟩ ≤ 0 (they only drain enstrophy; T = Π ∇²ω̄ > 0 on average).

- Smagorinsky  ν_e = (C_s Δ)² |S̄|,  |S̄| = sqrt(4 ψ̄_xy² + (ψ̄_xx − ψ̄_yy)²)  (= sqrt(2 S_ij S_ij))
- Leith        ν_e = (C_l Δ)³ |∇ω̄|
- dynamic versions: ν_e = c Δ² |S̄| (c = C_s²) or ν_e = c Δ³ |∇ω̄| (c = C_l³) with ``c`` from the
  Germano identity on the vorticity flux. With a test filter ``^`` of width Δ̂ = ``test_ratio``·Δ
  (Gaussian, G(k) = exp(−|k|² Δ̂² / 24)), u = ψ̄_y, v = −ψ̄_x:

      L_i = (u_i ω̄)^ − û_i ω̂,      M_i = (Δ^a f(ψ̄, ω̄) ∂_i ω̄)^ − Δ̂^a f(ψ̂, ω̂) ∂_i ω̂

  (f = |S|, a = 2 for Smagorinsky; f = |∇ω|, a = 3 for Leith) and the least-squares coefficient
  c = ⟨L_i M_i⟩ / ⟨M_i M_i⟩, **averaged over the whole domain of each snapshot** (the homogeneous
  directions of doubly periodic turbulence), then clipped at c ≥ 0. One c per snapshot.
  The resolved fluxes u_i ω̄ and û_i ω̂ of the Leonard term L_i are *exact* products truncated to
  the LES grid (:func:`exact_product`, 3/2 zero padding), the definition the SGS term Π itself
  uses for J(ψ̄, ω̄) (:mod:`solver.sgs`, docs/science.md §3), so the Germano identity is written
  for the same Π the data hold. The eddy-viscosity fluxes (ν_e ∂_i ω̄: ν_e is not a polynomial of
  the fields) are formed pointwise on the grid, as the models define them.

Every model's Π has the LES Nyquist row and column zero (the convention of the data).

Fields are numpy arrays ``(..., n, n)`` (leading batch dims are carried through) on a periodic
square of side ``L``; derivatives are spectral (numpy rfft2), serial. ``delta`` is the LES filter
width Δ (the store's ``filter_width``).
"""
from __future__ import annotations

import numpy as np

from .filters import GaussianFilter, wavenumbers

MODELS = ("smag", "leith", "dsmag", "dleith")


# --------------------------------------------------------------------------------------------
# spectral helpers


def _k(f: np.ndarray, L: float):
    n = f.shape[-1]
    if f.shape[-2] != n:
        raise ValueError(f"fields must be square (..., n, n), got {f.shape}")
    return wavenumbers(n, L)


def _deriv_k(f: np.ndarray, L: float):
    """Wavenumbers for first derivatives: the Nyquist row/column is zeroed (its derivative is
    not representable as a real field), as is standard for spectral differentiation."""
    kx, ky = _k(f, L)
    n = f.shape[-1]
    if n % 2 == 0:
        kx = kx.copy()
        ky = ky.copy()
        kx[..., n // 2] = 0.0
        ky[n // 2, ...] = 0.0
    return kx, ky


def _irfft(f_hat, n):
    return np.fft.irfft2(f_hat, s=(n, n))


def exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b truncated to the grid of ``a`` and ``b`` ((..., n, n), n even): the product formed on a
    3/2 zero-padded grid, so it has no aliasing for factors without Nyquist content (their
    Nyquist row and column are dropped first); the result's Nyquist row and column are zero."""
    n = a.shape[-1]
    m = 3 * n // 2
    m += m % 2
    h = n // 2

    def pad(f):
        f_hat = np.fft.rfft2(f)
        out = np.zeros(f.shape[:-2] + (m, m // 2 + 1), complex)
        out[..., :h, :h] = f_hat[..., :h, :h]
        out[..., m - h + 1:, :h] = f_hat[..., n - h + 1:, :h]
        return np.fft.irfft2(out * (m / n) ** 2, s=(m, m))

    p_hat = np.fft.rfft2(pad(a) * pad(b))
    out = np.zeros(a.shape[:-2] + (n, h + 1), complex)
    out[..., :h, :h] = p_hat[..., :h, :h]
    out[..., n - h + 1:, :h] = p_hat[..., m - h + 1:, :h]
    return _irfft(out * (n / m) ** 2, n)


def nyquist_free(f: np.ndarray) -> np.ndarray:
    """``f`` with its Nyquist row and column removed (the LES data convention)."""
    n = f.shape[-1]
    f_hat = np.fft.rfft2(f)
    f_hat[..., n // 2, :] = 0
    f_hat[..., :, n // 2] = 0
    return _irfft(f_hat, n)


def gradient(f: np.ndarray, L: float) -> tuple[np.ndarray, np.ndarray]:
    """(∂f/∂x, ∂f/∂y) of a periodic field (x = last axis, y = second to last)."""
    kx, ky = _deriv_k(f, L)
    f_hat = np.fft.rfft2(f)
    n = f.shape[-1]
    return _irfft(1j * kx * f_hat, n), _irfft(1j * ky * f_hat, n)


def laplacian(f: np.ndarray, L: float) -> np.ndarray:
    kx, ky = _k(f, L)
    return _irfft(-(kx ** 2 + ky ** 2) * np.fft.rfft2(f), f.shape[-1])


def divergence(fx: np.ndarray, fy: np.ndarray, L: float) -> np.ndarray:
    kx, ky = _deriv_k(fx, L)
    return _irfft(1j * kx * np.fft.rfft2(fx) + 1j * ky * np.fft.rfft2(fy), fx.shape[-1])


def gaussian_filter(f: np.ndarray, L: float, width: float) -> np.ndarray:
    """Gaussian filter on the same grid, G(k) = exp(−|k|² width² / 24) (:class:`solver.filters.GaussianFilter`)."""
    kx, ky = _k(f, L)
    return _irfft(GaussianFilter(width).apply(np.fft.rfft2(f), kx, ky), f.shape[-1])


def strain_rate(psi: np.ndarray, L: float) -> np.ndarray:
    """|S| = sqrt(4 ψ_xy² + (ψ_xx − ψ_yy)²) of the velocity (u, v) = (ψ_y, −ψ_x)."""
    kx, ky = _deriv_k(psi, L)
    p = np.fft.rfft2(psi)
    n = psi.shape[-1]
    pxy, pxx, pyy = (_irfft(-a * p, n) for a in (kx * ky, kx * kx, ky * ky))
    return np.sqrt(4 * pxy ** 2 + (pxx - pyy) ** 2)


def vorticity_gradient_norm(omega: np.ndarray, L: float) -> np.ndarray:
    wx, wy = gradient(omega, L)
    return np.sqrt(wx ** 2 + wy ** 2)


def eddy_viscosity_pi(nu_e: np.ndarray, omega: np.ndarray, L: float) -> np.ndarray:
    """Π = ∇·(ν_e ∇ω): the SGS term of an eddy viscosity ν_e (pointwise field or scalar), with
    the Nyquist row and column zero."""
    wx, wy = gradient(omega, L)
    return nyquist_free(divergence(nu_e * wx, nu_e * wy, L))


# --------------------------------------------------------------------------------------------
# static models


def _scale(kind: str, psi, omega, L) -> tuple[np.ndarray, int]:
    """f and the power a of Δ in ν_e = c Δ^a f."""
    if kind == "smag":
        return strain_rate(psi, L), 2
    if kind == "leith":
        return vorticity_gradient_norm(omega, L), 3
    raise ValueError(f"kind = {kind!r}: must be smag or leith")


def smagorinsky(psi: np.ndarray, omega: np.ndarray, L: float, delta: float, cs: float = 0.17) -> np.ndarray:
    """Π of the Smagorinsky model, ν_e = (C_s Δ)² |S̄|."""
    return eddy_viscosity_pi((cs * delta) ** 2 * strain_rate(psi, L), omega, L)


def leith(psi: np.ndarray, omega: np.ndarray, L: float, delta: float, cl: float = 0.17) -> np.ndarray:
    """Π of the Leith model, ν_e = (C_l Δ)³ |∇ω̄| (``psi`` unused, kept for one signature)."""
    return eddy_viscosity_pi((cl * delta) ** 3 * vorticity_gradient_norm(omega, L), omega, L)


# --------------------------------------------------------------------------------------------
# dynamic models


def dynamic_coefficient(kind: str, psi: np.ndarray, omega: np.ndarray, L: float, delta: float,
                        test_ratio: float = 2.0, clip: bool = True) -> np.ndarray:
    """Germano least-squares coefficient c (≥ 0), one per snapshot: shape ``psi.shape[:-2]``.

    ``kind`` is ``"smag"`` (c = C_s²) or ``"leith"`` (c = C_l³); see the module docstring.
    ``clip=False`` returns the raw least-squares value (may be negative).
    """
    dhat = test_ratio * delta
    tf = lambda f: gaussian_filter(f, L, dhat)  # noqa: E731 - the test filter ^
    px, py = gradient(psi, L)
    u, v = py, -px
    psi_t, omega_t = tf(psi), tf(omega)
    pxt, pyt = gradient(psi_t, L)
    ut, vt = pyt, -pxt
    lx = tf(exact_product(u, omega)) - exact_product(ut, omega_t)
    ly = tf(exact_product(v, omega)) - exact_product(vt, omega_t)
    f, a = _scale(kind, psi, omega, L)
    f_t, _ = _scale(kind, psi_t, omega_t, L)
    wx, wy = gradient(omega, L)
    wxt, wyt = gradient(omega_t, L)
    mx = tf(delta ** a * f * wx) - dhat ** a * f_t * wxt
    my = tf(delta ** a * f * wy) - dhat ** a * f_t * wyt
    num = (lx * mx + ly * my).mean(axis=(-2, -1))
    den = (mx * mx + my * my).mean(axis=(-2, -1))
    c = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.maximum(c, 0.0) if clip else c


def _dynamic(kind, psi, omega, L, delta, test_ratio, return_coeff):
    c = dynamic_coefficient(kind, psi, omega, L, delta, test_ratio)
    f, a = _scale(kind, psi, omega, L)
    pi = eddy_viscosity_pi(np.asarray(c)[..., None, None] * delta ** a * f, omega, L)
    return (pi, c) if return_coeff else pi


def dynamic_smagorinsky(psi, omega, L, delta, test_ratio: float = 2.0, return_coeff: bool = False):
    """Π of the dynamic Smagorinsky model (and c = C_s² per snapshot if ``return_coeff``)."""
    return _dynamic("smag", psi, omega, L, delta, test_ratio, return_coeff)


def dynamic_leith(psi, omega, L, delta, test_ratio: float = 2.0, return_coeff: bool = False):
    """Π of the dynamic Leith model (and c = C_l³ per snapshot if ``return_coeff``)."""
    return _dynamic("leith", psi, omega, L, delta, test_ratio, return_coeff)


def predict(model: str, psi, omega, L: float, delta: float, cs: float = 0.17, cl: float = 0.17,
            test_ratio: float = 2.0) -> np.ndarray:
    """Π of the closure named ``model`` (one of :data:`MODELS`)."""
    if model == "smag":
        return smagorinsky(psi, omega, L, delta, cs)
    if model == "leith":
        return leith(psi, omega, L, delta, cl)
    if model == "dsmag":
        return dynamic_smagorinsky(psi, omega, L, delta, test_ratio)
    if model == "dleith":
        return dynamic_leith(psi, omega, L, delta, test_ratio)
    raise ValueError(f"closure {model!r}: must be one of {', '.join(MODELS)}")
