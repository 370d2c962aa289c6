"""One command for the first session lent a GPU (issue 21): the CUDA checks, then the GPU benchmarks.

    make gpu-check                       # = python -m bench.gpu_check --out gpu-check-summary.txt

Checks (each PASS/FAIL with its figure; a failure does not stop the others):

1. ``torch_equals_numpy``: the torch backend on the GPU equals the numpy backend in float64 after
   100 forced AB2-CN steps (64², cos-xy forcing, 2/3 rule) to 1e-9 relative (FFT libraries differ
   in rounding only).
2. ``les_cnn``: an LES (32², :func:`solver.sgs.les_equation`) with a :class:`suite.online.CNNClosure`
   evaluated on the GPU, 50 steps, finite and equal to the same LES on the CPU to 1e-4 relative
   (the network runs in float32).
3. ``training``: 20 Adam steps of a small :class:`suite.model.ClosureCNN` on the GPU (channels_last,
   circular padding): the loss is finite and falls; the GPU's forward equals the CPU's to float32
   rounding.
4. ``ddp_nccl``: DistributedDataParallel with the nccl backend over the visible GPUs (``torchrun``,
   one process per GPU, at least 1): gradients all-reduced and equal on every rank.

Benchmarks: ms/step of the torch backend at 1024² and 2048² (float64 and float32) against the
cuFFT floor (``bench.solver_harness.measure_step_vs_floor``: the backend's own 5 full transforms);
training fraction of the GPU's float32 GEMM peak (``bench.training_harness``) for the paper
network, float32 and bf16 autocast. Budget: under 5 minutes on one GPU.

Without a GPU (``torch.cuda.is_available()`` False) it says "no GPU", writes that into the
summary and exits 0. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _torch_equals_numpy() -> str:
    import numpy as np
    from solver.backends import make_backend
    from solver.equation import Equation, Parameters
    from solver.forcing import make_forcing
    from solver.grid import Grid
    from solver.initial import random_field
    from solver.stepping import make_stepper

    out = {}
    for backend, device in (("numpy", "cpu"), ("torch", "cuda")):
        be = make_backend(64, backend=backend, dtype="float64", device=device)
        g = Grid(64, backend=be)
        eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
        st = make_stepper("ab2cn", eq, dt=1e-3)
        s = st.init_state(be.asarray(be.to_numpy(random_field(g, kp=10, seed=0)), complex=True))
        for _ in range(100):
            st(s)
        be.synchronize()
        out[backend] = np.asarray(be.to_numpy(s.omega_hat))
    err = float(np.abs(out["torch"] - out["numpy"]).max() / np.abs(out["numpy"]).max())
    assert np.isfinite(err) and err < 1e-9, f"relative difference {err:.3g} >= 1e-9"
    return f"max relative difference {err:.2e} after 100 steps (64², float64)"


def _les_cnn() -> str:
    import numpy as np
    import torch
    from solver.backends import make_backend
    from solver.equation import Parameters
    from solver.forcing import make_forcing
    from solver.grid import Grid
    from solver.initial import random_field
    from solver.sgs import les_equation
    from solver.stepping import make_stepper
    from suite.model import ClosureCNN
    from suite.online import make_closure

    torch.manual_seed(0)
    model = ClosureCNN(3, 8, 5)
    with torch.no_grad():
        for c in model.convs:
            c.weight.mul_(0.01)
    norm = {"mean": {"psi": 0.0, "omega": 0.0, "pi": 0.0}, "std": {"psi": 1.0, "omega": 1.0, "pi": 1.0}}
    out = {}
    for device in ("cpu", "cuda"):
        be = make_backend(32, backend="torch", dtype="float64", device=device)
        g = Grid(32, backend=be)
        term = make_closure("cnn", g, model=model.to(device), norm=norm)
        eq = les_equation(g, Parameters(re=1e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4), extra=term)
        st = make_stepper("ab2cn", eq, dt=1e-3)
        s = st.init_state(be.asarray(be.to_numpy(random_field(g, kp=4, seed=1)), complex=True))
        for _ in range(50):
            st(s)
        be.synchronize()
        out[device] = np.asarray(be.to_numpy(s.omega_hat))
    assert np.isfinite(out["cuda"]).all(), "non-finite LES state on the GPU"
    err = float(np.abs(out["cuda"] - out["cpu"]).max() / np.abs(out["cpu"]).max())
    assert err < 1e-4, f"GPU LES differs from CPU LES by {err:.3g} (relative)"
    return f"50 LES steps with a CNN closure on the GPU; relative difference to CPU {err:.2e}"


def _training() -> str:
    import torch
    from suite.model import ClosureCNN

    torch.manual_seed(0)
    cpu = ClosureCNN(5, 16, 5)
    gpu = ClosureCNN(5, 16, 5)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda", memory_format=torch.channels_last)
    x = torch.randn(8, 2, 64, 64)
    y = torch.randn(8, 1, 64, 64)
    with torch.no_grad():
        d = float((gpu(x.cuda().contiguous(memory_format=torch.channels_last)).cpu() - cpu(x)).abs().max())
    assert d < 1e-4, f"GPU forward differs from CPU by {d:.3g}"
    opt = torch.optim.Adam(gpu.parameters(), lr=1e-3)
    xg, yg = x.cuda().contiguous(memory_format=torch.channels_last), y.cuda()
    losses = []
    for _ in range(20):
        loss = ((gpu(xg) - yg) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(map(lambda v: v == v and abs(v) < float("inf"), losses)), "non-finite loss"
    assert losses[-1] < losses[0], f"loss did not fall: {losses[0]:.4g} -> {losses[-1]:.4g}"
    return f"forward |GPU-CPU| {d:.1e}; loss {losses[0]:.4f} -> {losses[-1]:.4f} in 20 steps"


_DDP_WORKER = textwrap.dedent("""
    import os, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from suite import ddp as D
    from suite.model import ClosureCNN
    env = D.setup("cuda")
    assert env.backend in ("nccl", None), env.backend
    torch.manual_seed(0)
    model = ClosureCNN(3, 8, 5).to(env.device)
    net = DDP(model, device_ids=[env.device.index]) if env.world > 1 else model
    torch.manual_seed(1 + env.rank)
    x = torch.randn(4, 2, 32, 32, device=env.device)
    net(x).square().mean().backward()
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    if env.world > 1:
        ref = g.clone(); dist.broadcast(ref, 0)
        assert torch.equal(ref, g), "gradients differ between ranks"
    if env.rank == 0:
        print(f"DDP_OK world={env.world} backend={env.backend}")
    D.teardown(env)
