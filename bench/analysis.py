"""Analysis: kernel spectra (kernels/s) against the batched-GEMM floor, per-kernel costs of the
analysis old vs new with the `paper` preset's projection in core-hours, and Dask aggregation of a
synthetic sweep (networks/s, kernels/s) on LocalClusters of 1 and 2 workers.

``bench/analysis_harness.py: measure_kernel_costs`` times a re-trained layer's per-kernel work
(spectra, features, classes, dW/dspec, change profiles) and one Gabor fit, the former path
(bench/analysis_reference.py) and the current one interleaved in one process, in CPU time, next
to the zero-padded rfft2 of the same kernels and the symmetric DFT's FLOPs at the GEMM rate;
``project`` scales them to the kernels the `paper` preset analyses (from its configuration).

``bench/analysis_harness.py: measure_throughput`` times both methods (DFT-matrix GEMMs, zero-padded rfft2)
and the floor (the DFT method's FLOPs at the measured float64 GEMM rate) in one process.
``bench/analysis_harness.py: aggregation_throughput`` runs the whole ``turbtl analyze`` computation
(``force=True``) on a run folder written by :mod:`bench.synthetic` (3 layers x 8 channels, 5x5,
32² LES grid, 2 targets x 7 subsets = 14 networks).
"""
from __future__ import annotations

import shutil
import tempfile

from .common import require

N_KERNELS = 2048
ORIENTED = [0.3, 1.0]   # share of kernels fitted: ~0.28 in the ci run's networks (0.27 base, 0.28 TL); 1 = bound


class KernelSpectra:
    """Kernels/s of |Ŵ| (5x5 kernels padded to 128²) by method, and the ratio to the GEMM floor."""

    params = ["dft", "rfft"]
    param_names = ["method"]
    rounds = 1
    repeat = 1
    timeout = 300

    def setup_cache(self):
        k = require(f"{__package__}.analysis_harness", "measure_throughput")
        runs = [k.measure_throughput(n_kernels=N_KERNELS, k=5, n=128, repeat=3) for _ in range(2)]
        best = {m: max(r[f"{m}_kernels_per_s"] for r in runs) for m in ("dft", "rfft")}
        return best | {"floor": max(r["floor_kernels_per_s"] for r in runs),
                       "gemm_gflops": max(r["gemm_gflops"] for r in runs)}

    def track_kernels_per_s(self, r, method):
        return r[method]
    track_kernels_per_s.unit = "kernels/s"

    def track_ratio_to_gemm_floor(self, r, method):
        return r[method] / r["floor"]
    track_ratio_to_gemm_floor.unit = "achieved/GEMM floor"

    def track_gemm_floor(self, r, method):
        return r["floor"]
    track_gemm_floor.unit = "kernels/s at GEMM peak"


class KernelCosts:
    """Kernels/s of the per-kernel analysis (old and new), the floors, and the `paper` projection."""

    params = ORIENTED
    param_names = ["oriented_fraction"]
    rounds = 1
    repeat = 1
    timeout = 900

    def setup_cache(self):
        h = require(f"{__package__}.analysis_harness", "measure_kernel_costs", "paper_counts", "project")
        costs = h.measure_kernel_costs(n_kernels=1024, n_fit_old=16, n_fit_new=1024, repeat=3)
        counts = h.paper_counts("paper")
        return {"costs": costs, "projection": {f: h.project(counts, costs, f) for f in ORIENTED}}

    def track_layer_kernels_per_s_new(self, r, f):
        return 1e6 / r["costs"]["layer_new"]["median"]
    track_layer_kernels_per_s_new.unit = "kernels/s (with their base kernels)"

    def track_layer_kernels_per_s_old(self, r, f):
        return 1e6 / r["costs"]["layer_old"]["median"]
    track_layer_kernels_per_s_old.unit = "kernels/s (with their base kernels)"

    def track_fft_floor_kernels_per_s(self, r, f):
        return 1e6 / r["costs"]["fft_pair"]["median"]
    track_fft_floor_kernels_per_s.unit = "kernels/s (rfft2 of kernel and base, zero-padded)"

    def track_gemm_floor_kernels_per_s(self, r, f):
        return 1e6 / r["costs"]["gemm_pair"]
    track_gemm_floor_kernels_per_s.unit = "kernels/s (symmetric-DFT FLOPs at the GEMM rate)"

    def track_gabor_fits_per_s_new(self, r, f):
        return 1e6 / r["costs"]["fit_new"]["median"]
    track_gabor_fits_per_s_new.unit = "fits/s"

    def track_gabor_fits_per_s_old(self, r, f):
        return 1e6 / r["costs"]["fit_old"]["median"]
    track_gabor_fits_per_s_old.unit = "fits/s"

    def track_paper_core_hours_new(self, r, f):
        return r["projection"][f]["core_hours_new"]
    track_paper_core_hours_new.unit = "core-hours (kernel analysis)"

    def track_paper_core_hours_old(self, r, f):
        return r["projection"][f]["core_hours_old"]
    track_paper_core_hours_old.unit = "core-hours (kernel analysis)"


class DaskAggregation:
    """Networks/s and kernels/s of the whole sweep analysis on 1 and 2 Dask workers."""

    params = [1, 2]
    param_names = ["workers"]
    rounds = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        agg = require(f"{__package__}.analysis_harness", "aggregation_throughput")
        from .synthetic import TARGETS, build_run
        root = tempfile.mkdtemp(prefix="turbtl-bench-run-")
        try:
            run_dir, _ = build_run(root, layers=3)
            return {w: agg.aggregation_throughput(run_dir, list(TARGETS), "base", workers=w) for w in (1, 2)}
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def track_networks_per_s(self, r, workers):
        return r[workers]["networks_per_s"]
    track_networks_per_s.unit = "networks/s"

    def track_kernels_per_s(self, r, workers):
        return r[workers]["kernels_per_s"]
    track_kernels_per_s.unit = "kernels/s"

    def track_parallel_efficiency(self, r, workers):
        return r[workers]["networks_per_s"] / (workers * r[1]["networks_per_s"])
    track_parallel_efficiency.unit = "rate/(workers x 1-worker rate)"
