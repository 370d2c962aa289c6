"""The doubly periodic grid [0, L)² and its wavenumbers, all as *local* arrays of a backend.

Under MPI (:class:`solver.backends.slab.SlabFFT`) the arrays below are the rank's own block, so every
formula here works unchanged; global sums go through ``backend.allsum``.

    >>> from solver.grid import Grid
    >>> g = Grid(64)                  # L = 2π, numpy backend
    >>> g.k2.shape, g.dealias.shape   # (64, 33) each: spectral layout (ky, kx)
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from .backends import FFTBackend, make_backend
from . import spectra
from .errors import ParameterError

DEALIAS_RULES = ("2/3", "3/2", "none")


class Grid:
    """Coordinates, wavenumbers and masks of an ``n``² grid of side ``L``.

    Attributes (backend arrays, local):
      ``x`` (1, n) and ``y`` (ny_local, 1): cell positions ``i L / n``;
      ``kx`` (1, nkx_local), ``ky`` (n, 1): physical wavenumbers ``2π/L * integer``;
      ``kxi``, ``kyi``: the integer wavenumbers; ``k2`` = kx² + ky², ``k`` = |k|;
      ``inv_k2``: 1/k² with 0 at k = 0 (so ψ̂ = ω̂ inv_k2 has zero mean);
      ``dealias``: 1 on the modes kept by the 2/3 rule (max(|kx|, |ky|) <= (n-1)//3 in integers),
      0 elsewhere; ``nyquist_free``: 0 on the Nyquist row/column, 1 elsewhere;
      ``weights``: Hermitian weights for sums over the half spectrum (1 on kx = 0 and the Nyquist
      column, 2 elsewhere), so Σ_full |f̂|² = Σ_half weights |f̂|².
    ``host``: numpy copies of ``kx, ky, kxi, kyi, k2, inv_k2, dealias, nyquist_free, weights`` (the
    local arrays, unbroadcast) for set-up code: operators, masks, spectra bins.
    Masks: :meth:`mask` (of a dealiasing rule) and :meth:`mask_factors` are the only builders.
    """

    def __init__(self, n: int, L: float = 2 * math.pi, backend: FFTBackend | None = None):
        backend = backend if backend is not None else make_backend(n)
        if backend.n != n:
            raise ValueError(f"backend is for n = {backend.n}, grid asks for n = {n}")
        if not (isinstance(L, (int, float)) and math.isfinite(L) and L > 0):
            raise ParameterError(f"L = {L!r}: must be > 0", name="L")
        self.n, self.L, self.backend = n, float(L), backend
        be = backend
        self.dx = self.L / n
        self.kscale = 2 * math.pi / self.L
        kxi = be.to_numpy(be.kx).astype(float)
        kyi = be.to_numpy(be.ky).astype(float)
        kx, ky = kxi * self.kscale, kyi * self.kscale
        k2 = kx**2 + ky**2
        inv_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
        self.kmax_dealias = (n - 1) // 3
        self.host = SimpleNamespace(kx=kx, ky=ky, kxi=kxi, kyi=kyi, k2=k2, inv_k2=inv_k2)
        dealias = np.logical_and(*self.mask_factors("2/3")).astype(float)
        nyq = np.logical_and(*self.mask_factors("none")).astype(float)
        weights = spectra.half_plane_weights(kxi, n) * np.ones_like(k2)
        ys = np.arange(n, dtype=float)[be.y_slice] * self.dx
        self.x = be.asarray((np.arange(n, dtype=float) * self.dx).reshape(1, n))
        self.y = be.asarray(ys.reshape(-1, 1))
        self.kxi, self.kyi = be.asarray(kxi), be.asarray(kyi)
        self.kx, self.ky = be.asarray(kx), be.asarray(ky)
        self.k2 = be.asarray(k2)
        self.k = be.asarray(np.sqrt(k2))
        self.inv_k2 = be.asarray(inv_k2)
        self.dealias = be.asarray(dealias)
        self.nyquist_free = be.asarray(nyq)
        self.weights = be.asarray(weights)
        self.host.dealias, self.host.nyquist_free, self.host.weights = dealias, nyq, weights

    def mask_factors(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """(column, row) boolean factors of the modes a dealiasing rule keeps (host, local): the
        2/3 rule keeps |kx|, |ky| <= (n-1)//3 (integers); "3/2" and "none" every mode below the
        Nyquist wavenumber n/2 (the Nyquist row and column carry nothing)."""
        if rule not in DEALIAS_RULES:
            raise ParameterError(f"dealias = {rule!r}: must be one of {', '.join(DEALIAS_RULES)}",
                                 name="dealias")
        h = self.host
        if rule == "2/3":
            return np.abs(h.kxi) <= self.kmax_dealias, np.abs(h.kyi) <= self.kmax_dealias
        return np.abs(h.kxi) < self.n // 2, np.abs(h.kyi) < self.n // 2

    def mask(self, rule: str, host: bool = False):
        """The modes a dealiasing rule keeps in the nonlinear term's output and the state: 1 on
        the modes of :meth:`mask_factors` except k = 0 (the mean vorticity of a periodic domain is
        zero: masking it leaves no rounding drift), 0 elsewhere. Float, of the local spectral
        shape; a numpy array with ``host=True``, else a backend array."""
        mx, my = self.mask_factors(rule)
        m = np.broadcast_to((mx & my) * (self.host.k2 > 0), self.backend.spectral_shape).astype(float)
        return m if host else self.backend.asarray(m)

    def mesh(self):
        """Physical coordinates (X, Y) as numpy arrays of the local shape."""
        x = self.backend.to_numpy(self.x)
        y = self.backend.to_numpy(self.y)
        return np.broadcast_to(x, self.backend.physical_shape), np.broadcast_to(y, self.backend.physical_shape)

    def __repr__(self):
        return f"Grid(n={self.n}, L={self.L:g}, backend={self.backend.summary()})"
