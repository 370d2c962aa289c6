"""Benchmark harness of the transfer sweep: the shared frozen prefix against the naive loop that
runs every subset through the whole network, and the layer-work floor of that ratio. It used to
live in suite/transfer.py; the application's library modules hold no timing code. bench/sweep.py
(asv) calls :func:`measure_sharing`; as a script it prints the sharing figures of this machine::

    python -m bench.sweep_harness [--layers 5 --width 16 --n 32 --samples 16 --epochs 2
        --subsets singles --per-first K --device cpu --repeats 1]

:func:`measure_schedule` (``--schedule RUN --config FILE``) reads a finished sweep's per-job times
(``wall_time_s`` of its rows) and compares how long ``workers`` workers take to run the jobs in the
canonical order (the pool's order before :func:`suite.transfer.longest_first`) and longest first,
with the ideal (every worker busy to the end: total / workers).
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import time

import numpy as np
import torch

from suite.config import load_config
from suite.dataset import SplitTensors
from suite.masks import first_trainable, select
from suite.model import ClosureCNN
from suite.train import TrainSettings, fit
from suite.transfer import (Context, Job, SweepSpec, Suffix, load_results, local_env, longest_first, plan,
                            prefix_activations, with_inputs)


def layer_flops(model: ClosureCNN, n: int) -> list[float]:
    """Forward FLOPs per sample of each layer (2 per multiply-add)."""
    k = model.config["kernel"]
    return [2.0 * k * k * c.in_channels * c.out_channels * n * n for c in model.convs]


def work_units(mask: str, flops: list[float], shared: bool) -> float:
    """Layer work of one training step of ``mask`` per sample: forward of layers from the first
    trainable one (every layer when not ``shared``), input gradients of the layers above the first
    trainable one, weight gradients of the trainable layers."""
    j = first_trainable(mask) - 1
    fwd = sum(flops[j:]) if shared else sum(flops)
    back = sum(flops[j + 1:]) + sum(f for f, c in zip(flops, mask) if c == "1")
    return fwd + back


def sharing_floor(masks: list[str], flops: list[float], epochs: int = 1) -> dict:
    """Ratio shared / naive of the layer work of a sweep over ``masks`` (prefix computed once per
    first trainable layer and sample, amortized over ``epochs``)."""
    naive = sum(work_units(m, flops, False) for m in masks) * epochs
    firsts = sorted({first_trainable(m) for m in masks})
    prefix = sum(sum(flops[:j - 1]) for j in firsts)
    shared = sum(work_units(m, flops, True) for m in masks) * epochs + prefix
    return {"naive_units": naive, "shared_units": shared, "floor": shared / naive}


def _sample_masks(masks: list[str], per_first: int | None) -> tuple[list[str], list[float]]:
    """A deterministic sample of up to ``per_first`` masks per first trainable layer, each with the
    weight (count it stands for)."""
    if per_first is None:
        return masks, [1.0] * len(masks)
    out, w = [], []
    by = {}
    for m in masks:
        by.setdefault(first_trainable(m), []).append(m)
    for j in sorted(by):
        group = by[j]
        idx = np.unique(np.linspace(0, len(group) - 1, min(per_first, len(group))).round().astype(int))
        out += [group[i] for i in idx]
        w += [len(group) / len(idx)] * len(idx)
    return out, w


def measure_sharing(layers: int = 5, width: int = 16, kernel: int = 5, n: int = 32, samples: int = 16,
                    batch: int = 16, epochs: int = 2, subsets: str = "singles", per_first: int | None = None,
                    device="cpu", padding: str = "circular", repeats: int = 1) -> dict:
    """Wall time of a sweep over ``subsets`` with the prefix cache against the naive loop that
    runs every subset through the whole network, side by side, on random data; with the layer-work
    floor of :func:`sharing_floor`.

    ``per_first``: time only that many masks per first trainable layer and extrapolate (for
    ``all`` on the paper network). Training only (Adam steps over ``epochs``), both ways through
    ``suite.train.fit``; the shared way includes computing the prefix once per first layer.
    Naive and shared runs of each mask alternate (best of ``repeats`` each), so that load from other
    processes hits both alike. Returns seconds, the measured ratio, the floor and ``ratio / floor``.
    """
    device = torch.device(device)
    torch.manual_seed(0)
    base = ClosureCNN(layers, width, kernel, padding=padding)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(samples, 2, n, n, generator=g)
    y = torch.randn(samples, 1, n, n, generator=g)
    data = SplitTensors(x, y, {}, np.zeros((samples, 2), int), 2 * math.pi, 0.0)
    masks = select(subsets, layers)
    chosen, weight = _sample_masks(masks, per_first)
    settings = TrainSettings(epochs=epochs, batch_size=batch, lr=1e-4, seed=0, progress=False)
    env = local_env(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train(mask, start, acts):
        net = ClosureCNN(**base.config)
        net.load_state_dict(base.state_dict())
        net.set_trainable(mask)
        sync()
        t0 = time.perf_counter()
        if start:
            fit(Suffix(net, start), with_inputs(data, acts), None, settings, env=env)
        else:
            fit(net, data, None, settings, env=env)
        sync()
        return time.perf_counter() - t0

    def prefix(start):
        sync()
        t0 = time.perf_counter()
        acts = prefix_activations(base, x, start, device)
        sync()
        return acts, time.perf_counter() - t0

    train(chosen[0], 0, None)  # warm-up
    t_naive = {m: float("inf") for m in chosen}
    t_shared = dict(t_naive)
    t_prefix: dict = {}
    for _ in range(repeats):  # naive and shared interleaved mask by mask, best of repeats
        acts, cur = None, None
        for m in chosen:
            start = first_trainable(m) - 1
            t_naive[m] = min(t_naive[m], train(m, 0, None))
            if start and start != cur:
                acts, dt = prefix(start)
                cur, t_prefix[start] = start, min(t_prefix.get(start, float("inf")), dt)
            t_shared[m] = min(t_shared[m], train(m, start, acts))
    best = {False: float(np.dot([t_naive[m] for m in chosen], weight)),
            True: float(np.dot([t_shared[m] for m in chosen], weight)) + sum(t_prefix.values())}
    flops = layer_flops(base, n)
    fl = sharing_floor(masks, flops, epochs)
    ratio = best[True] / best[False]
    return {"subsets": subsets, "n_subsets": len(masks), "timed_subsets": len(chosen), "layers": layers,
            "width": width, "kernel": kernel, "n": n, "samples": samples, "epochs": epochs, "batch": batch,
            "naive_s": best[False], "shared_s": best[True], "ratio": ratio, "floor": fl["floor"],
            "ratio_over_floor": ratio / fl["floor"], "device": str(device), "threads": torch.get_num_threads()}


def makespan(durations, workers: int) -> float:
    """Time until the last of ``durations`` finishes when ``workers`` workers take them in the given
    order, each job going to the first free worker (a process pool's list scheduling)."""
    free = [0.0] * max(1, workers)
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + float(d))
    return max(free)


