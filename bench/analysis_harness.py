"""Benchmark harnesses of the analysis: kernel spectra (kernels/s) against the batched-GEMM floor,
and the Dask aggregation of a whole sweep. They used to live in analysis/kernels.py and
analysis/aggregate.py; the analysis modules hold no timing code. bench/analysis.py (asv) calls them.

- :func:`measure_throughput`: kernels/s of ``|Ŵ|`` by each method of
  :func:`analysis.kernels.kernel_spectra`, and the floor: the DFT-matrix FLOPs per kernel at the
  measured float64 GEMM rate;
- :func:`aggregation_throughput`: networks/s and kernels/s of :func:`analysis.aggregate.analyze_sweep`
  on a fresh LocalCluster;
- :func:`measure_kernel_costs`: the per-kernel costs of a re-trained layer (spectra, features,
  classes, ``dW``/``dspec``, change profiles) and of a Gabor fit, the former path
  (bench/analysis_reference.py) and the current one side by side in one process, repeated, in CPU
  seconds, next to two floors measured in the same process: the zero-padded batched ``rfft2`` of
  the same kernels, and the FLOPs of the symmetric DFT at the measured GEMM rate; the Gabor fits
  of both paths compared kernel by kernel (parameters, residuals);
- :func:`paper_counts` and :func:`project`: the kernels a preset's analysis fits and transforms
  (networks × re-trained layers × kernels, from the configuration) and the core-hours they take at
  the measured costs.

Times are CPU seconds of this process (``time.process_time``; one thread): core-seconds, what a
projection in core-hours needs, and less disturbed than wall time on a shared machine.
"""
from __future__ import annotations

import time

import numpy as np

from analysis.aggregate import analyze_sweep, layer_change, make_client
from analysis.classify import CLASSES, synthetic_kernels
from analysis.gabor import fit_gabor_batch
from analysis.kernel_stats import CHUNK
from analysis.kernels import DEFAULT_CHUNK, METHODS, kernel_spectra
from suite.config import load_config
from suite.masks import select

from .analysis_reference import fit_gabor_trf, layer_change_old


def _best_time(fn, repeat: int) -> float:
    fn()  # warm-up (DFT matrices, FFT plans, allocator)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def dft_flops(k: int, n: int) -> float:
    """Real FLOPs per kernel of the two DFT-matrix products (real×complex, then complex×complex)."""
    m = n // 2 + 1
    return 2.0 * k * k * m * 2 + 8.0 * n * k * m


def gemm_rate(size: int = 512, repeat: int = 3) -> float:
    """Measured float64 GEMM rate of this process (FLOP/s) on a square ``size³`` product."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    return 2.0 * size ** 3 / _best_time(lambda: a @ b, repeat)


def measure_throughput(n_kernels: int = 4096, k: int = 5, n: int = 128, chunk: int = DEFAULT_CHUNK,
                       repeat: int = 3) -> dict[str, float]:
    """Kernels/s of ``|Ŵ|`` by each method, and the batched-GEMM floor, measured in this process.

    The floor is the DFT-matrix FLOP count per kernel divided by the measured GEMM rate: the
    kernels/s the ``dft`` method would reach if its products ran at the peak of a square GEMM.
    """
    w = np.random.default_rng(1).standard_normal((n_kernels, k, k))
    out = {"n_kernels": float(n_kernels), "k": float(k), "n": float(n), "chunk": float(chunk)}
    for method in METHODS:
        t = _best_time(lambda: kernel_spectra(w, n, method=method, chunk=chunk, magnitude=True), repeat)
        out[f"{method}_kernels_per_s"] = n_kernels / t
    rate = gemm_rate()
    out["gemm_gflops"] = rate / 1e9
    out["floor_kernels_per_s"] = rate / dft_flops(k, n)
    return out


def aggregation_throughput(run_dir, targets: list[str], base_system: str, workers: int) -> dict:
    """Networks/s and kernels/s of :func:`analyze_sweep` on a fresh LocalCluster of ``workers``
    (recomputes everything)."""
    client, cluster = make_client(workers)
    try:
        info = analyze_sweep(run_dir, targets, base_system, client, force=True, progress=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return info | {"workers": workers, "networks_per_s": info["computed"] / info["seconds"],
                   "kernels_per_s": info["kernels"] / info["seconds"]}


# --------------------------------------------------------------------------------------------
# per-kernel costs, old and new, and the projection of a preset


def _cpu(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def sym_dft_flops(k: int, n: int) -> float:
    """Real FLOPs per kernel of :meth:`analysis.kernel_stats.SymDFT.magnitudes`' products."""
    m = n // 2 + 1
    return 2.0 * m * k * k + 4.0 * m * m * k


