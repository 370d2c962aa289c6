"""Change of kernels through transfer learning (docs/science.md §6).

Per kernel: ``dW = ‖W_TL − W_base‖_F`` over its k × k taps and ``dspec = ‖|Ŵ_TL| − |Ŵ_base|‖_F``
over the full n × n plane (half-plane sums with weight 2 for 0 < kx < n/2). By Parseval and the
triangle inequality ``dspec ≤ n · dW``, with equality when the change is a positive rescaling.
"""
from __future__ import annotations

import numpy as np

from .classify import CLASSES
from .radial import half_plane


def kernel_change(w_base: np.ndarray, w_tl: np.ndarray, mag_base: np.ndarray,
                  mag_tl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dW, dspec)`` per kernel for kernels ``(..., k, k)`` and their ``|Ŵ|`` ``(..., n, n//2+1)``."""
    dw = np.sqrt(np.sum((np.asarray(w_tl) - np.asarray(w_base)) ** 2, axis=(-2, -1)))
    n = mag_base.shape[-2]
    d2 = (np.asarray(mag_tl) - np.asarray(mag_base)) ** 2
    dspec = np.sqrt(np.sum(d2 * half_plane(n).weight, axis=(-2, -1)))
    return dw, dspec


def transitions(cls_base: np.ndarray, cls_tl: np.ndarray, layer: np.ndarray, n_layers: int) -> np.ndarray:
    """Counts ``(layer, from_class, to_class)`` of class changes base → TL (diagonal: unchanged)."""
    nc = len(CLASSES)
    out = np.zeros((n_layers, nc, nc), dtype=np.int64)
    np.add.at(out, (np.asarray(layer) - 1, np.asarray(cls_base), np.asarray(cls_tl)), 1)
    return out


def class_fractions(cls: np.ndarray, layer: np.ndarray, n_layers: int) -> np.ndarray:
    """Fraction of each class among the kernels of each layer: ``(layer, class)``."""
    nc = len(CLASSES)
    counts = np.zeros((n_layers, nc))
    np.add.at(counts, (np.asarray(layer) - 1, np.asarray(cls)), 1)
    tot = counts.sum(axis=1, keepdims=True)
    return counts / np.where(tot > 0, tot, 1)


def above_percentile(values: np.ndarray, q: float) -> tuple[float, np.ndarray]:
    """The ``q``-th percentile of the finite ``values`` and the mask of values strictly above it."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    if not finite.any():
        return float("nan"), np.zeros(v.shape, dtype=bool)
    thr = float(np.percentile(v[finite], q))
    return thr, finite & (v > thr)
