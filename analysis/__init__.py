"""turbtl.analysis — Fourier analysis of learned kernels, activations and data; Dask aggregation.

Modules: :mod:`.radial` (wavenumber shells/angles), :mod:`.kernels` (batched |Ŵ|),
:mod:`.classify` (objective filter classes, Gabor fit), :mod:`.change` (change through TL),
:mod:`.activations`, :mod:`.spectra` (data), :mod:`.framework` (layer recommendation),
:mod:`.aggregate` (dask.distributed over the sweep), :mod:`.plots` (figures).

The report calls :func:`summary`.
"""
from __future__ import annotations

import json
from pathlib import Path

from suite import layout

FIGURES = ("cc_layers", "cc_by_first_layer", "class_fractions", "most_changed_kernels",
           "activation_ratios", "data_spectra")


def summary(run_dir) -> dict:
    """Key results of ``turbtl analyze`` for the report (reads ``DIR/analysis`` and ``DIR/figures``).

    Returns a dict with

    - ``figures``: ``{name: path}`` of the PNGs present in ``DIR/figures`` (names in :data:`FIGURES`);
    - ``targets``: per target ``recommended`` (layer ranked first by the framework), ``measured_best``
      (layer whose re-training alone gave the best CC), ``spearman_rho``, ``disagreements``
      (layers whose predicted and measured ranks differ), ``scores`` and ``measured_cc`` per layer,
      ``dspec_threshold`` (the percentile of the spectral change) and ``n_above`` (kernels above it),
      ``class_fractions_tl`` (per layer, class → mean fraction over the TL networks), ``data_bands``
      (var → [k_lo, k_hi] where the target's spectrum differs most from the base's);
    - ``class_fractions_base``: per layer, class → fraction, of the base network;
    - ``classes``, ``layers``.

    Raises suite.errors.DataError when the analysis has not been run or was interrupted.
    """
    from suite.errors import DataError

    from .aggregate import open_result
    from .classify import CLASSES

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
        targets[t] = comp[t] | {
            "scores": [float(x) for x in fw["score"].sel(target=t).values],
            "measured_cc": [float(x) for x in fw["measured_cc"].sel(target=t).values],
            "dspec_threshold": float(sw.attrs.get("dspec_threshold", float("nan"))),
            "n_above": int(sw["n_above"].sum()),
            "networks": int(sw.sizes["net"]),
            "class_fractions_tl": fractions(sw["class_frac"].mean("net").values),
            "data_bands": bands,
        }
    figs = {f: str(layout.figures_dir(run_dir) / f"{f}.png") for f in FIGURES
            if (layout.figures_dir(run_dir) / f"{f}.png").is_file()}
    return {"figures": figs, "targets": targets, "class_fractions_base": fractions(base["class_frac"].values),
            "classes": list(CLASSES), "layers": layers}