""")


def _ddp_nccl(timeout: int = 120) -> str:
    import torch
    n = max(1, torch.cuda.device_count())
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "ddp_worker.py"
        script.write_text(_DDP_WORKER)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               str(script)]
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("DDP_OK")]
    assert r.returncode == 0 and line, f"torchrun exit {r.returncode}: {r.stderr[-800:]}"
    return line[0][len("DDP_OK "):] + f" ({n} GPU(s))"


CHECKS = {"torch_equals_numpy": _torch_equals_numpy, "les_cnn": _les_cnn, "training": _training,
          "ddp_nccl": _ddp_nccl}


def _benchmarks(lines: list[str]) -> None:
    from bench.solver_harness import measure_step_vs_floor
    from bench.training_harness import gemm_peak, measure_throughput

    for dtype in ("float64", "float32"):
        for n in (1024, 2048):
            r = measure_step_vs_floor(n, backend="torch", dtype=dtype, device="cuda", steps=20, repeats=5)
            lines.append(f"solver torch cuda {dtype} {n}²: {r['ms_per_step']:.3f} ms/step, cuFFT floor "
                         f"{r['floor_ms']:.3f} ms, ratio {r['ratio']:.2f} (pruned {r['ratio_to_pruned']:.2f})")
    peak = gemm_peak("cuda", n=4096)
    for bf16 in (False, True):
        r = measure_throughput(batch=16, n=128, steps=5, warmup=2, device="cuda", bf16=bf16, peak=peak)
        lines.append(f"training paper net 128² batch 16 {'bf16' if bf16 else 'float32'}: "
                     f"{r['samples_per_s']:.1f} samples/s, {r['gflops_per_s']:.0f} GFLOP/s = "
                     f"{r['fraction_of_peak']:.2f} of the float32 GEMM peak ({peak:.0f} GFLOP/s, 4096² mm)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu-check-summary.txt", help="the summary file (default %(default)s)")
    ap.add_argument("--no-bench", action="store_true", help="the checks only")
    a = ap.parse_args(argv)
    import torch

    out = Path(a.out)
    if not torch.cuda.is_available():
        msg = (f"no GPU: torch {torch.__version__} sees no CUDA device "
               f"(torch.cuda.is_available() is False); nothing checked")
        print(msg)
        out.write_text(msg + "\n")
        return 0
    t_start = time.perf_counter()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    lines = [f"gpu-check {time.strftime('%Y-%m-%d %H:%M:%S')}: torch {torch.__version__}, CUDA "
             f"{torch.version.cuda}, {len(names)} GPU(s): {', '.join(names)}"]
    failed = 0
    for name, fn in CHECKS.items():
        t0 = time.perf_counter()
        try:
            lines.append(f"PASS {name}: {fn()} [{time.perf_counter() - t0:.1f} s]")
        except Exception as e:  # noqa: BLE001 - every check reports, none stops the others
            failed += 1
            lines.append(f"FAIL {name}: {type(e).__name__}: {e} [{time.perf_counter() - t0:.1f} s]")
            traceback.print_exc()
        print(lines[-1], flush=True)
    if not a.no_bench:
        try:
            _benchmarks(lines)
        except Exception as e:  # noqa: BLE001
            failed += 1
            lines.append(f"FAIL benchmarks: {type(e).__name__}: {e}")
            traceback.print_exc()
    lines.append(f"{'FAILED ' + str(failed) if failed else 'all passed'}; "
                 f"{time.perf_counter() - t_start:.0f} s in all")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[len(CHECKS) + 1:]))
    print(f"summary: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
