"""FDNS sampling: filtering + coarse-graining + Π (+ T statistics) of one DNS state, per sample.

The floor is the DNS step's FFT floor at the same grid (``measure_step_vs_floor``): a sample
needs the DNS Jacobian (the same 4 inverse + 1 forward transforms as a step) plus small LES-grid
work, so the ratio says how close sampling is to that minimum; ``track_cost_in_dns_steps`` says
how many DNS steps a sample costs.
"""
from __future__ import annotations

import math
import time

from .common import require

SIZES = [256, 1024]   # DNS grid; the LES grid is n/8 (1024 -> 128 as in the paper)


def _sampler(n):
    sgs = require("solver.sgs", "make_sampler", "fdns_sample")
    sampler, omega_hat = sgs.make_sampler(n_dns=n, n_les=n // 8)
    sgs.fdns_sample(sampler, omega_hat)  # warm-up: plans, filters
    return sgs, sampler, omega_hat


class Sample:
    """Seconds per FDNS sample (asv timing)."""

    params = SIZES
    param_names = ["n_dns"]
    number = 1
    repeat = (3, 10, 2.0)
    rounds = 1
    warmup_time = 0
    timeout = 300

    def setup(self, n):
        self.sgs, self.sampler, self.omega_hat = _sampler(n)

    def time_sample(self, n):
        self.sgs.fdns_sample(self.sampler, self.omega_hat)


class SampleVsFloor:
    """ms per sample against the FFT floor and the DNS step at the same grid (best of 5, same process)."""

    params = SIZES
    param_names = ["n_dns"]
    rounds = 1
    repeat = 1
    timeout = 300

    def setup_cache(self):
        sim = require(f"{__package__}.solver_harness", "measure_step_vs_floor")
        out = {}
        for n in SIZES:
            sgs, sampler, omega_hat = _sampler(n)
            best = math.inf
            for _ in range(5):
                t0 = time.perf_counter()
                sgs.fdns_sample(sampler, omega_hat)
                best = min(best, time.perf_counter() - t0)
            step = sim.measure_step_vs_floor(n, steps=5 if n <= 256 else 2, repeats=3)
            out[n] = {"ms": best * 1e3, "floor_ms": step["floor_ms"], "step_ms": step["ms_per_step"]}
        return out

    def track_ms_per_sample(self, r, n):
        return r[n]["ms"]
    track_ms_per_sample.unit = "ms/sample"

    def track_ratio_to_fft_floor(self, r, n):
        return r[n]["ms"] / r[n]["floor_ms"]
    track_ratio_to_fft_floor.unit = "sample/FFT floor"

    def track_cost_in_dns_steps(self, r, n):
        return r[n]["ms"] / r[n]["step_ms"]
    track_cost_in_dns_steps.unit = "DNS steps/sample"
