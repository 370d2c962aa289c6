"""The SGS term of the filtered equation, computed from the DNS spectral state (docs/science.md §3).

Filtering the vorticity equation and moving the unclosed term to the right-hand side,

    ∂ω̄/∂t + J(ψ̄, ω̄) = ν∇²ω̄ − μω̄ − βv̄ + F̄ + Π,      Π = J(ψ̄, ω̄) − \\overline{J(ψ, ω)}

(Π is *added* on the right of the LES equation). Here ¯ is the filter (:mod:`solver.filters`)
followed by coarse-graining to the LES grid.

How :class:`FDNSSampler` evaluates it, from the DNS spectral vorticity ω̂ (local kx columns under
MPI, leading member dimensions allowed):

1. \\overline{J(ψ, ω)}: the DNS solver's own Jacobian on the DNS grid
   (:meth:`solver.equation.Equation.jacobian_hat`: same dealiasing rule and Jacobian form as the
   DNS), filtered and coarse-grained;
2. ω̄ = coarse(G ω̂) and ψ̄ = ω̄ / k² on the LES grid (identical to coarse(G ψ̂): G, truncation
   and 1/k² are all diagonal). Coarse-graining leaves the LES Nyquist row and column zero;
3. J(ψ̄, ω̄): the **exact** product of the LES fields, truncated to the LES grid
   (:func:`les_equation`: 3/2 zero padding, :data:`LES_JACOBIAN`), whatever the DNS's own
   dealiasing rule. For fields without Nyquist content the padded product has no aliasing, so
   every LES mode below Nyquist carries the exact J(ψ̄, ω̄). A 2/3-truncated LES Jacobian would
   instead make Π = −\\overline{J} in the top third of the LES band (a resolved quantity);
4. Π̂ = Ĵ(ψ̄, ω̄) − \\overline{J}̂, with the LES Nyquist row and column zero, and the fields back
   to physical space on the LES grid.

The online LES (:mod:`suite.online`, :func:`suite.les.build_les`) uses the same
:func:`les_equation` and evolves every LES mode below Nyquist, so an LES driven by the true Π
reproduces the filtered DNS tendency in every such mode.

Diagnostics of the enstrophy transfer T = Π ∇²ω̄ (T > 0: diffusion / forward transfer, T < 0:
backscatter): ``backscatter`` = the fraction of LES grid points with T < 0, ``transfer`` = <T>.

Under MPI every rank of a member's group calls the sampler (the DNS Jacobian is collective); the
LES pieces are gathered on the group root, which alone gets the result (others get None).

Benchmarks time :func:`fdns_sample` after :func:`make_sampler`:

    >>> sampler, omega_hat = make_sampler(n_dns=256, n_les=32)
    >>> out = fdns_sample(sampler, omega_hat)      # dict of numpy arrays on the LES grid
"""
from __future__ import annotations

import math

import numpy as np

from .equation import Equation, Parameters
from .backends import make_backend
from .filters import CoarseGrain, Filter, default_width, make_filter, wavenumbers
from .grid import Grid
from .initial import random_field

__all__ = ["FDNSSampler", "LES_JACOBIAN", "LES_CONVENTIONS", "les_equation", "enstrophy_transfer",
           "backscatter_fraction", "make_sampler", "fdns_sample"]

#: The LES-grid Jacobian J(ψ̄, ω̄) of Π and of the online LES: products formed on a 3/2 zero-padded
#: grid, i.e. exact for fields whose Nyquist row and column are zero (the advective and average
#: forms agree exactly for an exact product, so the cheaper advective one is used).
LES_JACOBIAN = {"dealias": "3/2", "jacobian": "advective"}

#: What an FDNS store (and an LES store) records about the definition of Π (docs/science.md §3).
LES_CONVENTIONS = {
    "les_jacobian": "exact: J(psibar, omegabar) from the LES fields with 3/2 zero padding, "
                    "every LES mode below Nyquist",
    "pi_definition": "Pi = J(psibar, omegabar) - bar(J(psi, omega)); bar = filter then truncation; "
                     "bar(J) is the DNS's own dealiased Jacobian",
    "nyquist": "the LES grid's Nyquist row and column of psi, omega and pi are zero",
}


def les_equation(grid: Grid, params: Parameters | None = None, forcing=None, extra=None) -> Equation:
    """The vorticity equation on an LES grid with the exact LES Jacobian (:data:`LES_JACOBIAN`):
    the nonlinear term, the closure ``extra`` and the time stepping act on every mode below the
    LES Nyquist wavenumber. :class:`FDNSSampler` forms J(ψ̄, ω̄) of Π with it, and the online LES
    (:func:`suite.les.build_les`) steps it, so both use one definition."""
    return Equation(grid, params if params is not None else Parameters(), forcing=forcing, extra=extra,
                    **LES_JACOBIAN)


def enstrophy_transfer(pi: np.ndarray, omega_bar: np.ndarray, L: float = 2 * math.pi) -> np.ndarray:
    """T = Π ∇²ω̄ on the LES grid (numpy, ``(..., n, n)``; spectral Laplacian)."""
    n = omega_bar.shape[-1]
    kx, ky = wavenumbers(n, L)
    lap = np.fft.irfft2(-(kx ** 2 + ky ** 2) * np.fft.rfft2(omega_bar), s=omega_bar.shape[-2:])
    return pi * lap


