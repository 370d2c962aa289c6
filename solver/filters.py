"""Filters and coarse-graining from the DNS grid to the LES grid (docs/science.md §3).

Two orthogonal pieces:

* a **filter** is a transfer function G(k) applied to spectral coefficients. Every filter has
  the same contract (:class:`Filter`): a ``name``, a width ``width`` (Δ, in units of length)
  and ``transfer(kx, ky)`` returning G on arrays of *physical* wavenumbers (rad / length).

  ================  ==========================================  ==============================
  ``gaussian``      G = exp(-|k|² Δ² / 24)                       the default, Δ = 2 L / n_les
  ``box``           G = sinc(kx Δ/2) · sinc(ky Δ/2)              top hat of side Δ in x and y
                    (sinc(z) = sin z / z)
  ``sharp``         G = 1 for |k| < π/Δ, else 0                 radial cut-off (Pope's convention)
  ================  ==========================================  ==============================

  All three are real, even and equal to 1 at k = 0 (they preserve the mean). With the default
  Δ = 2 L / n_les the sharp cut-off is π/Δ = n_les/4 (integer wavenumbers for L = 2π), half the
  LES Nyquist wavenumber; set ``dns.filter_width = L / n_les`` for a cut-off at the LES Nyquist.

* **coarse-graining** (:class:`CoarseGrain`) is a sharp *square* spectral truncation of a DNS
  spectral array (numpy rfft2 layout ``(..., n_dns, n_dns//2+1)``) to the LES layout
  ``(..., n_les, n_les//2+1)``: the modes with |kx|, |ky| < n_les/2 are kept, the LES Nyquist row
  and column are set to zero (a real field has no well-defined single Nyquist mode after
  truncation), and the coefficients are multiplied by (n_les/n_dns)² so that, with numpy's
  unnormalized forward / normalized inverse FFT, grid-point *values* are preserved: a field
  band-limited to |kx|, |ky| < n_les/2 coarse-grains to exactly its samples on the LES grid.

Under MPI the DNS spectral array is split by kx columns over the ranks of a member's group
(docs/CONTRACTS.md); :meth:`CoarseGrain.local` truncates a rank's own columns and
:meth:`CoarseGrain.assemble` puts the pieces together on the group's root.

    >>> import numpy as np
    >>> from solver.filters import make_filter, CoarseGrain
    >>> f = make_filter("gaussian", width=2 * np.pi * 2 / 16)
    >>> float(f.transfer(np.array(0.0), np.array(0.0)))
    1.0
    >>> CoarseGrain(64, 16)(np.zeros((64, 33), complex)).shape
    (16, 9)
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Filter", "GaussianFilter", "BoxFilter", "SharpFilter", "FILTERS", "make_filter",
           "default_width", "wavenumbers", "CoarseGrain"]


class Filter(ABC):
    """A homogeneous isotropic-in-spirit low-pass filter given by its transfer function."""

    name: str = ""

    def __init__(self, width: float):
        width = float(width)
        if not (width > 0 and math.isfinite(width)):
            raise ValueError(f"filter width must be a positive finite number, got {width!r}")
        self.width = width

    @abstractmethod
    def transfer(self, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
        """G(kx, ky) on broadcastable arrays of physical wavenumbers (float64 result)."""

    def apply(self, u_hat, kx: np.ndarray, ky: np.ndarray):
        """Filter the spectral coefficients ``u_hat`` whose wavenumbers are ``kx``, ``ky``."""
        return u_hat * self.transfer(kx, ky)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(width={self.width!r})"


class GaussianFilter(Filter):
    """G(k) = exp(-|k|² Δ² / 24) (the second moment of the kernel is Δ²/12 per direction)."""

    name = "gaussian"

    def transfer(self, kx, ky):
        kx, ky = np.asarray(kx, float), np.asarray(ky, float)
        return np.exp(-(kx * kx + ky * ky) * (self.width ** 2 / 24.0))


class BoxFilter(Filter):
    """Top hat of side Δ in x and in y: G = sinc(kx Δ/2) sinc(ky Δ/2), sinc(z) = sin(z)/z."""

    name = "box"

    def transfer(self, kx, ky):
        kx, ky = np.asarray(kx, float), np.asarray(ky, float)
        half = self.width / (2.0 * np.pi)  # np.sinc(x) = sin(pi x)/(pi x)
        return np.sinc(kx * half) * np.sinc(ky * half)


class SharpFilter(Filter):
    """Sharp spectral (radial) cut-off: G = 1 for |k| < k_c = π/Δ, 0 otherwise."""

    name = "sharp"

    @property
    def cutoff(self) -> float:
        return np.pi / self.width

    def transfer(self, kx, ky):
        kx, ky = np.asarray(kx, float), np.asarray(ky, float)
        return ((kx * kx + ky * ky) < self.cutoff ** 2).astype(float)


FILTERS: dict[str, type[Filter]] = {c.name: c for c in (GaussianFilter, BoxFilter, SharpFilter)}


def default_width(L: float, n_les: int) -> float:
    """The default filter width Δ = 2 L / n_les (twice the LES grid spacing)."""
    return 2.0 * L / n_les


def make_filter(name: str, width: float) -> Filter:
    """The filter called ``name`` (``gaussian``, ``box`` or ``sharp``) of width ``width``."""
    try:
        cls = FILTERS[name]
    except KeyError:
        raise ValueError(f"filter {name!r} is unknown: accepted are {', '.join(FILTERS)}") from None
    return cls(width)


def wavenumbers(n: int, L: float = 2 * np.pi, cols: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Physical wavenumbers (kx, ky) of the rfft2 layout of an n² grid on [0, L)².

    ``kx`` has shape ``(1, ncols)`` (optionally only the columns ``cols``), ``ky`` ``(n, 1)``.
    """
    scale = 2 * np.pi / L
    kx = np.arange(n // 2 + 1, dtype=float)[cols if cols is not None else slice(None)] * scale
    ky = np.fft.fftfreq(n, 1.0 / n) * scale
    return kx[None, :], ky[:, None]


class CoarseGrain:
    """Spectral truncation from an ``n_dns``² grid to an ``n_les``² grid, values preserved."""

    def __init__(self, n_dns: int, n_les: int):
        if n_les % 2 or n_dns % 2 or n_les > n_dns:
            raise ValueError(f"need even n_les <= n_dns, got n_les={n_les}, n_dns={n_dns}")
        self.n_dns, self.n_les = int(n_dns), int(n_les)
        h = n_les // 2
        # LES rows 0..h-1 <- DNS rows 0..h-1 (ky >= 0); LES rows h+1..n_les-1 <- ky = -(h-1)..-1
        self.les_rows = np.r_[0:h, h + 1:n_les]
        self.dns_rows = np.r_[0:h, n_dns - h + 1:n_dns]
        self.ncols = h  # kx = 0..h-1 kept; LES column h (Nyquist) stays zero
        self.scale = (n_les / n_dns) ** 2

    @property
    def les_shape(self) -> tuple[int, int]:
        return (self.n_les, self.n_les // 2 + 1)

    def __call__(self, u_hat: np.ndarray) -> np.ndarray:
        """Truncate a full (serial-layout) DNS spectral array ``(..., n_dns, n_dns//2+1)``."""
        u_hat = np.asarray(u_hat)
        if u_hat.shape[-2:] != (self.n_dns, self.n_dns // 2 + 1):
            raise ValueError(f"expected (..., {self.n_dns}, {self.n_dns // 2 + 1}), got {u_hat.shape}")
        piece, cols = self.local(u_hat, slice(0, self.n_dns // 2 + 1))
        return self.assemble([(piece, cols)], u_hat.shape[:-2])

    def local(self, u_hat_local: np.ndarray, kx_slice: slice) -> tuple[np.ndarray, slice]:
        """This rank's part of the LES spectrum: ``(piece, les_cols)``.

        ``u_hat_local`` holds the DNS columns ``kx_slice`` (a contiguous block, step 1);
        ``piece`` holds the LES columns ``les_cols`` (possibly empty), all LES rows.
        """
        start, stop = kx_slice.start or 0, kx_slice.stop
        lo, hi = min(start, self.ncols), min(stop, self.ncols)
        sub = np.asarray(u_hat_local)[..., :, lo - start:hi - start]
        piece = np.zeros(sub.shape[:-2] + (self.n_les, hi - lo), dtype=np.result_type(sub.dtype, np.complex64))
        piece[..., self.les_rows, :] = sub[..., self.dns_rows, :] * self.scale
        return piece, slice(lo, hi)

    def assemble(self, pieces, batch_shape=()) -> np.ndarray:
        """The LES spectral array from ``[(piece, les_cols), ...]`` of all ranks of a group."""
        dtype = np.result_type(*[p.dtype for p, _ in pieces]) if pieces else np.complex128
        out = np.zeros(tuple(batch_shape) + self.les_shape, dtype=dtype)
        for piece, cols in pieces:
            out[..., :, cols] = piece
        return out

    def pad(self, u_hat_les: np.ndarray) -> np.ndarray:
        """The inverse map: zero-pad an LES spectrum to the DNS grid (spectral interpolation)."""
        u_hat_les = np.asarray(u_hat_les)
        out = np.zeros(u_hat_les.shape[:-2] + (self.n_dns, self.n_dns // 2 + 1), dtype=u_hat_les.dtype)
        out[..., self.dns_rows, :self.ncols] = u_hat_les[..., self.les_rows, :self.ncols] / self.scale
        return out
