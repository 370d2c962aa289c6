"""Spectra of the activations of every layer (docs/science.md §6): base vs transfer-learned network.

For inputs ``x`` (normalized ψ̄, ω̄ of the target system) :func:`activation_spectra` returns the
angle-averaged spectra (``suite.metrics.spectrum``: mean over samples and channels) of the
pre-ReLU output of every layer and of the post-ReLU output (the input of the next layer; equal to
the pre-ReLU output for the last, linear layer): ``(layer, stage, k)`` with stage 0 = pre, 1 = post.
:func:`layer_input_spectra` gives the spectra of what enters each layer (the input ``x`` for
layer 1), which the framework compares between systems.
"""
from __future__ import annotations

import numpy as np

from suite.metrics import spectrum

STAGES = ("pre", "post")


def normalized_inputs(psi: np.ndarray, omega: np.ndarray, norm: dict):
    """``(batch, 2, n, n)`` float32 tensor of (ψ̄, ω̄) standardized with a model's ``norm``."""
    import torch

    x = np.stack([(np.asarray(psi) - norm["mean"]["psi"]) / norm["std"]["psi"],
                  (np.asarray(omega) - norm["mean"]["omega"]) / norm["std"]["omega"]], axis=1)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def activation_spectra(model, x, L: float = 2 * np.pi) -> np.ndarray:
    """``(layer, 2, n//2+1)`` spectra of the pre- and post-ReLU outputs of every layer on ``x``."""
    import torch

    with torch.no_grad():
        pres = model.layer_outputs(x)
    out = []
    for i, pre in enumerate(pres):
        a = pre.double().numpy()
        post = a if i == len(pres) - 1 else np.maximum(a, 0.0)
        out.append([spectrum(a, L)[1], spectrum(post, L)[1]])
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
