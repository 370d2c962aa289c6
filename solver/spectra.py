"""Shell binning of spectra: the one convention, used by the solver's diagnostics, the a-priori
metrics (:func:`suite.metrics.spectrum`) and the analysis (:class:`analysis.radial.HalfPlane`).

**Shells.** Wavenumbers are integers (units of 2π/L). Shell ``s`` (s = 0, 1, …) holds the modes
with ``|k|`` in ``[s − ½, s + ½)``: :func:`shell_index` = ``rint(|k|)``. No mode lies on a shell
edge (``|k|²`` is an integer, ``(s + ½)²`` is not), so the rounding never ties.

**Corners kept.** The binning covers every mode of an ``n²`` grid, the corners beyond the inscribed
disk ``|k| <= n/2`` included: shells ``0 … shell_count(n) − 1``. Parseval therefore holds over all
shells: for a field ``f`` with spectral coefficients ``f̂`` in numpy's scale,

    Σ_s S(s) = Σ_k |f̂(k)|² / n⁴ = <f²>        (S = :func:`shell_sum` of |f̂|² / n⁴)

Outputs that show only complete, isotropic shells cut the same sums to the disk, shells
``0 … n/2`` (:func:`disk_shells`): the a-priori spectra of :func:`suite.metrics.spectrum` and
:class:`analysis.radial.HalfPlane`. Their shells carry the same values as here; Parseval then
misses the corners. The solver's diagnostics return all shells.

**Layouts.** The full ``fft2`` plane (each mode once: no weights) or the ``rfft2`` half plane with
the Hermitian weights of :func:`half_plane_weights` (1 on ``kx = 0`` and ``kx = n/2``, 2 elsewhere):
both give the same shell sums (to rounding).

    >>> k1 = np.fft.fftfreq(8, 1 / 8)
    >>> idx = shell_index(k1[None, :], k1[:, None])
    >>> shell_sum(np.ones((8, 8)), idx, shell_count(8))[:3]   # modes per shell
    array([ 1.,  8., 12.])
"""
from __future__ import annotations

import numpy as np


def shell_index(kx, ky) -> np.ndarray:
    """The shell ``rint(|k|)`` (int64) of integer wavenumbers ``kx``, ``ky`` (broadcast together)."""
    return np.rint(np.sqrt(kx ** 2 + ky ** 2)).astype(np.int64)


def shell_count(n: int) -> int:
    """The number of shells :func:`shell_sum` returns for an ``n²`` grid, corners included: the
    corner mode (n/2, n/2) at ``|k| = n/√2`` lies in shell ``rint(n/√2) <= ceil(n/√2)``; the
    count is ``ceil(n/√2) + 2`` (the last shell, always empty, is kept: outputs keep their length)."""
    return int(np.ceil(n / 2 * np.sqrt(2))) + 2


def disk_shells(n: int) -> int:
    """The shells ``0 … n/2`` inside the inscribed disk (complete and isotropic): ``n//2 + 1``."""
    return n // 2 + 1


def half_plane_weights(kxi, n: int) -> np.ndarray:
    """The multiplicity in the full plane of each ``rfft2`` half-plane column ``kxi`` (integer):
    1 on ``kx = 0`` and the Nyquist column ``kx = n/2``, 2 elsewhere, so Σ_full = Σ_half w."""
    return np.where((kxi == 0) | (kxi == n // 2), 1.0, 2.0)


def shell_sum(values, index: np.ndarray, count: int) -> np.ndarray:
    """Σ of ``values`` (numpy, ``(..., *index.shape)``; weights already applied) over each shell of
    ``index`` (:func:`shell_index`), shells ``0 … count − 1``: ``(..., count)``. Each shell's terms
    are added in the arrays' C order."""
    values = np.asarray(values)
    lead = values.shape[:values.ndim - index.ndim]
    values = np.broadcast_to(values, lead + index.shape)
    flat = values.reshape(-1, index.size)
    idx = index.ravel()
    out = np.stack([np.bincount(idx, weights=row, minlength=count) for row in flat])
    return out.reshape(lead + (count,))
