"""The vorticity equation of forced 2D turbulence in Fourier space (docs/science.md §1).

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

from .errors import ParameterError

from .backends import make_backend
from .fastpath import FastPath
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
            raise ParameterError(f"{name} = {value!r}: must be {accepted}", name=name)
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
            raise ParameterError(f"dealias = {dealias!r}: must be one of {', '.join(DEALIAS_RULES)}",
                              name="dealias")
        if jacobian not in JACOBIANS:
            raise ParameterError(f"jacobian = {jacobian!r}: must be one of {', '.join(JACOBIANS)}",
                              name="jacobian")
        be = grid.backend
        if dealias == "3/2" and be.comm is not None and be.comm.Get_size() > 1:
            raise ParameterError("dealias = '3/2': zero padding is serial only; use '2/3' under MPI",
                                 name="dealias")
        self.grid, self.params, self.forcing = grid, params, forcing
        self.dealias, self.jacobian, self.extra = dealias, jacobian, extra
        self.backend = be
        g = grid.host
        nu, mu, nuh, p = params.nu, params.mu, params.hyperviscosity, params.hyper_order
        lin = -(nu * g.k2 + mu + nuh * g.k2 ** p) + 1j * params.beta * g.kx * g.inv_k2
        lin = lin * g.nyquist_free  # Nyquist modes carry nothing
        # L: a host copy (complex128, local spectral shape; steppers build their coefficients from
        # it) and the backend array
        self.linear_host = np.broadcast_to(lin, be.spectral_shape).copy()
        self.linear = be.asarray(self.linear_host, complex=True)
        # the modes the rule keeps (k = 0 masked too: the mean vorticity is zero, no rounding drift)
        self.mask_host = grid.mask(dealias, host=True)
        self.mask = be.asarray(self.mask_host)
        steady = getattr(forcing, "hat", None)
        self.forcing_hat_host = None if steady is None else np.broadcast_to(steady * self.mask_host,
                                                                            be.spectral_shape)
        self.forcing_hat = None if steady is None else be.asarray(self.forcing_hat_host, complex=True)
        self.fast = FastPath(self)  # the hot loop: blocks, runners, planned workspaces
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
    # the stepper contract's hot-loop hooks (solver.fastpath)

    @property
    def kernels(self):
        """The elementwise kernels (:mod:`solver.kernels`) of the pieces of :meth:`update_runner`."""
        return self.fast.ops

    def update_runner(self, batch=()):
        """The :class:`~solver.workers.BlockRunner` a stepper updates ω̂ through (arrays with leading
        dims ``batch``): ``runner(fn)`` calls ``fn(rows, cols)`` on pieces covering every kept mode
        (:meth:`solver.fastpath.FastPath.update_runner`)."""
        return self.fast.update_runner(batch)

    # ------------------------------------------------------------------------------------------
    # the Jacobian

    def jacobian_hat(self, omega_hat, out=None):
        """Ĵ(ψ, ω), masked by the dealiasing rule (the transport term, without the minus sign).

        The advective form under the 2/3 rule or none is the planned hot loop
        (:meth:`solver.fastpath.NonlinearPlan.jacobian`: the same products, 5 real FFTs); the
        average form and 3/2 zero padding are formed here as written."""
        if self.dealias == "3/2":
            res = self._jacobian_padded(omega_hat)
        elif self.jacobian == "average":
            res = self._jacobian_average(omega_hat)
        else:
            res = self.fast.plan(omega_hat.shape[:-2]).jacobian(omega_hat) * self.mask
        if out is None:
            return res
        out[...] = res
        return out

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

    def nonlinear(self, omega_hat, t: float, out=None, then=None):
        """N = −Ĵ + F̂ + Ê(ω̂, t) (the explicit part), written into ``out`` if given.

        With the 2/3 rule only the modes the rule keeps are written: entries of ``out`` outside
        them must be zero already (allocate it with ``backend.zeros_spectral``). Stochastic forcing
        is not part of N (the stepper adds its increments).

        ``then``: an optional ``fn(rows, cols)`` over the pieces of :meth:`update_runner` (batch
        of ``omega_hat``), called on each piece of ``out`` as soon as it is final, while it is
        still in cache (a stepper's update); without an ``extra`` term it runs in the same round,
        else after it."""
        batch = omega_hat.shape[:-2]
        if out is None:
            out = self.backend.zeros_spectral(batch)
        fused = then is not None and self.extra is None
        if self.dealias == "3/2" or self.jacobian == "average":
            out[...] = -self.jacobian_hat(omega_hat)
            if self.forcing_hat is not None:
                self.fast.add_on_blocks(out, self.forcing_hat)
            fused = False
        else:
            self.fast.plan(batch).minus_jacobian(omega_hat, out, then if fused else None)
        if self.extra is not None:
            self.backend.xp.add(out, self.extra(omega_hat, t), out=out)
        if then is not None and not fused:
            self.update_runner(batch)(then)
        return out

    def rhs(self, omega_hat, t: float):
        """∂ω̂/∂t without stochastic forcing: L ω̂ + N(ω̂, t)."""
        return self.linear * omega_hat + self.nonlinear(omega_hat, t)

    def describe(self) -> dict:
        f = self.forcing.describe() if self.forcing is not None else {"forcing": "none"}
        return self.params.to_dict() | f | {"dealias": self.dealias, "jacobian": self.jacobian,
                                            "extra": self.extra is not None}
