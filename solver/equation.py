"""The vorticity equation of forced 2D turbulence in Fourier space (REFERENCE.md §1).

    ∂ω/∂t + J(ψ, ω) = ν ∇²ω − μ ω − β v + (−1)^(p+1) ν_p ∇^(2p) ω + F + E(ω, t),   ∇²ψ = −ω

with ν = 1/Re, u = ∂ψ/∂y, v = −∂ψ/∂x, J(ψ, ω) = u ∂ω/∂x + v ∂ω/∂y and E an optional explicit extra
term (e.g. an SGS closure Π̂ for LES). In Fourier space the linear terms are diagonal:

    ∂ω̂/∂t = L ω̂ + N(ω̂, t),   L = −ν k² − μ − ν_p k^(2p) + i β k_x / k²,   N = −Ĵ + F̂ + Ê

(the β term −βv = −β(−∂ψ/∂x) is linear and diagonal, so it is integrated with L). Time steppers
(:mod:`solver.stepping`) treat L implicitly/exactly and N explicitly.

    >>> from solver import Grid, Parameters, Equation, make_forcing
    >>> g = Grid(64)
    >>> eq = Equation(g, Parameters(re=1000, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from suite.errors import ConfigError

from .grid import DEALIAS_RULES, Grid

JACOBIANS = ("advective", "average")


@dataclass(frozen=True)
class Parameters:
    """Physical parameters: Reynolds number (ν = 1/re; ``math.inf`` = inviscid), linear drag
    ``mu``, β-plane ``beta``, hyperviscosity coefficient ``hyperviscosity`` (ν_p) and order
    ``hyper_order`` (p in (−1)^(p+1) ν_p ∇^(2p))."""

    re: float = math.inf
    mu: float = 0.0
    beta: float = 0.0
    hyperviscosity: float = 0.0
    hyper_order: int = 2

    def __post_init__(self):
        def bad(name, value, accepted):
            raise ConfigError(f"{name} = {value!r}: must be {accepted}", field=name)
        if not isinstance(self.re, (int, float)) or not self.re > 0 or math.isnan(self.re):
            bad("re", self.re, "> 0 (math.inf for inviscid)")
        for name in ("mu", "hyperviscosity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(name, v, "a finite number >= 0")
        if not isinstance(self.beta, (int, float)) or not math.isfinite(self.beta):
            bad("beta", self.beta, "a finite number")
        if not isinstance(self.hyper_order, int) or not 1 <= self.hyper_order <= 8:
            bad("hyper_order", self.hyper_order, "an integer in [1, 8]")

    @property
    def nu(self) -> float:
        return 0.0 if math.isinf(self.re) else 1.0 / self.re

    @classmethod
    def from_system(cls, system) -> "Parameters":
        """From a :class:`suite.config.System` (or any object with the same attributes)."""
        return cls(re=system.re, mu=system.mu, beta=system.beta, hyperviscosity=system.hyperviscosity,
                   hyper_order=system.hyper_order)

    def to_dict(self) -> dict:
        return asdict(self) | {"nu": self.nu}


class Equation:
    """The right-hand side ``L ω̂ + N(ω̂, t)`` on a :class:`~solver.grid.Grid`.

    ``forcing``: a steady forcing from :func:`solver.forcing.make_forcing` (its ``hat`` array is
    added to N) or a stochastic one (applied by the stepper as a white-in-time increment), or None.
    ``dealias``: "2/3" (default; 5 real FFTs per evaluation), "3/2" (zero padding; serial only) or
    "none". ``jacobian``: "advective" (u·∇ω) or "average" (the paper's mean of u·∇ω and ∇·(uω)).
    ``extra``: optional callable ``extra(omega_hat, t) -> spectral array`` added to N.
    """

    def __init__(self, grid: Grid, params: Parameters, forcing=None, dealias: str = "2/3",
                 jacobian: str = "advective", extra: Callable | None = None):
        if dealias not in DEALIAS_RULES:
            raise ConfigError(f"dns.dealias = {dealias!r}: must be one of {', '.join(DEALIAS_RULES)}",
                              field="dns.dealias")
        if jacobian not in JACOBIANS:
            raise ConfigError(f"dns.jacobian = {jacobian!r}: must be one of {', '.join(JACOBIANS)}",
                              field="dns.jacobian")
        be = grid.backend
        if dealias == "3/2" and be.comm is not None and be.comm.Get_size() > 1:
            raise NotImplementedError("dns.dealias = '3/2' (zero padding) is serial only; use '2/3' under MPI")
        self.grid, self.params, self.forcing = grid, params, forcing
        self.dealias, self.jacobian, self.extra = dealias, jacobian, extra
        self.backend = be
        g = grid.np
        nu, mu, nuh, p = params.nu, params.mu, params.hyperviscosity, params.hyper_order
        lin = -(nu * g["k2"] + mu + nuh * g["k2"] ** p) + 1j * params.beta * g["kx"] * g["inv_k2"]
        lin = lin * g["nyquist_free"]  # Nyquist modes carry nothing
        self.linear_np = np.broadcast_to(lin, be.spectral_shape).copy()
        self.linear = be.asarray(self.linear_np, complex=True)
        mask = g["dealias"] if dealias == "2/3" else g["nyquist_free"]
        # the mean vorticity is zero on a periodic domain: k = 0 is masked too (no rounding drift)
        self.mask_np = np.broadcast_to(mask * (g["k2"] > 0), be.spectral_shape).astype(float)
        self.mask = be.asarray(self.mask_np)
        steady = getattr(forcing, "hat", None)
        self.forcing_hat = None if steady is None else be.asarray(steady * self.mask_np, complex=True)
        self._blocks = self._kept_blocks()
        self._work = {}
        self._pad = None

    # ------------------------------------------------------------------------------------------
    # fields

    def psi_hat(self, omega_hat):
        return omega_hat * self.grid.inv_k2

    def velocity_hat(self, omega_hat):
        """(û, v̂) = (i k_y ψ̂, −i k_x ψ̂)."""
        psi = self.psi_hat(omega_hat)
        return 1j * self.grid.ky * psi, -1j * self.grid.kx * psi

    @property
    def stochastic(self):
        """The stochastic forcing (applied by the stepper) or None."""
        return self.forcing if getattr(self.forcing, "stochastic", False) else None

    # ------------------------------------------------------------------------------------------
    # the nonlinear term

    def _kept_blocks(self):
        """(row slice, column slice) blocks of the local spectral array holding every mode the
        output mask keeps: the 2/3 rule keeps max(|kx|, |ky|) <= kmax, two row blocks x the first
        columns. Elementwise spectral work is done on these views only."""
        n = self.grid.n
        ncol = self.backend.spectral_shape[1]
        if self.dealias != "2/3":
            return [(slice(0, n), slice(0, ncol))]
        kmax = self.grid.kmax_dealias
        kxi = self.grid.np["kxi"].ravel()
        cols = np.nonzero(kxi <= kmax)[0]
        if cols.size == 0:
            return []
        c = slice(int(cols[0]), int(cols[-1]) + 1)
        return [(slice(0, kmax + 1), c), (slice(n - kmax, n), c)]

    def _workspace(self, batch):
        key = tuple(batch)
        if key in self._work:
            return self._work[key]
        be, g = self.backend, self.grid
        scale = 1.0 / (g.n * g.n)  # the planned inverse is unnormalised
        ik = {"u": 1j * g.np["ky"] * g.np["inv_k2"], "v": -1j * g.np["kx"] * g.np["inv_k2"],
              "wx": 1j * g.np["kx"], "wy": 1j * g.np["ky"]}
        ops = {k: be.asarray(np.broadcast_to(v * self.mask_np * scale, be.spectral_shape), complex=True)
               for k, v in ik.items()}
        spec = {k: be.zeros_spectral(batch) for k in ik}
        phys = {k: be.zeros_physical(batch) for k in ik}
        # the 2/3 rule zeroes every column kx > kmax: the transforms may skip them
        kx_stop = g.kmax_dealias + 1 if self.dealias == "2/3" else None
        inv = {k: be.plan_irfft2(spec[k], phys[k], kx_stop=kx_stop) for k in ik}
        j_hat = be.zeros_spectral(batch)
        fwd = be.plan_rfft2(phys["u"], j_hat, kx_stop=kx_stop)
        neg_mask = be.asarray(-self.mask_np, complex=True)
        ws = dict(ops=ops, spec=spec, phys=phys, inv=inv, fwd=fwd, j_hat=j_hat, neg_mask=neg_mask)
        self._work[key] = ws
        return ws

    def _zero_outside(self, a):
        """Zero a spectral buffer outside the kept blocks (the planned inverse destroys input;
        a backend that ``skips_kx`` leaves the columns above the kept ones alone, and they are
        zero from the start)."""
        if self.dealias != "2/3":
            return
        n, kmax = self.grid.n, self.grid.kmax_dealias
        if not self._blocks:
            if not self.backend.skips_kx:
                a[...] = 0
            return
        c = self._blocks[0][1]
        a[..., kmax + 1:n - kmax, c] = 0
        if not self.backend.skips_kx:
            a[..., :, c.stop:] = 0
        a[..., :, :c.start] = 0

    def jacobian_hat(self, omega_hat, out=None):
        """Ĵ(ψ, ω), masked by the dealiasing rule (the transport term, without the minus sign)."""
        if self.dealias == "3/2":
            res = self._jacobian_padded(omega_hat)
        elif self.jacobian == "average":
            res = self._jacobian_average(omega_hat)
        else:
            ws = self._workspace(omega_hat.shape[:-2])
            self._advective_products(omega_hat, ws)
            res = ws["j_hat"]
            res = res * self.mask
        if out is None:
            return res
        out[...] = res
        return out

    def _advective_products(self, omega_hat, ws):
        """The 4 planned inverse FFTs and the product u ω_x + v ω_y, then the planned forward FFT
        into ``ws['j_hat']`` (unmasked). 5 real FFTs."""
        xp = self.backend.xp
        for k in ("u", "v", "wx", "wy"):
            s, op = ws["spec"][k], ws["ops"][k]
            for r, c in self._blocks:
                xp.multiply(omega_hat[..., r, c], op[r, c], out=s[..., r, c])
            self._zero_outside(s)
            ws["inv"][k]()
        p = ws["phys"]
        xp.multiply(p["u"], p["wx"], out=p["u"])
        xp.multiply(p["v"], p["wy"], out=p["v"])
        xp.add(p["u"], p["v"], out=p["u"])
        ws["fwd"]()

    def _jacobian_average(self, omega_hat):
        """½ (u·∇ω + ∇·(u ω)), both from the same physical fields; masked."""
        be, g = self.backend, self.grid
        uh, vh = self.velocity_hat(omega_hat)
        u, v = be.irfft2(uh * g.nyquist_free), be.irfft2(vh * g.nyquist_free)
        w = be.irfft2(omega_hat * g.nyquist_free)
        wx = be.irfft2(1j * g.kx * omega_hat * g.nyquist_free)
        wy = be.irfft2(1j * g.ky * omega_hat * g.nyquist_free)
        adv = be.rfft2(u * wx + v * wy)
        cons = 1j * g.kx * be.rfft2(u * w) + 1j * g.ky * be.rfft2(v * w)
        return 0.5 * (adv + cons) * self.mask

    def _jacobian_padded(self, omega_hat):
        """3/2 zero padding: transforms on an m = 3n/2 grid, product there, truncation back."""
        from .fft import make_backend
        be, g, n = self.backend, self.grid, self.grid.n
        m = 3 * n // 2
        m += m % 2
        if self._pad is None:
            self._pad = make_backend(m, backend=be.name, dtype=be.dtype_name,
                                     device=be.device if be.name == "torch" else "cpu", threads=be.threads)
        pb = self._pad
        h = n // 2
        fac = (m / n) ** 2

        def pad(a):
            out = pb.zeros_spectral(a.shape[:-2])
            out[..., :h, :h] = a[..., :h, :h]
            out[..., m - h + 1:, :h] = a[..., n - h + 1:, :h]
            return out * fac

        def trunc(a):
            out = be.zeros_spectral(a.shape[:-2])
            out[..., :h, :h] = a[..., :h, :h]
            out[..., n - h + 1:, :h] = a[..., m - h + 1:, :h]
            return out / fac

        uh, vh = self.velocity_hat(omega_hat)
        u, v = pb.irfft2(pad(uh)), pb.irfft2(pad(vh))
        if self.jacobian == "average":
            w = pb.irfft2(pad(omega_hat))
            wx = pb.irfft2(pad(1j * g.kx * omega_hat))
            wy = pb.irfft2(pad(1j * g.ky * omega_hat))
            adv = trunc(pb.rfft2(u * wx + v * wy))
            cons = 1j * g.kx * trunc(pb.rfft2(u * w)) + 1j * g.ky * trunc(pb.rfft2(v * w))
            return 0.5 * (adv + cons) * self.mask
        wx = pb.irfft2(pad(1j * g.kx * omega_hat))
        wy = pb.irfft2(pad(1j * g.ky * omega_hat))
        return trunc(pb.rfft2(u * wx + v * wy)) * self.mask

    # ------------------------------------------------------------------------------------------
    # the explicit tendency N and the full right-hand side

    def nonlinear(self, omega_hat, t: float, out=None):
        """N = −Ĵ + F̂ + Ê(ω̂, t) (the explicit part), written into ``out`` if given.

        With the 2/3 rule only the modes the rule keeps are written: entries of ``out`` outside
        them must be zero already (allocate it with ``backend.zeros_spectral``). Stochastic forcing
        is not part of N (the stepper adds its increments)."""
        xp = self.backend.xp
        if out is None:
            out = self.backend.zeros_spectral(omega_hat.shape[:-2])
        if self.dealias == "3/2" or self.jacobian == "average":
            out[...] = -self.jacobian_hat(omega_hat)
        else:
            ws = self._workspace(omega_hat.shape[:-2])
            self._advective_products(omega_hat, ws)
            for r, c in self._blocks:
                xp.multiply(ws["j_hat"][..., r, c], ws["neg_mask"][r, c], out=out[..., r, c])
        if self.forcing_hat is not None:
            for r, c in self._blocks:
                xp.add(out[..., r, c], self.forcing_hat[r, c], out=out[..., r, c])
        if self.extra is not None:
            xp.add(out, self.extra(omega_hat, t), out=out)
        return out

    def rhs(self, omega_hat, t: float):
        """∂ω̂/∂t without stochastic forcing: L ω̂ + N(ω̂, t)."""
        return self.linear * omega_hat + self.nonlinear(omega_hat, t)

    def describe(self) -> dict:
        f = self.forcing.describe() if self.forcing is not None else {"forcing": "none"}
        return self.params.to_dict() | f | {"dealias": self.dealias, "jacobian": self.jacobian,
                                            "extra": self.extra is not None}
