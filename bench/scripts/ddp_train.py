"""DDP training throughput of one process group, for bench/training.py (run by torchrun; kept
out of the benchmark package so that its folder on sys.path shadows no project package).

    torchrun --standalone --nproc-per-node K bench/scripts/ddp_train.py [--grid 64 --samples 32 --batch 8]

Trains the small network on random data with ``suite.train.fit`` (the suite's one training
loop, gloo on CPU / nccl on CUDA, global batch split over the ranks) and prints on rank 0 one
JSON line: world size and global samples/s of the fastest epoch after the first (warm-up).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv=None) -> int:
    from suite import ddp as D
    from suite.dataset import SplitTensors
    from suite.model import ClosureCNN
    from suite.train import TrainSettings, fit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    env = D.setup(a.device)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(a.samples, 2, a.grid, a.grid, generator=g)
        y = torch.randn(a.samples, 1, a.grid, a.grid, generator=g)
        one = {"psi": 0.0, "omega": 0.0, "pi": 0.0}
        data = SplitTensors(x, y, {"mean": one, "std": {k: 1.0 for k in one}},
                            np.zeros((a.samples, 2), dtype=int), 2 * np.pi, 0.1)
        torch.manual_seed(0)
        model = ClosureCNN(5, 16, 5)
        res = fit(model, data, None, TrainSettings(epochs=a.epochs, batch_size=a.batch, lr=1e-4, progress=False),
                  env)
        t = min(res.history["epoch_time_s"][1:])
        if env.is_root:
            print(json.dumps({"world": env.world, "samples_per_s": a.samples / t, "epoch_s": t}), flush=True)
    finally:
        D.teardown(env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
