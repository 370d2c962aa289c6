"""The doubly periodic grid [0, L)² and its wavenumbers, all as *local* arrays of a backend.

Under MPI (:class:`solver.backends.slab.SlabFFT`) the arrays below are the rank's own block, so every
formula here works unchanged; global sums go through ``backend.allsum``.

    >>> from solver.grid import Grid
    >>> g = Grid(64)                  # L = 2π, numpy backend
    >>> g.k2.shape, g.dealias.shape   # (64, 33) each: spectral layout (ky, kx)
"""
from __future__ import annotations

import math

import numpy as np

from .backends import FFTBackend, make_backend
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
        kmax = (n - 1) // 3
        self.kmax_dealias = kmax
        dealias = ((np.abs(kxi) <= kmax) & (np.abs(kyi) <= kmax)).astype(float)
        nyq = ((np.abs(kxi) < n // 2) & (np.abs(kyi) < n // 2)).astype(float)
        weights = np.where((kxi == 0) | (kxi == n // 2), 1.0, 2.0) * np.ones_like(k2)
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
        # numpy copies for set-up code (operators, masks, spectra bins)
        self.np = {"kx": kx, "ky": ky, "kxi": kxi, "kyi": kyi, "k2": k2, "inv_k2": inv_k2,
                   "dealias": dealias, "nyquist_free": nyq, "weights": weights}

    def mask(self, rule: str):
        """The spectral mask of a dealiasing rule applied to the nonlinear term's output."""
        if rule == "2/3":
            return self.dealias
        if rule in ("3/2", "none"):
            return self.nyquist_free
        raise ParameterError(f"dealias = {rule!r}: must be one of {', '.join(DEALIAS_RULES)}",
                          name="dealias")

    def mesh(self):
        """Physical coordinates (X, Y) as numpy arrays of the local shape."""
        x = self.backend.to_numpy(self.x)
        y = self.backend.to_numpy(self.y)
        return np.broadcast_to(x, self.backend.physical_shape), np.broadcast_to(y, self.backend.physical_shape)

    def __repr__(self):
        return f"Grid(n={self.n}, L={self.L:g}, backend={self.backend.describe()})"
