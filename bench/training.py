"""Training: samples/s of the paper network (11 x 64 channels, 5x5) and the small network (5 x 16),
achieved GFLOP/s against the float32 dense peak measured around the steps (``bench/training_harness.py:
measure_throughput`` and ``gemm_peak``), DDP 2-process efficiency (torchrun, ``suite.train.fit``), peak memory of a step.

Both networks run at the paper's LES grid and batch (128², batch 16) on CPU and CUDA; the process
keeps freed memory as training does (``suite/memory.py``).
"""
from __future__ import annotations

import os

from .common import DEVICES, cuda_available, require, require_device, torchrun_json

NETWORKS = {"small": (5, 16, 5), "paper": (11, 64, 5)}


def _size(network: str, device: str) -> tuple[int, int]:
    """(n, batch) of a benchmark step: the paper's LES grid and batch everywhere."""
    return 128, 16


class Throughput:
    """Samples/s, GFLOP/s and the fraction of the dense peak (best of 3 steps after a warm-up one)."""

    params = (list(NETWORKS), DEVICES)
    param_names = ["network", "device"]
    rounds = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        train = require(f"{__package__}.training_harness", "measure_throughput", "gemm_peak")
        out = {}
        for device in DEVICES:
            if device == "cuda" and not cuda_available():
                continue
            for name, (layers, width, kernel) in NETWORKS.items():
                n, batch = _size(name, device)
                # the best of 3 steps after a warm-up one, the peak measured right before and after
                out[(name, device)] = train.measure_throughput(layers, width, kernel, batch=batch, n=n, steps=3,
                                                               device=device)
        return out

    def setup(self, r, network, device):
        require_device(device)
        self.r = r[(network, device)]

    def track_samples_per_s(self, r, network, device):
        return self.r["samples_per_s"]
    track_samples_per_s.unit = "samples/s"

    def track_gflops_per_s(self, r, network, device):
        return self.r["gflops_per_s"]
    track_gflops_per_s.unit = "GFLOP/s"

    def track_gemm_peak(self, r, network, device):
        return self.r["gemm_peak_gflops_per_s"]
    track_gemm_peak.unit = "GFLOP/s (float32 dense peak)"

    def track_fraction_of_gemm_peak(self, r, network, device):
        return self.r["fraction_of_peak"]
    track_fraction_of_gemm_peak.unit = "achieved/GEMM peak"


class DDP:
    """Global samples/s of the small network with 1 and 2 DDP processes (one thread each, same
    global batch) and the efficiency rate2 / (2 rate1)."""

    rounds = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        require("suite.train", "fit")
        require("suite.ddp", "setup")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "ddp_train.py")
        return {k: torchrun_json(k, script, ["--device", "cpu"]) for k in (1, 2)}

    def track_samples_per_s_1proc(self, r):
        return r[1]["samples_per_s"]
    track_samples_per_s_1proc.unit = "samples/s"

    def track_samples_per_s_2procs(self, r):
        return r[2]["samples_per_s"]
    track_samples_per_s_2procs.unit = "samples/s"

    def track_ddp_efficiency(self, r):
        return r[2]["samples_per_s"] / (2 * r[1]["samples_per_s"])
    track_ddp_efficiency.unit = "rate2/(2 rate1)"


class StepMemory:
    """Peak resident (host) memory of building a network, its data and optimizer, and one training
    step on CPU, at the CPU sizes of :class:`Throughput`."""

    params = list(NETWORKS)
    param_names = ["network"]
    timeout = 300

    def setup(self, network):
        self.train = require(f"{__package__}.training_harness", "measure_throughput")

    def peakmem_train_step(self, network):
        layers, width, kernel = NETWORKS[network]
        n, batch = _size(network, "cpu")
        self.train.measure_throughput(layers, width, kernel, batch=batch, n=n, steps=1, warmup=0, peak=1.0)
