"""Per-kernel spectral statistics of thousands of kernels without keeping their n × n spectra.

What the analysis needs of a kernel's spectrum ``Ŵ`` on the n-grid (:mod:`.kernels`, :mod:`.radial`):

- **linear in the power** ``P = |Ŵ|²``: the orientation sums ``Σ P e^{2iθ}`` and ``Σ P`` of the
  classifier and the shell means of ``P`` of the framework's layer gain. ``P(k)`` is the Fourier
  transform of the kernel's autocorrelation ``r(d) = Σ_x w(x) w(x+d)``, a ``(2k−1)²`` array, so
  a linear functional ``Σ_k F(k) P(k) = Σ_d r(d) Σ_k F(k) cos(2π k·d/n)``: one small product
  ``r @ G_F`` with ``G_F`` precomputed once per ``(k, n)``. No spectrum is formed
  (:meth:`SymDFT.power_functionals`).
- **not linear in the power**: the shell means of ``|Ŵ|`` (the classifier's radial profile),
  ``dspec = ‖|Ŵ_TL| − |Ŵ_base|‖`` and the shell means of ``(|Ŵ_TL| − |Ŵ_base|)²`` need every
  ``|Ŵ(k)|``. :meth:`SymDFT.magnitudes` forms them chunk by chunk (never for a whole layer) with a
  quarter of the DFT-matrix FLOPs of :func:`.kernels.kernel_spectra`: with the kernel centred,
  ``cos`` is even and ``sin`` odd in the tap offset, so each 1D transform splits into a
  ``cos`` product on the pair sums and a ``sin`` product on the pair differences, and the rows
  ``+ky`` and ``−ky`` come from the same two products (``Ŵ(±ky) = (C T_r ± S T_i) + i (C T_i ∓ S T_r)``).
  The x products are matrix products; the y products, whose inner dimension is only ``⌈k/2⌉``,
  are fused with the folding and the magnitudes into one compiled pass over the output
  (:func:`_fold_magnitudes`), which halved the cost: stored, they were memory traffic.

The magnitudes come in a *folded* layout ``(V, batch)``, ``V = 2 (n/2+1) m`` (``m = n/2+1``): rows
``ky = 0 … n/2`` then ``ky = −n/2 … −0`` (of those only ``−(n/2−1) … −1`` are distinct modes; the
others carry weight 0 in every functional). The distinct rows are thus in the rfft2 half plane's
row order (``ky = 0 … n/2, n/2+1 ≡ −(n/2−1), …, n−1 ≡ −1``), so an argmax breaks ties as there. The batch is the fast axis, so the shell reductions are
a sparse matrix times a dense block (:meth:`SymDFT.shell_mean`). Agrees with the rfft2 of the
zero-padded kernels to rounding (tests/test_analysis.py).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from .radial import half_plane

CHUNK = 64    # kernels per block of magnitudes: (V, 64) float64 = 4.3 MB at n = 128 (measured faster than 128 or 16)


def _pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Tap pairs ``(hi, lo)`` symmetric about the centre ``(k−1)/2``, their offsets ``u > 0`` and
    whether a middle tap (odd k) is left."""
    h = k // 2
    hi, lo = np.arange(k - 1, k - 1 - h, -1), np.arange(h)
    return hi, lo, (hi - (k - 1) / 2.0), bool(k % 2)


