"""Spectra of the activations of every layer (docs/science.md §6): base vs transfer-learned network.

For inputs ``x`` (normalized ψ̄, ω̄ of the target system) :func:`activation_spectra` returns the
angle-averaged spectra (``suite.metrics.spectrum``: mean over samples and channels) of the
pre-ReLU output of every layer and of the post-ReLU output (the input of the next layer; equal to
the pre-ReLU output for the last, linear layer): ``(layer, stage, k)`` with stage 0 = pre, 1 = post.
:func:`layer_input_spectra` gives the spectra of what enters each layer (the input ``x`` for
layer 1), which the framework compares between systems.

The spectra are those of ``suite.metrics.spectrum`` (full-plane shells, ``|f̂|²/n⁴``, mean over the
maps) computed the cheap way, to rounding the same numbers: a real ``rfft2`` in float64 of chunks
of :data:`CHUNK` maps (half the work of the full complex ``fft2``), the power averaged over the maps
first and summed over shells once, with each half-plane column counted with its full-plane
multiplicity (``analysis.radial.HalfPlane.shell_sum``). After the network's forward pass, which
cannot be avoided, this was the per-network cost of the analysis (bench/analysis_harness.py times it).
"""
from __future__ import annotations

import numpy as np

from suite.metrics import spectrum

from .radial import half_plane

#: maps per float64 rfft2 batch (32 × 128² × 8 B = 4 MB)
CHUNK = 32

STAGES = ("pre", "post")


def normalized_inputs(psi: np.ndarray, omega: np.ndarray, norm: dict):
    """``(batch, 2, n, n)`` float32 tensor of (ψ̄, ω̄) standardized with a model's ``norm``."""
    import torch

    x = np.stack([(np.asarray(psi) - norm["mean"]["psi"]) / norm["std"]["psi"],
                  (np.asarray(omega) - norm["mean"]["omega"]) / norm["std"]["omega"]], axis=1)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def mean_spectrum(maps: np.ndarray, relu: bool = False) -> np.ndarray:
    """``(n//2+1,)`` = ``suite.metrics.spectrum(maps)[1]`` (to rounding) of maps ``(..., n, n)``,
    of ``max(maps, 0)`` with ``relu``: see the module doc."""
    import scipy.fft

    a = np.asarray(maps)
    n = a.shape[-1]
    a = a.reshape(-1, a.shape[-2], n)
    power = np.zeros((n, n // 2 + 1))
    for s in range(0, a.shape[0], CHUNK):
        b = np.asarray(a[s:s + CHUNK], dtype=np.float64)
        if relu:
            b = np.maximum(b, 0.0)
        f = scipy.fft.rfft2(b, overwrite_x=True)
        np.add(power, np.einsum("bij,bij->ij", f.real, f.real) + np.einsum("bij,bij->ij", f.imag, f.imag),
               out=power)
    power /= a.shape[0] * float(n) ** 4
    return half_plane(n).shell_sum(power)


def activation_spectra(model, x, L: float = 2 * np.pi) -> np.ndarray:
    """``(layer, 2, n//2+1)`` spectra of the pre- and post-ReLU outputs of every layer on ``x``
    (``L`` is accepted for symmetry with ``suite.metrics.spectrum``; the shells are integer
    wavenumbers in units of 2π/L, so the values do not depend on it)."""
    import torch

    with torch.no_grad():
        pres = model.layer_outputs(x)
    out = []
    for i, pre in enumerate(pres):
        a = pre.numpy()
        e = mean_spectrum(a)
        out.append([e, e if i == len(pres) - 1 else mean_spectrum(a, relu=True)])
    return np.asarray(out)


def layer_input_spectra(model, x, L: float = 2 * np.pi) -> np.ndarray:
    """``(layer, n//2+1)``: spectrum of the input of every layer (x, then post-ReLU outputs)."""

    act = activation_spectra(model, x, L)
    first = spectrum(x.double().numpy(), L)[1]
    return np.concatenate([first[None], act[:-1, 1]], axis=0)


def spectrum_ratio(tl: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``tl / base`` where the base spectrum is nonzero, NaN elsewhere."""
    base = np.asarray(base, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, np.asarray(tl) / np.where(base > 0, base, 1.0), np.nan)
