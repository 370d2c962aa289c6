"""Benchmark harness of the online LES: what a benchmark times. It used to live in suite/les.py;
the application's library modules hold no timing code.

- :func:`measure_les_step`: LES steps/s of one set-up without a closure and with a CNN closure
  (the closure's overhead), interleaved, best of a few repeats.
"""
from __future__ import annotations

import math
import time

import torch

from solver.backends import make_backend
from solver.filters import default_width
from solver.initial import random_field
from suite.les import LESSetup, build_les
from suite.model import paper_model
from suite.online import make_closure


def measure_les_step(n: int = 128, members: int = 4, model=None, steps: int = 20, repeats: int = 3,
                     backend: str = "numpy", device: str = "cpu", dtype: str = "float64", seed: int = 0) -> dict:
    """LES steps/s without a closure and with a CNN closure (the closure's overhead), same set-up.

    A forced LES (Re 2e4, k_f 4, μ 0.1, Gaussian-filtered forcing, AB2-CN, 2/3 rule) of ``members``
    members on an ``n``² grid from a random field; ``model`` a ClosureCNN (default: the paper's
    network with random weights, float32). Best of ``repeats`` runs of ``steps`` steps each,
    interleaved. Returns steps/s and member-steps/s for both and the overhead ratio."""
    torch.manual_seed(seed)
    model = model if model is not None else paper_model()
    norm = {"mean": {"psi": 0.0, "omega": 0.0, "pi": 0.0}, "std": {"psi": 1.0, "omega": 10.0, "pi": 1.0}}
    L = 2 * math.pi
    setup = LESSetup(n=n, L=L, re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                     kf=4.0, dt=1e-3, stepper="ab2cn", filter="gaussian",
                     delta=default_width(L, n), sample_interval=1e-3)
    runs = {}
    for name in ("none", "cnn"):
        be = make_backend(n, backend=backend, dtype=dtype, device=device)
        fac = None if name == "none" else (lambda g: make_closure("cnn", g, model=model, norm=norm))
        grid, eq, stepper, _ = build_les(setup, be, fac)
        state = stepper.init_state(random_field(grid, kp=10, seed=seed, members=members))
        for _ in range(2):
            stepper(state)
        runs[name] = (be, stepper, state)

    def timed(name):
        be, stepper, state = runs[name]
        be.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            stepper(state)
        be.synchronize()
        return (time.perf_counter() - t0) / steps

    best = {"none": math.inf, "cnn": math.inf}
    for _ in range(repeats):
        for name in best:
            best[name] = min(best[name], timed(name))
    return {"n": n, "members": members, "backend": runs["none"][0].summary(),
            "steps_per_s_none": 1 / best["none"], "steps_per_s_cnn": 1 / best["cnn"],
            "member_steps_per_s_none": members / best["none"], "member_steps_per_s_cnn": members / best["cnn"],
            "ms_per_step_none": 1e3 * best["none"], "ms_per_step_cnn": 1e3 * best["cnn"],
            "overhead": best["cnn"] / best["none"],
            "cnn_gflop_per_step": model.flops_per_sample(n, n) * members / 1e9}
