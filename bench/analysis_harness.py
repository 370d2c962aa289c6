"""Benchmark harnesses of the analysis: kernel spectra (kernels/s) against the batched-GEMM floor,
and the Dask aggregation of a whole sweep. They used to live in analysis/kernels.py and
analysis/aggregate.py; the analysis modules hold no timing code. bench/analysis.py (asv) calls them.

- :func:`measure_throughput`: kernels/s of ``|Ŵ|`` by each method of
  :func:`analysis.kernels.kernel_spectra`, and the floor: the DFT-matrix FLOPs per kernel at the
  measured float64 GEMM rate;
- :func:`aggregation_throughput`: networks/s and kernels/s of :func:`analysis.aggregate.analyze_sweep`
  on a fresh LocalCluster.
"""
from __future__ import annotations

import time

import numpy as np

from analysis.aggregate import analyze_sweep, make_client
from analysis.kernels import DEFAULT_CHUNK, METHODS, kernel_spectra


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
