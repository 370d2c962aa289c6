"""Benchmark harness of training: samples/s and achieved GFLOP/s of the CNN closure against the
measured float32 dense peak (:func:`gemm_peak`: the fastest of a GEMM, the same GEMM as a 1×1
convolution and a bare 5×5 convolution layer). It used to live in suite/train.py; the application's
library modules hold no timing code. bench/training.py (asv) calls it; as a script it prints the
figures of this machine for the padding variants, and the circular network once more with glibc's
default allocator (:mod:`suite.memory`)::

    python -m bench.training_harness [--device cpu|cuda] [--batch 16] [--n 128] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from suite.model import ClosureCNN
from suite.train import autocast, memory_format


def _conv1x1_operands(a: torch.Tensor, b: torch.Tensor):
    """``a @ b`` (both ``n × n``) as a 1×1 convolution: input ``(1, n, 1, n)`` holding ``a``'s rows
    as pixels (channels_last: memory is ``a`` itself), weight ``(n, n, 1, 1)`` = ``b``ᵀ. The output's
    pixels are the rows of ``a @ b``; the work is the same 2 n³ FLOPs."""
    n = a.shape[0]
    x = a.t().reshape(1, n, 1, n).contiguous(memory_format=torch.channels_last)
    w = b.t().reshape(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
    return x, w


#: the dense-convolution route of the peak: (batch, channels, size, kernel) of the paper network's
#: 64 → 64 middle layer at the paper's LES grid, batch 4: its 16 MiB output stays under glibc's
#: mmap threshold, so no call pays page faults for fresh output memory whatever the allocator
#: policy (suite/memory.py); it runs as fast as at batch 16 with the policy on
CONV_ROUTE = (4, 64, 128, 5)


def _conv_route(device, batch: int, channels: int, size: int, kernel: int):
    """(call, FLOPs) of one forward ``kernel × kernel`` convolution, ``channels`` → ``channels``, on a
    pre-padded ``(batch, channels, size + kernel - 1, …)`` channels_last input: a dense product of
    ``2 k² C² size² batch`` FLOPs with nothing else in it (no padding, no activation)."""
    import torch.nn.functional as F
    fmt = torch.channels_last
    x = torch.randn(batch, channels, size + kernel - 1, size + kernel - 1, device=device).contiguous(memory_format=fmt)
    w = torch.randn(channels, channels, kernel, kernel, device=device).contiguous(memory_format=fmt)
    return (lambda: F.conv2d(x, w)), 2.0 * kernel * kernel * channels * channels * size * size * batch


def gemm_rates(device="cpu", n: int = 2048, repeats: int = 5, conv: tuple | None = CONV_ROUTE) -> dict[str, float]:
    """Measured float32 dense-product rates (GFLOP/s) on ``device``, best of ``repeats``, by three
    routes: ``mm`` (``a @ b``, ``n × n``: MKL/OpenBLAS on CPU, cuBLAS on GPU), ``conv1x1`` (the
    same product as a 1×1 convolution through oneDNN, the library the network's convolutions use;
    CPU only) and ``conv`` (a forward ``kernel × kernel`` convolution of the shape ``conv`` =
    (batch, channels, size, kernel), default the paper network's middle layer, input pre-padded;
    ``None`` skips it). On some CPUs they differ by 2× (MKL's ``mm`` on AMD runs well below
    oneDNN, and a 5×5 convolution, which reuses every input 25 times, runs above a 1×1 one), so a
    peak from one route alone would be a floor too easy to beat."""
    import torch.nn.functional as F
    device = torch.device(device)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    routes = {"mm": (lambda: a @ b, 2.0 * n ** 3)}
    if device.type == "cpu":
        x, w = _conv1x1_operands(a, b)
        routes["conv1x1"] = (lambda: F.conv2d(x, w), 2.0 * n ** 3)
    if conv is not None:
        routes["conv"] = _conv_route(device, *conv)
    out = {}
    for name, (fn, flops) in routes.items():
        best = float("inf")
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = flops / best / 1e9
    return out


def gemm_peak(device="cpu", n: int = 2048, repeats: int = 5, conv: tuple | None = CONV_ROUTE) -> float:
    """The float32 dense-product peak (GFLOP/s) on ``device``: the fastest route of :func:`gemm_rates`."""
    return max(gemm_rates(device, n, repeats, conv).values())


def train_flops_per_sample(model: ClosureCNN, ny: int, nx: int) -> float:
    """FLOPs of one training sample: forward + weight gradient for every layer, input gradient for
    every layer but the first (the data need no gradient)."""
    k = model.config["kernel"]
    per = [2 * k * k * c.in_channels * c.out_channels * ny * nx for c in model.convs]
    return float(3 * sum(per) - per[0])


def measure_throughput(layers: int = 11, width: int = 64, kernel: int = 5, padding: str = "circular",
                       batch: int = 16, n: int = 128, steps: int = 3, warmup: int = 1, device="cpu",
                       channels_last: bool = True, bf16: bool = False, builtin_padding: bool = False,
                       peak: float | None = None) -> dict:
    """Training samples/s and achieved GFLOP/s of a network on random data, vs the dense peak.

    ``steps`` training steps are timed one by one after ``warmup``; the figures are from the best
    step (``step_s``; on a shared machine the least disturbed one), ``step_median_s`` is the
    median. ``peak`` (GFLOP/s) defaults to :func:`gemm_peak` measured right before and right after
    the steps (the larger): the same clock and load as the network. The process keeps freed memory
    (:func:`suite.memory.keep_freed_memory`, as :func:`suite.train.fit` does) unless
    ``TURBTL_KEEP_FREED_MEMORY=0``; ``keeps_freed_memory`` says which.

    ``builtin_padding=True`` runs the ``nn.Conv2d`` modules themselves (PyTorch's own padding)
    instead of the model's fast path, for comparison.
    """
    from suite.memory import keep_freed_memory
    kept = keep_freed_memory()
    device = torch.device(device)
    torch.manual_seed(0)
    model = ClosureCNN(layers, width, kernel, padding=padding).to(device)
    fmt = memory_format(device, channels_last)
    model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    x = torch.randn(batch, 2, n, n, device=device).contiguous(memory_format=fmt)
    y = torch.randn(batch, 1, n, n, device=device)

    def forward(h):
        if not builtin_padding:
            return model(h)
        for i, conv in enumerate(model.convs):
            h = conv(h)
            if i < layers - 1:
                h = torch.relu(h)
        return h

    def step():
        with autocast(device, bf16):
            out = forward(x)
        loss = ((out.float() - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    peaks = [gemm_peak(device)] if peak is None else []
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if peak is None:
        peaks.append(gemm_peak(device))
        peak = max(peaks)
    dt, med = min(times), sorted(times)[len(times) // 2]
    flops = train_flops_per_sample(model, n, n) * batch
    return {"samples_per_s": batch / dt, "gflops_per_s": flops / dt / 1e9, "gemm_peak_gflops_per_s": peak,
            "fraction_of_peak": flops / dt / 1e9 / peak, "fraction_of_peak_median": flops / med / 1e9 / peak,
            "step_s": dt, "step_median_s": med, "steps": steps, "batch": batch, "n": n,
            "padding": padding, "builtin_padding": builtin_padding, "channels_last": channels_last,
            "keeps_freed_memory": kept, "device": str(device), "threads": torch.get_num_threads(), "bf16": bf16}


#: the variants ``main`` prints: (padding, PyTorch's own padding, channels_last)
VARIANTS = {"zeros": ("zeros", False, True), "circular-builtin": ("circular", True, True),
            "circular": ("circular", False, True), "circular-nchw": ("circular", False, False)}


def main(argv=None) -> None:
    """Print the throughput of the padding / memory-format variants, one JSON line each (each
    against the peak measured around its own steps, unless ``--peak``), then the circular network
    once more in a fresh process with glibc's default allocator (``TURBTL_KEEP_FREED_MEMORY=0``)."""
    import os
    import subprocess
    import sys
    ap = argparse.ArgumentParser(description=measure_throughput.__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", choices=sorted(VARIANTS), help="one variant only")
    ap.add_argument("--peak", type=float, help="GFLOP/s to compare with (default: measured here)")
    a = ap.parse_args(argv)
    for name in ([a.only] if a.only else list(VARIANTS)):
        pad, builtin, cl = VARIANTS[name]
        r = measure_throughput(padding=pad, builtin_padding=builtin, channels_last=cl, batch=a.batch, n=a.n,
                               steps=a.steps, device=a.device, peak=a.peak)
        print(json.dumps({"variant": name} | r), flush=True)
    if not a.only and a.device == "cpu":
        cmd = [sys.executable, "-m", "bench.training_harness", "--only", "circular",
               "--batch", str(a.batch), "--n", str(a.n), "--steps", str(a.steps)]
        subprocess.run(cmd, check=True, env=os.environ | {"TURBTL_KEEP_FREED_MEMORY": "0"})


if __name__ == "__main__":
    main()