def _spread(v) -> dict[str, float]:
    v = np.asarray(v, dtype=float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def _layer_pair(n_kernels: int, k: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    wb = 0.1 * rng.standard_normal((n_kernels, k, k))
    return wb, wb + 0.02 * rng.standard_normal(wb.shape)


def measure_kernel_costs(k: int = 5, n: int = 128, n_kernels: int = 1024, n_fit_old: int = 24,
                         n_fit_new: int = 1024, repeat: int = 3) -> dict:
    """Per-kernel CPU microseconds of a re-trained layer without fits (``layer_old``/``layer_new``: per
    TL kernel, its base kernel included) and per Gabor fit (``fit_old``/``fit_new``), each as
    ``{"min", "median", "max"}`` over ``repeat`` interleaved rounds; the floors ``fft_pair`` (rfft2 of
    the kernel and its base, zero-padded to n², chunks of 64) and ``gemm_pair`` (the symmetric DFT's
    FLOPs for both at the GEMM rate); and ``fit_compare``, the two fits' results on the same
    ``n_fit_old`` oriented kernels (labelled synthetic set, 5 % noise)."""
    wb, wt = _layer_pair(n_kernels, k)
    both = np.concatenate([wb, wt])
    ws, lab = synthetic_kernels(max(n_fit_new, n_fit_old) // 1 + 1, k, n, noise=0.05, seed=7)
    orient = ws[lab == CLASSES.index("oriented")][:n_fit_new]
    layer_change(wb[:64], wt[:64], n, 99.9, fit=False)            # warm-up: matrices, plans
    layer_change_old(wb[:64], wt[:64], n, fit=False)
    t = {key: [] for key in ("layer_old", "layer_new", "fft_pair", "fit_old", "fit_new")}
    old_fits = []
    for r in range(repeat):
        t["layer_old"].append(_cpu(lambda: layer_change_old(wb, wt, n, fit=False)) / n_kernels)
        t["layer_new"].append(_cpu(lambda: layer_change(wb, wt, n, 99.9, fit=False)) / n_kernels)
        t["fft_pair"].append(_cpu(lambda: [np.fft.rfft2(both[s:s + 64], s=(n, n))
                                           for s in range(0, both.shape[0], 64)]) / n_kernels)
        sub = orient[r * n_fit_old:(r + 1) * n_fit_old]
        t0 = time.process_time()
        old_fits.append([fit_gabor_trf(x, n) for x in sub])
        t["fit_old"].append((time.process_time() - t0) / len(sub))
        t["fit_new"].append(_cpu(lambda: fit_gabor_batch(orient, n)) / len(orient))
    rate = gemm_rate()
    out = {key: _spread(np.asarray(v) * 1e6) for key, v in t.items()}
    out["gemm_pair"] = 2 * sym_dft_flops(k, n) / rate * 1e6
    out["gemm_gflops"] = rate / 1e9
    sub = orient[:len(old_fits[0])]
    out["fit_compare"] = compare_fits(sub, old_fits[0], fit_gabor_batch(sub, n))
    out |= {"k": k, "n": n, "n_kernels": n_kernels, "n_fit_old": n_fit_old, "n_fit_new": len(orient),
            "repeat": repeat, "chunk": CHUNK, "unit": "CPU microseconds per kernel"}
    return out


def compare_fits(w: np.ndarray, old: list[dict], new: dict, rtol: float = 1e-3, deg: float = 0.1) -> dict:
    """Kernel by kernel: how many fits agree (k0 and σ within ``rtol``, orientation within ``deg``),
    and of the others how many reach a lower or higher residual with the current fit (1e-6 apart),
    split by whether the former fit converged (scipy status > 0)."""
    ro = np.array([o["rel_residual"] for o in old])
    conv = np.array([o["converged"] for o in old])
    k0 = np.array([o["k0"] for o in old])
    sg = np.array([o["sigma"] for o in old])
    d = np.abs(np.array([o["orientation"] for o in old]) - new["orientation"]) % 180
    same = ((np.abs(k0 - new["k0"]) <= rtol * np.maximum(k0, 1)) & (np.minimum(d, 180 - d) <= deg)
            & (np.abs(sg - new["sigma"]) <= rtol * sg))
    rn = new["rel_residual"]
    better, worse = ~same & (rn < ro - 1e-6), ~same & (rn > ro + 1e-6)
    return {"kernels": int(len(ro)), "old_converged": int(conv.sum()), "same": int(same.sum()),
            "new_lower_residual": int(better.sum()), "new_higher_residual": int(worse.sum()),
            "new_higher_and_old_converged": int((worse & conv).sum()),
            "max_residual_increase": float(np.max(rn - ro)) if len(ro) else 0.0,
            "max_residual_decrease": float(np.max(ro - rn)) if len(ro) else 0.0}


def paper_counts(preset: str = "paper") -> dict:
    """What the analysis of ``preset`` transforms: networks (targets × fractions × seeds × subsets),
    kernels per layer (from the configured ClosureCNN), the re-trained kernels summed over every
    network (each network analyses the kernels of its re-trained layers), and the base network's."""
    from suite.model import model_from_config   # imports torch

    cfg = load_config(preset)
    shapes = [tuple(c.weight.shape) for c in model_from_config(cfg).convs]
    per_layer = [o * i for o, i, _, _ in shapes]
    masks = select(cfg.transfer.subsets, cfg.model.layers)
    groups = len(cfg.transfer.targets) * len(cfg.transfer.fractions) * len(cfg.transfer.seeds)
    per_net = [sum(c for b, c in zip(m, per_layer) if b == "1") for m in masks]
    return {"preset": preset, "n": cfg.grid.n_les, "k": cfg.model.kernel, "networks": groups * len(masks),
            "kernels_per_layer": per_layer, "base_kernels": sum(per_layer),
            "retrained_kernels": groups * sum(per_net), "kernels_per_network": per_net * groups,
            "workers": cfg.analyze.workers}


def project(counts: dict, costs: dict, oriented_fraction: float, which: str = "median") -> dict:
    """Core-hours of the kernel analysis of ``counts`` (:func:`paper_counts`) at ``costs``
    (:func:`measure_kernel_costs`, the ``which`` statistic), old and new, when ``oriented_fraction``
    of the kernels get a Gabor fit; and the new path's task sizes (one Dask task per network) with the
    share of time ``workers`` workers would be busy (greedy list scheduling in submission order)."""
    out = {"oriented_fraction": oriented_fraction}
    for v in ("old", "new"):
        per = costs[f"layer_{v}"][which] + oriented_fraction * costs[f"fit_{v}"][which]     # µs per kernel
        base = costs[f"layer_{v}"][which] / 2 + oriented_fraction * costs[f"fit_{v}"][which]
        out[f"core_hours_{v}"] = (counts["retrained_kernels"] * per + counts["base_kernels"] * base) / 3.6e9
    per = (costs["layer_new"][which] + oriented_fraction * costs["fit_new"][which]) * 1e-6
    tasks = np.asarray(counts["kernels_per_network"], dtype=float) * per
    w = counts["workers"]
    load = np.zeros(w)
    for x in tasks:
        load[np.argmin(load)] += x
    out |= {"task_seconds_mean": float(tasks.mean()), "task_seconds_max": float(tasks.max()),
            "tasks": int(tasks.size), "busy_share": float(tasks.sum() / (w * load.max())), "workers": w}
    return out


def activation_seconds(preset: str = "paper", repeat: int = 2) -> float:
    """CPU seconds of one network's activation spectra (``analysis.activations.activation_spectra``
    on ``analyze.activation_samples`` inputs of the LES grid; random weights and inputs, one thread):
    the per-network part of the analysis that is not per kernel."""
    import torch   # imports torch: only this measurement needs it

    from analysis.activations import activation_spectra
    from suite.model import model_from_config

    cfg = load_config(preset)
    torch.set_num_threads(1)
    model = model_from_config(cfg).eval()
    n = cfg.grid.n_les
    x = torch.randn(cfg.analyze.activation_samples, 2, n, n)
    return min(_cpu(lambda: activation_spectra(model, x)) for _ in range(repeat))


def run_oriented_kernels(run_dir, n: int) -> tuple[np.ndarray, int]:
    """The distinct oriented kernels (of the most common size) of every network of a run folder
    (base and TL), classified on the LES grid ``n``; and ``n``."""
    import glob

    from analysis.classify import classify_kernels
    from analysis.kernels import layer_kernels
    from suite import layout
    from suite.model import load_model

    paths = [str(layout.base_model_dir(run_dir))] + sorted(glob.glob(f"{run_dir}/models/tl/*/*/*"))
    by_size = {}
    for p in paths:
        for w in layer_kernels(load_model(p)[0]):
            by_size.setdefault(w.shape[-1], []).append(w.reshape(-1, *w.shape[-2:]))
    k, ws = max(by_size.items(), key=lambda kv: sum(len(x) for x in kv[1]))
    w = np.concatenate(ws)
    cls, _ = classify_kernels(w, n)
    return np.unique(w[cls == CLASSES.index("oriented")].round(12), axis=0), n


def measure_run_fits(run_dir, n: int, n_fit_old: int = 16, repeat: int = 3) -> dict:
    """Gabor fits of a run's learned oriented kernels: CPU µs per fit, old (first ``n_fit_old``) and new
    (all, one batch), ``{"min", "median", "max"}`` over ``repeat`` rounds, and :func:`compare_fits` on all."""
    w, n = run_oriented_kernels(run_dir, n)
    old_all = [fit_gabor_trf(x, n) for x in w]
    t_old, t_new = [], []
    for r in range(repeat):
        sub = w[(r * n_fit_old) % len(w):][:n_fit_old]
        t_old.append(_cpu(lambda: [fit_gabor_trf(x, n) for x in sub]) / len(sub))
        t_new.append(_cpu(lambda: fit_gabor_batch(w, n)) / len(w))
    return {"kernels": int(len(w)), "k": int(w.shape[-1]), "n": n, "fit_old": _spread(np.asarray(t_old) * 1e6),
            "fit_new": _spread(np.asarray(t_new) * 1e6), "compare": compare_fits(w, old_all, fit_gabor_batch(w, n))}


def main(argv=None) -> None:
    """``python -m bench.analysis_harness [--repeat R]``: per-kernel costs old vs new (median and spread),
    the floors, the fit comparison, the `paper` counts and projections, as JSON on stdout."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kernels", type=int, default=1024)
    ap.add_argument("--fits-old", type=int, default=16)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--run-dir", default=None, help="also time the Gabor fits of this run's learned oriented kernels")
    ap.add_argument("--run-n", type=int, default=32, help="LES grid n of --run-dir")
    a = ap.parse_args(argv)
    counts = paper_counts(a.preset)       # the costs are measured at the preset's kernel size and grid
    costs = measure_kernel_costs(k=counts["k"], n=counts["n"], n_kernels=a.kernels, n_fit_old=a.fits_old,
                                 n_fit_new=1024, repeat=a.repeat)
    act = activation_seconds(a.preset)
    out = {"costs": costs, "counts": {k: v for k, v in counts.items() if k != "kernels_per_network"},
           "projection": {f: project(counts, costs, f) for f in (0.3, 1.0)},
           "activation_seconds_per_network": act,
           "activation_core_hours": act * counts["networks"] / 3600}
    if a.run_dir:
        rf = measure_run_fits(a.run_dir, a.run_n)
        real = costs | {"fit_new": rf["fit_new"], "fit_old": rf["fit_old"]}
        out["run_fits"] = rf
        out["projection_run_fit_costs"] = {f: project(counts, real, f) for f in (0.3, 1.0)}
    # the whole analysis of the preset: kernels plus every network's activation spectra
    out["total_core_hours"] = {
        f"{name} f={f}": proj[f]["core_hours_new"] + out["activation_core_hours"]
        for name, key in (("synthetic fits", "projection"), ("run fits", "projection_run_fit_costs"))
        if key in out for proj in [out[key]] for f in proj}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
