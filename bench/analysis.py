"""Analysis: kernel spectra (kernels/s) against the batched-GEMM floor, and Dask aggregation of a
synthetic sweep (networks/s, kernels/s) on LocalClusters of 1 and 2 workers.

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
