"""Wavenumber geometry of the rfft2 half plane of an ``n × n`` periodic grid: shells and angles.

Every spectral array here is in numpy's rfft2 layout ``(..., n, n//2+1)`` = (ky, kx) with integer
wavenumbers (the domain is ``[0, L)²`` with ``L = 2π``; for another ``L`` scale by ``2π/L``).
Shells are those of :mod:`solver.spectra` (shell ``s`` holds ``|k|`` in ``[s − ½, s + ½)``), cut to
the disk inscribed in the grid, ``s = 0 … n//2``: the corners beyond ``n/2`` are left out, so that
every shell is complete and isotropic (each shell's sum equals :func:`solver.spectra.shell_sum`'s).
Sums over the full plane are taken over the half plane with the weights of
:func:`solver.spectra.half_plane_weights` (2 for ``0 < kx < n/2``).

    >>> g = HalfPlane(16)
    >>> g.shell_sum(np.ones((16, 9)))[:3]     # modes per shell in the full plane
    array([1., 8., 12.])
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from solver import spectra


class HalfPlane:
    """Integer wavenumbers, full-plane weights, shell and angle bins of the rfft2 half plane."""

    def __init__(self, n: int, n_angles: int = 18):
        if n < 2 or n % 2:
            raise ValueError(f"n = {n!r}: must be an even integer >= 2")
        self.n, self.m, self.n_angles = n, n // 2 + 1, n_angles
        ky = np.fft.fftfreq(n, 1.0 / n)[:, None] * np.ones((1, self.m))
        kx = np.arange(self.m)[None, :] * np.ones((n, 1))
        self.kx, self.ky = kx, ky
        self.kmag = np.hypot(kx, ky)
        w = spectra.half_plane_weights(kx, n)
        self.weight = w                                     # full-plane multiplicity of each mode
        self.n_shells = spectra.disk_shells(n)
        shell = spectra.shell_index(kx, ky)
        self.in_disk = shell < self.n_shells
        self.shell = np.where(self.in_disk, shell, -1)
        # orientation of the wavevector in [0, π): |Ŵ(k)| = |Ŵ(-k)| for real kernels
        self.theta = np.mod(np.arctan2(ky, kx), np.pi)
        self.angle_bin = np.minimum((self.theta / np.pi * n_angles).astype(int), n_angles - 1)
        flat = np.arange(n * self.m)
        disk = self.in_disk.ravel()
        nz = disk & (self.kmag.ravel() > 0)
        wflat = w.ravel()
        self._sum = sp.csr_matrix((wflat[disk], (flat[disk], self.shell.ravel()[disk])),
                                  shape=(n * self.m, self.n_shells))
        counts = np.asarray(self._sum.sum(axis=0)).ravel()
        self.shell_counts = counts
        self._mean = sp.csr_matrix(self._sum.multiply(1.0 / counts[None, :]))
        ang = sp.csr_matrix((wflat[nz], (flat[nz], self.angle_bin.ravel()[nz])),
                            shape=(n * self.m, n_angles))
        acounts = np.asarray(ang.sum(axis=0)).ravel()
        self._angle_mean = sp.csr_matrix(ang.multiply(1.0 / acounts[None, :]))
        # e^{2iθ} weights over the disk without k = 0 (orientation selectivity)
        self.cos2 = np.where(self.in_disk & (self.kmag > 0), w * np.cos(2 * self.theta), 0.0).ravel()
        self.sin2 = np.where(self.in_disk & (self.kmag > 0), w * np.sin(2 * self.theta), 0.0).ravel()
        self.wdisk0 = np.where(self.in_disk & (self.kmag > 0), w, 0.0).ravel()
        self.k_shells = np.arange(self.n_shells, dtype=float)
        self.angles_deg = (np.arange(n_angles) + 0.5) * 180.0 / n_angles

    def _apply(self, a: np.ndarray, mat) -> np.ndarray:
        a = np.asarray(a)
        lead = a.shape[:-2]
        out = np.asarray(mat.T @ a.reshape(-1, self.n * self.m).T).T
        return out.reshape(*lead, mat.shape[1])

    def shell_sum(self, a: np.ndarray) -> np.ndarray:
        """Full-plane sum of ``a`` over each shell: the angle-integrated spectrum of a power array."""
        return self._apply(a, self._sum)

    def shell_mean(self, a: np.ndarray) -> np.ndarray:
        """Full-plane average of ``a`` over each shell: the radial profile of a magnitude array."""
        return self._apply(a, self._mean)

    def angle_mean(self, a: np.ndarray) -> np.ndarray:
        """Average of ``a`` over ``n_angles`` orientation bins of ``[0°, 180°)`` (inside the disk, k ≠ 0)."""
        return self._apply(a, self._angle_mean)


@lru_cache(maxsize=16)
def half_plane(n: int, n_angles: int = 18) -> HalfPlane:
    """A cached :class:`HalfPlane` (building one costs a few ms at n = 128)."""
    return HalfPlane(n, n_angles)

