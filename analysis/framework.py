"""The physics-guided layer recommendation (docs/science.md §6.1), step by step, and its test.

The paper's procedure is qualitative; turbtl turns it into the rule below (§6.1 says which parts
are the paper's and which are ours).

Step 1 (:mod:`.spectra`) gives the data mismatch ``M(k)``: per shell, the largest significant
``|log10 E_target − log10 E_base|`` of the network's normalized inputs and output, with bootstrap
replicates, and the band ``M ≥ max M / 2``.

Step 2, from the base network alone: every kernel's *normalized* power response
``g(k) = ⟨|Ŵ|²⟩_shell(k) / max_k ⟨|Ŵ|²⟩_shell`` (shell *means*, so that the mode count of a shell
does not enter; 1 at the kernel's peak). A layer's gain ``G_ℓ(k)`` is the mean of its kernels'
``g`` weighted by the kernels' energy ``‖w‖²`` (dead kernels do not vote). The layer's
*selectivity* for the mismatch is

    σ_ℓ = Σ_k M(k) G_ℓ(k) / ( Σ_k M(k) · mean_{k≥1} G_ℓ(k) )

— its mean gain where the systems differ, relative to its mean gain over all shells (σ > 1: the
layer's filters pass the mismatch band preferentially). Layers are recommended in decreasing σ.
The activation spectra of the base network on base and target inputs are reported beside it
(:func:`band_log_mismatch`) but do not enter σ: a linear filter leaves a log ratio unchanged, and
what a layer receives is produced by the frozen layers below it.

Step 4, the test: :func:`measured_table` takes the single-layer CCs of every (fraction, seed)
replicate of the sweep; :func:`test` bootstraps replicates (and, paired, step 1's replicates of
``M``) and gives the agreement of the recommendation with the measured ranking — Spearman ρ,
top-1 and top-2 hits — with intervals, next to the null rankings (random; by trainable-parameter
count) and the paper's headline heuristic (shallowest first).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from .kernel_stats import sym_dft
from .radial import half_plane
from .spectra import log_difference

METHODS = ("framework", "random", "params", "shallowest")
METRICS = ("spearman", "top1", "top2")
N_BOOT = 1000


# --------------------------------------------------------------------------------------------
# step 2: the base network's kernels and activations


def kernel_gain(w: np.ndarray, n: int) -> np.ndarray:
    """Normalized power response ``g(k)`` ``(N, n//2+1)`` of kernels ``(N, k, k)`` (peak 1; 0 for a zero kernel)."""
    w = np.asarray(w, dtype=np.float64).reshape(-1, *np.shape(w)[-2:])
    g = sym_dft(w.shape[-1], n).power_functionals(w)["shell_mean"]     # from the autocorrelation
    peak = g.max(axis=1, keepdims=True)
    return g / np.where(peak > 0, peak, 1.0)


def layer_gain(w_layer: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """``G_ℓ(k)`` of one layer's kernels ``(out, in, k, k)``: energy-weighted mean of the kernels'
    ``g(k)``, and the 25th/75th percentiles of ``g`` over the layer's kernels (``q25``, ``q75``)."""
    w = np.asarray(w_layer).reshape(-1, *np.shape(w_layer)[-2:])
    g = kernel_gain(w, n)
    e = np.sum(w * w, axis=(-2, -1))
    wt = e / e.sum() if e.sum() > 0 else np.full(e.size, 1.0 / e.size)
    q25, q75 = np.percentile(g, [25, 75], axis=0)
    return {"G": wt @ g, "q25": q25, "q75": q75}


def selectivity(gain: np.ndarray, mism: np.ndarray) -> np.ndarray:
    """``σ_ℓ`` for gains ``(layer, k)`` and a mismatch ``(k)`` or replicates ``(B, k)``:
    ``(layer)`` or ``(B, layer)``; NaN where the mismatch is zero everywhere."""
    G = np.asarray(gain, float)
    M = np.asarray(mism, float)
    gbar = G[:, 1:].mean(axis=1)                           # shell 0 (the mean) is not a scale
    num = M @ G.T                                           # (..., layer)
    den = M.sum(axis=-1)[..., None] * gbar
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def band_log_mismatch(spec_base: np.ndarray, spec_target: np.ndarray, mism: np.ndarray) -> np.ndarray:
    """Mismatch-weighted mean ``|log10 E_target − log10 E_base|`` per layer of ``(layer, k)`` spectra."""
    d = log_difference(np.asarray(spec_base), np.asarray(spec_target))
    M = np.asarray(mism, float)
    return d @ M / M.sum() if M.sum() > 0 else np.full(d.shape[0], np.nan)


def layer_params(model) -> np.ndarray:
    """Trainable parameters (weights and biases) of every layer of a ClosureCNN."""
    return np.array([sum(p.numel() for p in c.parameters()) for c in model.convs], dtype=float)


# --------------------------------------------------------------------------------------------
# rankings and the measured side


def ranking(values: np.ndarray) -> np.ndarray:
    """1-based layers in decreasing ``values`` (ties: shallower first; NaN last)."""
    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, -np.inf)
    return np.lexsort((np.arange(v.size), -v)) + 1


def measured_table(results, n_layers: int) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """``(replicate, layer)`` test CCs of re-training each layer alone, one row per (fraction, seed)
    of the sweep's results table (NaN where a layer was not measured), and the replicates' labels.

    Uses single-layer runs (``kind == "tl"``, ``n_layers_trained == 1``) when there are any, else
    all TL runs averaged by ``first_trainable``.
    """
    tl = results[results["kind"] == "tl"]
    singles = tl[tl["n_layers_trained"] == 1]
    use = singles if len(singles) else tl
    reps = sorted({(float(f), int(s)) for f, s in zip(use["fraction"], use["seed"])})
    out = np.full((len(reps), n_layers), np.nan)
    for r, (f, s) in enumerate(reps):
        sel = use[(use["fraction"].astype(float) == f) & (use["seed"].astype(int) == s)]
        for layer, v in sel.groupby("first_trainable")["cc"].mean().items():
            if 1 <= int(layer) <= n_layers:
                out[r, int(layer) - 1] = v
    return out, reps


def measured_ranking(results, n_layers: int) -> np.ndarray:
    """Mean test CC per layer over the replicates of :func:`measured_table` (NaN: never measured)."""
    tab, _ = measured_table(results, n_layers)
    if not len(tab):
        return np.full(n_layers, np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(tab, axis=0)


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        return self._w.__exit__(*a)


# --------------------------------------------------------------------------------------------
# step 4: agreement and its bootstrap


def _top_hit(score: np.ndarray, best: int, k: int) -> float:
    """Probability that layer ``best`` (0-based) is among the ``k`` highest ``score`` with ties broken at random."""
    s = score[best]
    g = int(np.sum(score > s))
    t = int(np.sum(score == s))
    return float(np.clip((k - g) / t, 0.0, 1.0))


def agreement(score: np.ndarray, cc: np.ndarray) -> dict[str, float]:
    """Spearman ρ between ``score`` and measured ``cc`` per layer, and whether the measured best
    layer is the recommended one (``top1``) or among the two recommended first (``top2``); only
    layers finite in both count."""
    score, cc = np.asarray(score, float), np.asarray(cc, float)
    ok = np.isfinite(score) & np.isfinite(cc)
    if ok.sum() < 2:
        return {m: float("nan") for m in METRICS}
    s, c = score[ok], cc[ok]
    with _quiet():
        rho = spearmanr(s, c).statistic if np.ptp(s) > 0 and np.ptp(c) > 0 else float("nan")
    best = int(np.argmax(c))
    return {"spearman": float(rho), "top1": _top_hit(s, best, 1), "top2": _top_hit(s, best, 2)}


def baseline_scores(n_layers: int, n_params: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of the deterministic reference rankings: by parameter count, shallowest first."""
    return {"params": np.asarray(n_params, float), "shallowest": -np.arange(1, n_layers + 1, dtype=float)}


def test(score: np.ndarray, score_boot: np.ndarray, cc_table: np.ndarray, n_params: np.ndarray,
         n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Agreement of every method of :data:`METHODS` with the measured single-layer ranking.

    ``score`` (layer) and its step-1 replicates ``score_boot`` (B, layer); ``cc_table``
    (replicate, layer) from :func:`measured_table`. Each bootstrap draw resamples the replicates
    with replacement (the measured CC per layer is their mean) and pairs them with one replicate of
    ``score``; the random ranking draws a new permutation each time. Returns
    ``{"value", "lo", "hi"}`` arrays ``(method, metric)``: ``value`` is the estimate on the data as
    they are (for ``random`` the mean over draws), ``lo``/``hi`` the 2.5/97.5 percentiles; plus
    ``n_replicates``. With one replicate the interval covers step 1's uncertainty only.
    """
    rng = np.random.default_rng(seed)
    L = len(score)
    cc_table = np.asarray(cc_table, float).reshape(-1, L)
    R = cc_table.shape[0]
    base = baseline_scores(L, n_params)
    value = np.full((len(METHODS), len(METRICS)), np.nan)
    draws = np.full((n_boot, len(METHODS), len(METRICS)), np.nan)
    if R == 0:
        return {"value": value, "lo": value.copy(), "hi": value.copy(), "n_replicates": 0}
    with _quiet():
        cc_mean = np.nanmean(cc_table, axis=0)
    for b in range(n_boot):
        with _quiet():
            cc_b = np.nanmean(cc_table[rng.integers(0, R, R)], axis=0)
        sb = np.asarray(score_boot)[b % len(score_boot)] if len(score_boot) else score
        perm = rng.permutation(L).astype(float)
        for i, (mth, s) in enumerate((("framework", sb), ("random", perm), ("params", base["params"]),
                                      ("shallowest", base["shallowest"]))):
            a = agreement(s, cc_b)
            draws[b, i] = [a[m] for m in METRICS]
    for i, mth in enumerate(METHODS):
        if mth == "random":
            with _quiet():
                value[i] = np.nanmean(draws[:, i], axis=0)
        else:
            a = agreement(score if mth == "framework" else base[mth], cc_mean)
            value[i] = [a[m] for m in METRICS]
    with _quiet():
        lo, hi = np.nanpercentile(draws, 2.5, axis=0), np.nanpercentile(draws, 97.5, axis=0)
    return {"value": value, "lo": lo, "hi": hi, "n_replicates": R}


def compare(score: np.ndarray, measured_cc: np.ndarray) -> dict:
    """Spearman ρ between recommendation scores and measured CCs, and where the ranks disagree."""
    score, cc = np.asarray(score, float), np.asarray(measured_cc, float)
    ok = np.isfinite(score) & np.isfinite(cc)
    rho = agreement(score, cc)["spearman"]
    layers = np.flatnonzero(ok) + 1
    pred_rank = {int(l): r + 1 for r, l in enumerate(ranking(np.where(ok, score, -np.inf))[:ok.sum()])}
    meas_rank = {int(l): r + 1 for r, l in enumerate(ranking(np.where(ok, cc, -np.inf))[:ok.sum()])}
    disagree = [{"layer": int(l), "predicted_rank": pred_rank[l], "measured_rank": meas_rank[l]}
                for l in layers if pred_rank[l] != meas_rank[l]]
    return {"spearman_rho": rho,
            "recommended": int(ranking(np.where(np.isfinite(score), score, -np.inf))[0])
            if np.isfinite(score).any() else None,
            "measured_best": int(ranking(np.where(ok, cc, -np.inf))[0]) if ok.any() else None,
            "disagreements": disagree}


# --------------------------------------------------------------------------------------------
# step 3: where re-training changed the kernels


def change_profiles(mag_base: np.ndarray, mag_tl: np.ndarray, dspec: np.ndarray, percentile: float
                    ) -> dict[str, np.ndarray]:
    """Step 3 for the kernels of one re-trained layer of one network.

    ``mag_*`` ``(N, n, n//2+1)`` = |Ŵ| of the layer's kernels, ``dspec`` (N) their spectral change.
    The threshold is the ``percentile`` of ``dspec`` over *this layer of this network* (as the
    authors take it); the kernels strictly above it (at least the largest one) are the "most
    changed". Returns ``threshold``, ``above`` (mask), ``top`` (k): the shell mean of
    ``(|Ŵ_TL| − |Ŵ_base|)²`` averaged over the most-changed kernels and normalized to sum 1 (where
    in k they changed), and ``all`` (k): the same over every kernel of the layer.
    """
    n = mag_base.shape[-2]
    return change_profiles_from(half_plane(n).shell_mean((np.asarray(mag_tl) - np.asarray(mag_base)) ** 2),
                                dspec, percentile)


def change_profiles_from(d2: np.ndarray, dspec: np.ndarray, percentile: float) -> dict[str, np.ndarray]:
    """:func:`change_profiles` from the kernels' shell means ``d2 (N, k)`` of ``(|Ŵ_TL| − |Ŵ_base|)²``."""
    thr = float(np.percentile(dspec, percentile))
    above = dspec > thr
    if not above.any():
        above = dspec >= dspec.max()

    def norm(p):
        t = p.sum()
        return p / t if t > 0 else np.full(p.shape, np.nan)
    return {"threshold": thr, "above": above, "top": norm(d2[above].mean(axis=0)), "all": norm(d2.mean(axis=0))}


def band_share(profile: np.ndarray, in_band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of a change profile ``(..., k)`` (normalized to sum 1) inside the step-1 band, and its
    *enrichment*: that share over the band's share of the shells ≥ 1 (1 = no preference for the band)."""
    b = np.asarray(in_band, bool)
    p = np.asarray(profile, float)
    share = p[..., b].sum(axis=-1)
    frac = b[1:].sum() / max(b.size - 1, 1)
    return share, share / frac if frac > 0 else np.full(np.shape(share), np.nan)