def measure_schedule(run_dir, cfg, workers: int = 2) -> dict:
    """The pool's finishing time for a finished sweep's jobs (their ``wall_time_s``), in the canonical
    order of :func:`suite.transfer.plan` and in :func:`suite.transfer.longest_first` order, against
    ``total / workers``; ``cfg``: the sweep's configuration (a :class:`suite.config.Config`)."""
    t = cfg.transfer
    df = load_results(run_dir)
    wall = {(r.target, float(r.fraction), int(r.seed), r.kind, r.mask): r.wall_time_s for r in df.itertuples()}
    ctx = Context(SweepSpec.from_config(cfg, run_dir))
    layers = ctx.base_model.n_layers
    randoms = select(t.random_control, layers) if t.random_control.strip() else []
    jobs = [j for j in plan(t.targets, select(t.subsets, layers), t.fractions, t.seeds, references=t.references,
                            oracle=t.oracle, random_masks=randoms)
            if (j.target, j.fraction, j.seed, j.kind, j.mask) in wall]

    def key(j: Job):
        return j.target, j.fraction, j.seed, j.kind, j.mask

    total = sum(wall[key(j)] for j in jobs)
    canonical = makespan([wall[key(j)] for j in jobs], workers)
    longest = makespan([wall[key(j)] for j in longest_first(ctx, jobs)], workers)
    return {"jobs": len(jobs), "workers": workers, "total_s": total, "ideal_s": total / workers,
            "canonical_s": canonical, "longest_first_s": longest,
            "canonical_over_ideal": canonical / (total / workers), "longest_first_over_ideal": longest / (total / workers)}


def main(argv=None) -> None:
    """Print the sharing figures of this machine (one JSON line)."""
    ap = argparse.ArgumentParser(description=measure_sharing.__doc__)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subsets", default="singles")
    ap.add_argument("--per-first", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--schedule", metavar="RUN", default=None,
                    help="instead: the pool's finishing time for the finished sweep in RUN (measure_schedule)")
    ap.add_argument("--config", default=None, help="with --schedule: the sweep's TOML configuration")
    ap.add_argument("--preset", default=None, help="with --schedule: the sweep's preset")
    ap.add_argument("--workers", type=int, default=2, help="with --schedule: workers")
    a = ap.parse_args(argv)
    if a.schedule:
        cfg = load_config(preset=a.preset, config_file=a.config)
        print(json.dumps(measure_schedule(a.schedule, cfg, a.workers)))
        return
    print(json.dumps(measure_sharing(a.layers, a.width, 5, a.n, a.samples, 16, a.epochs, a.subsets, a.per_first,
                                     a.device, repeats=a.repeats)))


if __name__ == "__main__":
    main()
