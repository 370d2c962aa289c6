"""Spectra |Ŵ(k)| of convolution kernels zero-padded to the LES grid (docs/science.md §6).

A ``k × k`` kernel ``w[a, b]`` zero-padded to ``n × n`` has the spectrum (numpy's convention)

    Ŵ(ky, kx) = Σ_{a,b} w[a, b] exp(-2πi (ky a + kx b) / n)  =  (F_y w F_xᵀ)[ky, kx]

with the small DFT matrices ``F_y`` (n × k) and ``F_x`` (n//2+1 × k). :func:`kernel_spectra`
evaluates it for a batch of kernels either by two GEMMs per chunk (``method="dft"``) or by
``numpy.fft.rfft2(w, s=(n, n))`` (``method="rfft"``); both give the rfft2 half plane ``(..., n,
n//2+1)``. Where the kernel sits in the padded array only changes the phase, never ``|Ŵ|``; the
cross-correlation torch computes has the transfer function ``conj Ŵ``, the same magnitude.

``bench/analysis_harness.py`` times both methods against a batched-GEMM floor in the same process
(the benchmark engineer's entry point). :func:`layer_kernels` pulls the kernels of every layer out
of a :class:`suite.model.ClosureCNN`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

METHODS = ("dft", "rfft")
DEFAULT_METHOD = "dft"   # measured faster on this machine for 3×3 and 5×5 kernels (see bench/analysis_harness.py)
DEFAULT_CHUNK = 64       # kernels per GEMM chunk: 64 measured 1.5-2x faster than 256 or 1024 at n = 128 (cache)


@lru_cache(maxsize=32)
def dft_matrices(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(F_y, F_xᵀ)``: ``F_y[ky, a] = e^{-2πi ky a/n}`` (n × k) and ``F_xᵀ[b, kx]`` (k × n//2+1)."""
    a = np.arange(k)
    fy = np.exp(-2j * np.pi * np.outer(np.arange(n), a) / n)
    fxt = np.exp(-2j * np.pi * np.outer(a, np.arange(n // 2 + 1)) / n)
    return np.ascontiguousarray(fy), np.ascontiguousarray(fxt)


def _check(w: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"kernels must have shape (..., k, k), got {w.shape}")
    if w.shape[-1] > n:
        raise ValueError(f"kernel size {w.shape[-1]} exceeds the grid n = {n}")
    return w


def kernel_spectra(w: np.ndarray, n: int, method: str = DEFAULT_METHOD, chunk: int = DEFAULT_CHUNK,
                   magnitude: bool = False) -> np.ndarray:
    """Ŵ of kernels ``w (..., k, k)`` zero-padded to ``n × n``: complex ``(..., n, n//2+1)``.

    ``magnitude=True`` returns ``|Ŵ|`` (float64) without keeping the complex array of the whole
    batch. Equal to ``numpy.fft.rfft2(w, s=(n, n))`` to rounding (≈1e-15 relative).
    """
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: must be one of {', '.join(METHODS)}")
    w = _check(w, n)
    lead, k, m = w.shape[:-2], w.shape[-1], n // 2 + 1
    flat = w.reshape(-1, k, k)
    out = np.empty((flat.shape[0], n, m), dtype=np.float64 if magnitude else np.complex128)
    for s in range(0, flat.shape[0], chunk):
        blk = flat[s:s + chunk]
        if method == "rfft":
            spec = np.fft.rfft2(blk, s=(n, n))
        else:
            fy, fxt = dft_matrices(k, n)
            b = blk.shape[0]
            t = (blk.reshape(b * k, k) @ fxt).reshape(b, k, m)           # rows a, columns kx
            t = t.transpose(1, 0, 2).reshape(k, b * m)                   # (a, batch·kx)
            spec = (fy @ t).reshape(n, b, m).transpose(1, 0, 2)          # (batch, ky, kx)
        out[s:s + chunk] = np.abs(spec) if magnitude else spec
    return out.reshape(*lead, n, m)


def layer_kernels(model) -> list[np.ndarray]:
    """The weights of every layer of a ClosureCNN as float64 arrays ``(out, in, k, k)``, layer 1 first."""
    return [c.weight.detach().cpu().double().numpy() for c in model.convs]


def kernel_index(shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Flat numbering of all kernels of a network: per kernel its ``layer`` (1-based), ``out`` and ``in``."""
    layer, out, inn = [], [], []
    for li, shp in enumerate(shapes):
        o, i = np.meshgrid(np.arange(shp[0]), np.arange(shp[1]), indexing="ij")
        layer.append(np.full(o.size, li + 1))
        out.append(o.ravel())
        inn.append(i.ravel())
    return {"layer": np.concatenate(layer), "out": np.concatenate(out), "in": np.concatenate(inn)}
