"""turbtl.analysis — Fourier analysis of learned kernels, activations and data; Dask aggregation.

Modules: :mod:`.radial` (wavenumber shells/angles), :mod:`.kernels` (batched |Ŵ|),
:mod:`.kernel_stats` (per-kernel spectral statistics without n² spectra: symmetric half-size DFT,
autocorrelation), :mod:`.classify` (objective filter classes, Gabor fit), :mod:`.gabor` (batched
Levenberg–Marquardt Gabor fits), :mod:`.change` (change through TL), :mod:`.activations`,
:mod:`.spectra` (data), :mod:`.framework` (layer recommendation), :mod:`.aggregate`
(dask.distributed over the sweep), :mod:`.plots` and :mod:`.framework_report` (figures; shared
helpers in :mod:`.figures`).

The report calls :func:`summary`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from suite import layout
from suite.errors import DataError

from .classify import CLASSES

FIGURES = ("cc_layers", "cc_by_first_layer", "class_fractions", "most_changed_kernels",
           "activation_ratios", "data_spectra")
STEP_FIGURES = ("framework_step1", "framework_step2", "framework_step3")   # one PNG per target: <name>_<target>.png


def summary(run_dir) -> dict:
    """Key results of ``turbtl analyze`` for the report (reads ``DIR/analysis`` and ``DIR/figures``).

    Returns a dict with

    - ``figures``: ``{name: path}`` of the PNGs present in ``DIR/figures`` (names in :data:`FIGURES`,
      and ``<step>_<target>`` for the :data:`STEP_FIGURES`);
    - ``targets``: per target ``recommended`` (layer of highest selectivity σ, docs/science.md §6.1),
      ``measured_best`` (layer whose re-training alone gave the best mean CC), ``spearman_rho``,
      ``disagreements`` (layers whose predicted and measured ranks differ), ``scores`` (σ per layer)
      with ``score_interval`` ([lo, hi] per layer from step 1's bootstrap), ``measured_cc`` (mean over
      replicates) and ``measured_cc_range`` ([min, max] over replicates) per layer, ``n_replicates``,
      ``agreement`` (method → metric → [value, lo, hi], methods framework/random/params/shallowest,
      metrics spearman/top1/top2), ``band_shells`` (step 1's band), ``act_mismatch`` (per layer, the
      base network's in-band log mismatch of its input and output), ``step3`` (per layer: networks
      that re-trained it, mean kernels above the threshold, mean share of their change in the band,
      mean enrichment), ``n_above`` (kernels above the per-layer-and-network threshold, all networks),
      ``class_fractions_tl`` (per layer, class → mean fraction over the TL networks), ``data_bands``
      (var → [k_lo, k_hi] of the largest significant difference);
    - ``class_fractions_base``: per layer, class → fraction, of the base network;
    - ``classes``, ``layers``.

    Raises suite.errors.DataError when the analysis has not been run or was interrupted.

    Long because this docstring lists every key of the result; the body (about 60 lines) only reads
    the stores.
    """
    # lazy: the package's __init__ stays light (importing analysis.radial or analysis.kernels must
    # not load the Dask/xarray pipeline of analysis.aggregate)
    from .aggregate import open_result

    run_dir = Path(run_dir)
    a = layout.analysis_dir(run_dir)
    if not (a / "framework.zarr").exists() or not (a / "base.zarr").exists():
        raise DataError(f"{a}: no analysis results (run `turbtl analyze` first)", field="run-dir")
    base, fw, data = open_result(a / "base.zarr"), open_result(a / "framework.zarr"), open_result(a / "data_spectra.zarr")
    comp = json.loads(fw.attrs["comparison"])
    layers = [int(x) for x in base["layer"].values]

    def fractions(arr):
        return {str(l): {c: float(arr[i, j]) for j, c in enumerate(CLASSES)} for i, l in enumerate(layers)}

    targets = {}
    for t in fw["target"].values:
        t = str(t)
        sw = open_result(a / f"sweep_{t}.zarr")
        done = sw["done"].values
        if not done.all():  # an interrupted analysis: never report its partial rows as results
            raise DataError(f"{a / f'sweep_{t}.zarr'}: analysis incomplete ({int(done.sum())} of {done.size} "
                            "networks done); run `turbtl analyze` again to finish it", field="run-dir")
        bands = {str(v): [float(x) for x in data["band"].sel(target=t, var=v).values[:2]] for v in data["var"].values}
        f = fw.sel(target=t)
        agree = {str(m): {str(q): [float(f[key].sel({"method": m, "metric": q})) for key in ("agreement", "agreement_lo",
                                                                                     "agreement_hi")]
                          for q in fw["metric"].values} for m in fw["method"].values}
        step3 = {}
        for li, l in enumerate(layers):
            on = np.array([str(m)[li] == "1" for m in sw["mask"].values])
            step3[str(l)] = {"networks": int(on.sum()),
                             "n_above": float(sw["n_above"].values[on, li].mean()) if on.any() else float("nan"),
                             "share_in_band": _mean(sw["change_in_band"].values[on, li]),
                             "enrichment": _mean(sw["change_enrichment"].values[on, li]),
                             "k_peak": _mean(sw["change_k_peak"].values[on, li])}
        targets[t] = comp[t] | {
            "scores": [float(x) for x in f["score"].values],
            "score_interval": [[float(a), float(b)] for a, b in zip(f["score_lo"].values, f["score_hi"].values)],
            "measured_cc": [float(x) for x in f["measured_cc"].values],
            "measured_cc_range": [[float(a), float(b)] for a, b in zip(f["measured_cc_min"].values,
                                                                       f["measured_cc_max"].values)],
            "n_replicates": int(f["n_replicates"]),
            "agreement": agree,
            "band_shells": [int(k) for k in data["k"].values[data["in_band"].sel(target=t).values]],
            "act_mismatch": {"input": [float(x) for x in f["act_mismatch_in"].values],
                             "output": [float(x) for x in f["act_mismatch_out"].values]},
            "step3": step3,
            "n_above": int(sw["n_above"].sum()),
            "networks": int(sw.sizes["net"]),
            "class_fractions_tl": fractions(sw["class_frac"].mean("net").values),
            "data_bands": bands,
        }
    names = list(FIGURES) + [f"{s}_{t}" for t in targets for s in STEP_FIGURES]
    figs = {f: str(layout.figures_dir(run_dir) / f"{f}.png") for f in names
            if (layout.figures_dir(run_dir) / f"{f}.png").is_file()}
    return {"figures": figs, "targets": targets, "class_fractions_base": fractions(base["class_frac"].values),
            "classes": list(CLASSES), "layers": layers}


def _mean(a) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")
