"""The physics-guided layer recommendation (docs/science.md §6), made before any transfer learning.

Principle. A layer must be re-trained when what it sees on the target system differs from what
it saw on the base system *at the wavenumbers where its kernels act*. From the base network and
the data alone:

- ``S_ℓ(k)``: the spectral weight of layer ℓ's kernels, the shell sum of ``|Ŵ|²`` averaged over
  its kernels and normalized to ``Σ_k S_ℓ(k) = 1`` (where the layer's filters pass energy);
- ``D_ℓ(k) = |log10 E^target_ℓ(k) − log10 E^base_ℓ(k)|``: the mismatch, in decades, of the
  spectrum of layer ℓ's input between the target and the base system, both through the *base*
  network (layer 1: the normalized ψ̄, ω̄ themselves; layer ℓ > 1: the post-ReLU output of ℓ−1);
- ``score_ℓ = Σ_k S_ℓ(k) D_ℓ(k)``: the mismatch seen through the layer's pass band.

Layers are recommended in decreasing score. After the sweep, :func:`measured_ranking` orders the
layers by the test CC of re-training each one alone (or, without single-layer runs, by the mean
CC of the subsets whose first trainable layer it is), and :func:`compare` reports the Spearman
rank correlation and the layers whose ranks differ.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .kernels import kernel_spectra
from .radial import half_plane
from .spectra import log_difference


def layer_weight(w_layer: np.ndarray, n: int) -> np.ndarray:
    """``S_ℓ(k)`` of one layer's kernels ``(out, in, k, k)``: normalized shell sums of mean |Ŵ|²."""
    mag = kernel_spectra(w_layer.reshape(-1, *w_layer.shape[-2:]), n, magnitude=True)
    s = half_plane(n).shell_sum((mag * mag).mean(axis=0))
    tot = s.sum()
    return s / tot if tot > 0 else s


def scores(weights: np.ndarray, mismatch: np.ndarray) -> np.ndarray:
    """``score_ℓ = Σ_k S_ℓ(k) D_ℓ(k)`` for ``weights`` and ``mismatch`` of shape ``(layer, k)``."""
    return np.sum(np.asarray(weights) * np.asarray(mismatch), axis=-1)


def mismatch(input_spec_base: np.ndarray, input_spec_target: np.ndarray) -> np.ndarray:
    """``D_ℓ(k)`` from the ``(layer, k)`` input spectra of the base network on base and target data."""
    return log_difference(input_spec_base, input_spec_target)


def ranking(values: np.ndarray) -> np.ndarray:
    """1-based layers in decreasing ``values`` (ties: shallower first)."""
    v = np.asarray(values, dtype=float)
    return np.lexsort((np.arange(v.size), -v)) + 1


def measured_ranking(results, n_layers: int) -> np.ndarray:
    """Mean test CC per layer from a sweep's results table (NaN for layers never measured).

    Single-layer runs (``kind == "tl"``, ``n_layers_trained == 1``) when there are any, else all TL
    runs grouped by ``first_trainable``.
    """
    tl = results[results["kind"] == "tl"]
    singles = tl[tl["n_layers_trained"] == 1]
    use = singles if len(singles) else tl
    by = use.groupby("first_trainable")["cc"].mean()
    out = np.full(n_layers, np.nan)
    for layer, v in by.items():
        if 1 <= int(layer) <= n_layers:
            out[int(layer) - 1] = v
    return out


def compare(score: np.ndarray, measured_cc: np.ndarray) -> dict:
    """Spearman ρ between recommendation scores and measured CCs, and where the ranks disagree."""
    score, cc = np.asarray(score, float), np.asarray(measured_cc, float)
    ok = np.isfinite(score) & np.isfinite(cc)
    rho = float(spearmanr(score[ok], cc[ok]).statistic) if ok.sum() >= 2 else float("nan")
    layers = np.flatnonzero(ok) + 1
    pred_rank = {int(l): r + 1 for r, l in enumerate(ranking(np.where(ok, score, -np.inf))[:ok.sum()])}
    meas_rank = {int(l): r + 1 for r, l in enumerate(ranking(np.where(ok, cc, -np.inf))[:ok.sum()])}
    disagree = [{"layer": int(l), "predicted_rank": pred_rank[l], "measured_rank": meas_rank[l]}
                for l in layers if pred_rank[l] != meas_rank[l]]
    return {"spearman_rho": rho,
            "recommended": int(ranking(np.where(ok, score, -np.inf))[0]) if ok.any() else None,
            "measured_best": int(ranking(np.where(ok, cc, -np.inf))[0]) if ok.any() else None,
            "disagreements": disagree}