class SymDFT:
    """Precomputed matrices for ``k × k`` kernels on the ``n`` grid (see the module doc)."""

    def __init__(self, k: int, n: int):
        if k > n:
            raise ValueError(f"kernel size {k} exceeds the grid n = {n}")
        if n < 2 or n % 2:
            raise ValueError(f"n = {n!r}: must be an even integer >= 2")
        self.k, self.n, self.m, self.h1 = k, n, n // 2 + 1, n // 2 + 1
        self.hi, self.lo, u, mid = _pairs(k)
        self.mid = mid
        phx = 2 * np.pi * np.arange(self.m) / n                 # kx = 0 … n/2
        phy = 2 * np.pi * np.arange(self.h1) / n                # ky = 0 … n/2 (the sign comes from S)
        one = np.ones((self.m, 1)) if mid else np.zeros((self.m, 0))
        self.cx = np.ascontiguousarray(np.hstack([np.cos(np.outer(phx, u)), one]))
        self.sx = np.ascontiguousarray(np.sin(np.outer(phx, u)))
        one = np.ones((self.h1, 1)) if mid else np.zeros((self.h1, 0))
        self.cy = np.ascontiguousarray(np.hstack([np.cos(np.outer(phy, u)), one]))
        self.sy = np.ascontiguousarray(np.sin(np.outer(phy, u)))
        self._folded_geometry()
        self._power_geometry()

    # -- geometry ------------------------------------------------------------------------------

    def _folded_geometry(self) -> None:
        """Map the folded rows to the rfft2 half plane; shell-mean and weight vectors on them."""
        n, m, h1 = self.n, self.m, self.h1
        g = half_plane(n)
        j = np.arange(h1)
        jm = h1 - 1 - j                                                   # minus rows stored ky = −n/2 … −0
        row = np.concatenate([j, (n - jm) % n])                           # half-plane row of each folded row
        valid_row = np.concatenate([np.ones(h1, bool), (jm >= 1) & (jm <= n // 2 - 1)])
        self.hp_index = (row[:, None] * m + np.arange(m)[None, :]).ravel()  # (V,)
        self.valid = np.repeat(valid_row, m)
        keep = sp.diags(self.valid.astype(float))
        self._mean_t = sp.csr_matrix((keep @ g._mean[self.hp_index]).T)     # (shells, V)
        self.weight = np.where(self.valid, g.weight.ravel()[self.hp_index], 0.0)
        self.in_disk = self.valid & g.in_disk.ravel()[self.hp_index]
        self.disk_factor = self.in_disk.astype(float)[:, None]
        self.kx = g.kx.ravel()[self.hp_index]
        self.ky = g.ky.ravel()[self.hp_index]

    def _power_geometry(self) -> None:
        """``G`` matrices of the power functionals over the circular ``(2k−1)²`` lag grid."""
        n, k = self.n, self.k
        g = half_plane(n)
        s = 2 * k - 1
        lag = np.fft.fftfreq(s, 1.0 / s).astype(int)                       # 0, 1, …, k−1, −(k−1), …, −1
        dy, dx = np.meshgrid(lag, lag, indexing="ij")
        arg = 2 * np.pi * (np.outer(dy.ravel(), g.ky.ravel()) + np.outer(dx.ravel(), g.kx.ravel())) / n
        cosm = np.cos(arg)                                                  # (s², n·m)
        self.lag_shape = (s, s)
        self.g_orient = cosm @ np.stack([g.cos2, g.sin2, g.wdisk0], axis=1)   # (s², 3)
        self.g_shell_mean = np.asarray((g._mean.T @ cosm.T).T)               # (s², shells)

    # -- per batch -----------------------------------------------------------------------------

    def magnitudes(self, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``|Ŵ|`` of kernels ``w (B, k, k)`` in the folded layout ``(V, B)`` (see the module doc),
        written into ``out`` when given (reusing one block avoids the page faults of a fresh
        allocation per chunk, which cost as much as the arithmetic)."""
        k, m, h1 = self.k, self.m, self.h1
        B = w.shape[0]
        wt = np.ascontiguousarray(np.asarray(w, dtype=np.float64).transpose(2, 1, 0))    # (b, a, B)
        ev, od = self._split(wt)
        t = np.empty((k, 2, m, B))                                                      # (a, re/im, kx, B)
        t[:, 0] = (self.cx @ ev.reshape(ev.shape[0], k * B)).reshape(m, k, B).transpose(1, 0, 2)
        t[:, 1] = (self.sx @ od.reshape(od.shape[0], k * B)).reshape(m, k, B).transpose(1, 0, 2)
        t[:, 1] *= -1.0
        ev, od = self._split(t)
        if out is None:
            out = np.empty((2 * h1 * m, B))
        # the y products C T, S T and Ŵ(±ky) = (CT_r ± ST_i) + i (CT_i ∓ ST_r), |·|, in one pass
        _fold_magnitudes()(self.cy, self.sy, ev.reshape(ev.shape[0], 2, m * B),
                           od.reshape(od.shape[0], 2, m * B), out.reshape(2, h1, m * B))
        return out

    def _split(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pair sums (and the middle tap) and pair differences along the first axis."""
        ev = a[self.hi] + a[self.lo]
        if self.mid:
            ev = np.concatenate([ev, a[self.k // 2][None]])
        return ev, a[self.hi] - a[self.lo]

    def shell_mean(self, x: np.ndarray) -> np.ndarray:
        """Full-plane shell means of a folded array ``(V, B)``: ``(B, shells)`` (as
        :meth:`.radial.HalfPlane.shell_mean` of the same values in the rfft2 layout)."""
        return np.asarray(self._mean_t @ x).T

    def full_sum(self, x: np.ndarray) -> np.ndarray:
        """Full-plane sums of a folded array ``(V, B)``: ``(B,)``."""
        return self.weight @ x

    def peak(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(kx, ky)`` integer wavenumbers of the largest value inside the disk of each column of
        ``x (V, B)`` (ties: the first in the rfft2 half plane's row order, as ``np.argmax`` there).
        Overwrites ``x``."""
        np.multiply(x, self.disk_factor, out=x)
        i = np.argmax(x, axis=0)
        return self.kx[i], self.ky[i]

    def power_functionals(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """From the autocorrelation alone: ``c, s, p`` = full-plane ``Σ P cos 2θ``, ``Σ P sin 2θ``,
        ``Σ P`` over the disk without k = 0, and ``shell_mean`` ``(B, shells)`` = shell means of P."""
        r = autocorrelation(w).reshape(len(w), -1)
        o = r @ self.g_orient
        return {"c": o[:, 0], "s": o[:, 1], "p": o[:, 2], "shell_mean": r @ self.g_shell_mean}


@lru_cache(maxsize=1)
def _fold_magnitudes():
    """The compiled last stage of :meth:`SymDFT.magnitudes` (Numba, cached on disk): the y
    products and the magnitudes in one pass over the output. With ``ev (ne, 2, L)`` (pair sums
    of ``T_r``, ``T_i``), ``od (no, 2, L)`` (pair differences), ``cy (h1, ne)``, ``sy (h1, no)``:
    ``c = cy @ ev``, ``s = sy @ od`` element by element (never stored), then
    ``out[0, j] = |(c_r + s_i) + i (c_i − s_r)|`` (row ``+ky_j``) and
    ``out[1, h1−1−j] = |(c_r − s_i) + i (c_i + s_r)|`` (row ``−ky_j``), ``out (2, h1, L)``.
    Before, two matrix products wrote ``c`` and ``s`` (four times the output) and a dozen array
    operations read them back: memory traffic, not arithmetic, set the cost."""
    import numba

    @numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=False)
    def fold(cy, sy, ev, od, out):
        h1, ne, no, L = cy.shape[0], ev.shape[0], od.shape[0], ev.shape[2]
        for j in range(h1):
            jm = h1 - 1 - j
            for t in range(L):
                cr = 0.0
                ci = 0.0
                for q in range(ne):
                    cr += cy[j, q] * ev[q, 0, t]
                    ci += cy[j, q] * ev[q, 1, t]
                sr = 0.0
                si = 0.0
                for q in range(no):
                    sr += sy[j, q] * od[q, 0, t]
                    si += sy[j, q] * od[q, 1, t]
                a, b = cr + si, ci - sr
                out[0, j, t] = np.sqrt(a * a + b * b)
                a, b = cr - si, ci + sr
                out[1, jm, t] = np.sqrt(a * a + b * b)
    return fold


def autocorrelation(w: np.ndarray) -> np.ndarray:
    """``r(d) = Σ_x w(x) w(x+d)`` of kernels ``(B, k, k)`` on the circular ``(2k−1)²`` lag grid
    (``r[dy mod 2k−1, dx mod 2k−1]``; no wrap-around, since the support is ``|d| ≤ k−1``)."""
    w = np.asarray(w, dtype=np.float64)
    s = 2 * w.shape[-1] - 1
    f = np.fft.rfft2(w, s=(s, s))
    return np.fft.irfft2(f.real * f.real + f.imag * f.imag, s=(s, s))


@lru_cache(maxsize=16)
def sym_dft(k: int, n: int) -> SymDFT:
    """A cached :class:`SymDFT` (building one costs a few ms)."""
    return SymDFT(k, n)


def chunks(total: int, size: int = CHUNK):
    """Slices ``[s, s+size)`` covering ``range(total)``."""
    return [slice(s, min(s + size, total)) for s in range(0, total, size)]
