"""Synthetic FDNS stores in the real format (written with suite.fdns), for the training tests.

ω̄ is a smooth random periodic field per snapshot, ψ̄ solves ∇²ψ̄ = −ω̄, and Π is a *fixed linear
5×5 periodic stencil of ω̄* (plus a constant): a target a convolutional network represents exactly.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from suite.fdns import Layout, create_store, split_labels, write_chunk

STENCIL = np.array([[0.0, 0.1, -0.2, 0.1, 0.0],
                    [0.1, -0.3, 0.5, -0.3, 0.1],
                    [-0.2, 0.5, 1.0, 0.4, -0.2],
                    [0.1, -0.3, 0.6, -0.3, 0.1],
                    [0.0, 0.1, -0.2, 0.1, 0.0]])


def stencil_apply(omega: np.ndarray, stencil: np.ndarray = STENCIL) -> np.ndarray:
    """Periodic cross-correlation of the last two axes with a (2r+1)² stencil (what conv2d computes)."""
    r = stencil.shape[0] // 2
    out = np.zeros_like(omega)
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            out += stencil[i + r, j + r] * np.roll(omega, (-i, -j), axis=(-2, -1))
    return out


def fields(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k1 = np.fft.fftfreq(n, 1 / n)
    k2 = k1[None, :] ** 2 + k1[:, None] ** 2
    amp = np.sqrt(k2) * np.exp(-k2 / (n / 3) ** 2)
    w_hat = amp * np.exp(2j * np.pi * rng.random((count, n, n)))
    omega = np.real(np.fft.ifft2(w_hat)) * n
    omega = omega / omega.std() * 3.0 + 0.5
    psi = np.real(np.fft.ifft2(np.fft.fft2(omega - omega.mean(axis=(-2, -1), keepdims=True))
                               / np.where(k2 > 0, k2, np.inf)))
    return psi, omega


def write_store(path, n: int = 16, snapshots: int = 8, members=(2, 1, 1), chunk_time: int = 4,
                seed: int = 0, complete: bool = True) -> Path:
    """Write a complete synthetic store; returns its path."""
    path = Path(path)
    lay = Layout(members=sum(members), snapshots=snapshots, chunk_time=chunk_time, n_les=n, n_dns=4 * n,
                 L=2 * math.pi, sample_interval=0.1, split=split_labels(*members))
    create_store(path, lay, {"system": "base", "re": 1000.0, "nu": 1e-3, "mu": 0.1, "beta": 0.0, "kf": 4.0,
                             "forcing": "cos-xy", "L": 2 * math.pi, "n_dns": 4 * n, "n_les": n, "dt": 0.01,
                             "filter": "gaussian", "filter_width": 2 * 2 * math.pi / n, "seed": seed,
                             "provenance": "{}"})
    for m in range(lay.members):
        for c in range(lay.chunks_per_member):
            sl = lay.chunk_slice(c)
            cnt = sl.stop - sl.start
            psi, omega = fields(n, cnt, seed * 1000 + m * 100 + c)
            pi = stencil_apply(omega) - 0.25
            z = np.zeros(cnt)
            write_chunk(path, m, c, {"psi": psi, "omega": omega, "pi": pi, "energy": z, "enstrophy": z,
                                     "backscatter": z, "transfer": z,
                                     "spectrum_dns": np.zeros((cnt, lay.nk))})
            if not complete:
                return path
    return path
