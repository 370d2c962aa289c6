"""Diagnostics of a vorticity field: integrals, spectra, fluxes, budget terms and the CFL number.

All quantities are domain averages (per unit area) and come back per ensemble member (numpy
arrays with the batch shape; floats for an unbatched field). Global sums go through
``backend.allsum`` / ``backend.allmax``, so every MPI rank returns identical numbers.

With f̂ in numpy's rfft2 scale, <f g> = Σ_full Re(f̂* ĝ) / n⁴ = Σ_half w Re(f̂* ĝ) / n⁴ with the
Hermitian weights w of :class:`~solver.grid.Grid`. So, with ψ̂ = ω̂/k²,

    E = ½<u² + v²> = Σ w |ω̂|²/k² / (2n⁴),   Z = ½<ω²> = Σ w |ω̂|² / (2n⁴),   P = ½<|∇ω|²>.

Budgets (exact for the continuous-time equation): dE/dt = injection − viscous − hyperviscous −
drag (+ extra term), the nonlinear transfer summing to zero; likewise dZ/dt (β conserves both).
"""
from __future__ import annotations

import numpy as np

from . import spectra


def _reduce(grid, density):
    """Σ over the local half spectrum (weights applied), allsum over ranks -> numpy per member."""
    be = grid.backend
    s = be.xp.sum(density * grid.weights, axis=(-2, -1))
    s = be.to_numpy(s)
    s = be.allsum(np.asarray(s, dtype=float))
    return s / grid.n**4


