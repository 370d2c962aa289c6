"""Benchmark harness of training: samples/s and achieved GFLOP/s of the CNN closure against the
measured float32 GEMM peak. It used to live in suite/train.py; the application's library modules
hold no timing code. bench/training.py (asv) calls it; as a script it prints the figures of this
machine for the padding variants::

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


def gemm_rates(device="cpu", n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Measured float32 GEMM rates (GFLOP/s) of ``n × n`` products on ``device``, best of ``repeats``,
    by two routes: ``mm`` (``a @ b``: MKL/OpenBLAS on CPU, cuBLAS on GPU) and,
    on CPU, ``conv1x1`` (the same product as a 1×1 convolution through oneDNN, the library the
    network's convolutions use). On some CPUs they differ by 2× (MKL's ``mm`` on AMD runs well below
    oneDNN), so a peak from ``mm`` alone would be a floor too easy to beat."""
    import torch.nn.functional as F
    device = torch.device(device)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    routes = {"mm": lambda: a @ b}
    if device.type == "cpu":
        x, w = _conv1x1_operands(a, b)
        routes["conv1x1"] = lambda: F.conv2d(x, w)
    out = {}
    for name, fn in routes.items():
        best = float("inf")
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn().sum().item()
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n ** 3 / best / 1e9
    return out


def gemm_peak(device="cpu", n: int = 2048, repeats: int = 5) -> float:
    """The float32 GEMM peak (GFLOP/s) on ``device``: the fastest route of :func:`gemm_rates`."""
    return max(gemm_rates(device, n, repeats).values())


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
    """Training samples/s and achieved GFLOP/s of a network on random data, vs the GEMM peak.

    ``builtin_padding=True`` runs the ``nn.Conv2d`` modules themselves (PyTorch's own padding)
    instead of the model's fast path, for comparison.
    """
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

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t0) / steps
    flops = train_flops_per_sample(model, n, n) * batch
    peak = gemm_peak(device) if peak is None else peak
    return {"samples_per_s": batch / dt, "gflops_per_s": flops / dt / 1e9, "gemm_peak_gflops_per_s": peak,
            "fraction_of_peak": flops / dt / 1e9 / peak, "step_s": dt, "batch": batch, "n": n,
            "padding": padding, "builtin_padding": builtin_padding, "channels_last": channels_last,
            "device": str(device), "threads": torch.get_num_threads(), "bf16": bf16}


def main(argv=None) -> None:
    """Print the throughput of the padding / memory-format variants, one JSON line each."""
    ap = argparse.ArgumentParser(description=measure_throughput.__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args(argv)
    pk = gemm_peak(a.device)
    for pad, builtin, cl in (("zeros", False, True), ("circular", True, True), ("circular", False, True),
                             ("circular", False, False)):
        r = measure_throughput(padding=pad, builtin_padding=builtin, channels_last=cl, batch=a.batch, n=a.n,
                               steps=a.steps, device=a.device, peak=pk)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