def backscatter_fraction(T: np.ndarray) -> np.ndarray | float:
    """The fraction of grid points with T < 0 (per leading index)."""
    frac = np.mean(T < 0, axis=(-2, -1))
    return float(frac) if np.ndim(frac) == 0 else frac


class FDNSSampler:
    """ψ̄, ω̄ and Π on the LES grid from a DNS state, plus the T = Π∇²ω̄ statistics.

    ``equation``: the DNS :class:`~solver.equation.Equation` (its grid, backend, dealiasing and
    Jacobian form make \\overline{J(ψ, ω)}; J(ψ̄, ω̄) is always exact, :func:`les_equation`);
    ``n_les``: LES points per side (divides the DNS ``n``); ``filt``: a
    :class:`~solver.filters.Filter` (width in units of length).
    """

    def __init__(self, equation: Equation, n_les: int, filt: Filter):
        grid, be = equation.grid, equation.backend
        self.equation, self.grid, self.backend, self.filter = equation, grid, be, filt
        self.n_dns, self.n_les, self.L = grid.n, int(n_les), grid.L
        self.cg = CoarseGrain(self.n_dns, self.n_les)
        les_be = make_backend(self.n_les, backend="numpy", dtype="float64", threads=1)
        self.les_grid = Grid(self.n_les, self.L, backend=les_be)
        self.les_equation = les_equation(self.les_grid)  # exact J(ψ̄, ω̄), whatever the DNS's rule
        kx, ky = wavenumbers(self.n_les, self.L)
        self.transfer_les = filt.transfer(kx, ky)  # G on the LES modes (G commutes with truncation)
        self.k2_les = kx ** 2 + ky ** 2
        self.inv_k2_les = np.divide(1.0, self.k2_les, out=np.zeros_like(self.k2_les), where=self.k2_les > 0)
        start = be.kx_slice.start or 0
        stop = be.kx_slice.stop if be.kx_slice.stop is not None else self.n_dns // 2 + 1
        self._cols = slice(start, stop)
        lo, hi = min(start, self.cg.ncols), min(stop, self.cg.ncols)
        self._local_cols = slice(lo - start, hi - start)  # local columns that reach the LES grid
        self._comm = be.comm if be.comm is not None and be.comm.Get_size() > 1 else None

    def _coarse(self, a_hat):
        """Local LES piece (numpy) of a local DNS spectral array (only the needed columns move)."""
        sub = self.backend.to_numpy(a_hat[..., :, self._local_cols])
        lo = self._cols.start + self._local_cols.start
        return self.cg.local(sub, slice(lo, lo + sub.shape[-1]))

    def _assemble(self, piece, batch):
        if self._comm is None:
            return self.cg.assemble([piece], batch)
        pieces = self._comm.gather(piece, root=0)
        return None if pieces is None else self.cg.assemble(pieces, batch)

    def __call__(self, omega_hat) -> dict | None:
        """``{"psi", "omega", "pi", "T", "backscatter", "transfer"}`` (numpy, LES grid, leading
        dims of ``omega_hat`` kept) on the group root; None on the other ranks of the group."""
        batch = tuple(omega_hat.shape[:-2])
        j_hat = self.equation.jacobian_hat(omega_hat)
        w_les = self._assemble(self._coarse(omega_hat), batch)
        j_les = self._assemble(self._coarse(j_hat), batch)
        if w_les is None:
            return None
        G = self.transfer_les
        w_bar_hat = w_les * G
        j_bar_hat = j_les * G
        lb = self.les_grid.backend
        j_of_bar_hat = lb.to_numpy(self.les_equation.jacobian_hat(lb.asarray(w_bar_hat, complex=True)))
        pi_hat = j_of_bar_hat - j_bar_hat
        s = (self.n_les, self.n_les)
        omega = np.fft.irfft2(w_bar_hat, s=s)
        psi = np.fft.irfft2(w_bar_hat * self.inv_k2_les, s=s)
        pi = np.fft.irfft2(pi_hat, s=s)
        T = pi * np.fft.irfft2(-self.k2_les * w_bar_hat, s=s)
        return {"psi": psi, "omega": omega, "pi": pi, "T": T,
                "backscatter": np.mean(T < 0, axis=(-2, -1)), "transfer": np.mean(T, axis=(-2, -1))}


def make_sampler(n_dns: int = 256, n_les: int = 32, members: int | None = None, filter: str = "gaussian",
                 width: float = 0.0, dealias: str = "2/3", jacobian: str = "advective",
                 backend: str = "numpy", threads: int = 0, seed: int = 0, comm=None):
    """A ready :class:`FDNSSampler` and a random-phase DNS state to feed it (for benchmarks).

    ``width`` 0 means the default Δ = 2L/n_les; ``members`` None for one unbatched field.
    """
    be = make_backend(n_dns, backend=backend, threads=threads, comm=comm)
    g = Grid(n_dns, backend=be)
    eq = Equation(g, Parameters(re=1e3, mu=0.1), dealias=dealias, jacobian=jacobian)
    filt = make_filter(filter, width or default_width(g.L, n_les))
    omega_hat = random_field(g, kp=10, seed=seed, members=members)
    return FDNSSampler(eq, n_les, filt), omega_hat


def fdns_sample(sampler: FDNSSampler, omega_hat) -> dict | None:
    """One on-the-fly filtering sample (what ``turbtl dns`` does at every sampling time)."""
    return sampler(omega_hat)