def _out(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def _abs2(be, a):
    return be.xp.real(a) ** 2 + be.xp.imag(a) ** 2


def energy(grid, omega_hat):
    """E = ½ <u² + v²>."""
    return _out(_reduce(grid, _abs2(grid.backend, omega_hat) * grid.inv_k2) / 2)


def enstrophy(grid, omega_hat):
    """Z = ½ <ω²>."""
    return _out(_reduce(grid, _abs2(grid.backend, omega_hat)) / 2)


def palinstrophy(grid, omega_hat):
    """P = ½ <|∇ω|²>."""
    return _out(_reduce(grid, _abs2(grid.backend, omega_hat) * grid.k2) / 2)


def shell_sum(grid, density):
    """Σ over each integer shell κ = 0, 1, … (|k| L/2π in [κ − ½, κ + ½), corners beyond n/2
    included: :mod:`solver.spectra`) of a local spectral density (weights applied, divided by n⁴),
    allsum over ranks. Returns (κ·2π/L, values[..., shells]); Σ over shells = the domain average."""
    be, h = grid.backend, grid.host
    idx = np.broadcast_to(spectra.shell_index(h.kxi, h.kyi), be.spectral_shape)
    nsh = spectra.shell_count(grid.n)
    out = spectra.shell_sum(be.to_numpy(density * grid.weights), idx, nsh)
    out = be.allsum(out.reshape(-1, nsh)).reshape(out.shape) / grid.n**4
    return np.arange(nsh) * grid.kscale, out


def energy_spectrum(grid, omega_hat):
    """(k, E(k)) with Σ_k E(k) = E (shell sums; divide by 2π/L for a density in k)."""
    k, s = shell_sum(grid, _abs2(grid.backend, omega_hat) * grid.inv_k2 / 2)
    return k, s


def enstrophy_spectrum(grid, omega_hat):
    """(k, Z(k)) with Σ_k Z(k) = Z."""
    return shell_sum(grid, _abs2(grid.backend, omega_hat) / 2)


def transfer(grid, equation, omega_hat):
    """Nonlinear transfer spectra (k, T_E(k), T_Z(k)): the rate of change of E(k), Z(k) due to
    −J(ψ, ω). Each sums to zero (to rounding) with dealiasing."""
    be = grid.backend
    nl = -equation.jacobian_hat(omega_hat)
    prod = be.xp.real(be.xp.conj(omega_hat) * nl)
    k, tz = shell_sum(grid, prod)
    _, te = shell_sum(grid, prod * grid.inv_k2)
    return k, te, tz


def fluxes(grid, equation, omega_hat):
    """Spectral fluxes (k, Π_E(k), Π_Z(k)) through wavenumber k: Π(k) = −Σ_{κ<=k} T(κ).
    Positive Π_Z is a forward (downscale) enstrophy cascade; negative Π_E an inverse energy one."""
    k, te, tz = transfer(grid, equation, omega_hat)
    return k, -np.cumsum(te, axis=-1), -np.cumsum(tz, axis=-1)


def budget(grid, equation, omega_hat, t: float = 0.0) -> dict:
    """Energy and enstrophy budget terms (rates, per unit area) of the equation at ``omega_hat``:

    ``injection_E/Z`` (steady forcing; the stochastic forcing's mean injection is ``eps``),
    ``viscous_E/Z`` (ν), ``hyperviscous_E/Z`` (ν_p), ``drag_E/Z`` (μ), ``extra_E/Z`` (the explicit
    extra term, e.g. an SGS closure; 0 without one), ``nonlinear_E/Z`` (should vanish) and
    ``dEdt``/``dZdt`` = injection + extra + nonlinear − viscous − hyperviscous − drag."""
    be, p = grid.backend, equation.params
    a2 = _abs2(be, omega_hat)
    k2 = grid.k2
    out = {}
    visc = p.nu * k2
    hyp = p.hyperviscosity * k2 ** p.hyper_order
    for name, fac in (("viscous", visc), ("hyperviscous", hyp), ("drag", p.mu + 0 * k2)):
        out[f"{name}_E"] = _reduce(grid, a2 * fac * grid.inv_k2)
        out[f"{name}_Z"] = _reduce(grid, a2 * fac)

    def rates(term):
        if term is None:
            return np.zeros_like(out["drag_E"]), np.zeros_like(out["drag_E"])
        pr = be.xp.real(be.xp.conj(omega_hat) * term)
        return _reduce(grid, pr * grid.inv_k2), _reduce(grid, pr)

    out["injection_E"], out["injection_Z"] = rates(equation.forcing_hat)
    extra = None if equation.extra is None else equation.extra(omega_hat, t)
    out["extra_E"], out["extra_Z"] = rates(extra)
    out["nonlinear_E"], out["nonlinear_Z"] = rates(-equation.jacobian_hat(omega_hat))
    for q in ("E", "Z"):
        out[f"d{q}dt"] = (out[f"injection_{q}"] + out[f"extra_{q}"] + out[f"nonlinear_{q}"]
                          - out[f"viscous_{q}"] - out[f"hyperviscous_{q}"] - out[f"drag_{q}"])
    return {k: _out(v) for k, v in out.items()}


def max_velocity(grid, omega_hat):
    """(max|u|, max|v|) over the domain, per member (allmax over ranks)."""
    be = grid.backend
    out = []
    for comp in (1j * grid.ky * grid.inv_k2, -1j * grid.kx * grid.inv_k2):
        f = be.irfft2(omega_hat * comp)
        m = be.to_numpy(be.xp.amax(be.xp.abs(f), axis=(-2, -1)))
        out.append(_out(be.allmax(np.asarray(m, dtype=float))))
    return tuple(out)


def cfl(grid, omega_hat, dt: float):
    """CFL number (max|u| + max|v|) dt / dx, per member; NaN if the field is not finite."""
    umax, vmax = max_velocity(grid, omega_hat)
    return _out((np.asarray(umax) + np.asarray(vmax)) * dt / grid.dx)


def is_finite(grid, omega_hat) -> bool:
    """Whether every rank's field is finite (one global reduction)."""
    be = grid.backend
    bad = 0.0 if bool(be.xp.all(be.xp.isfinite(omega_hat))) else 1.0
    return float(be.allmax(np.asarray(bad))) == 0.0
