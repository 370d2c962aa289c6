"""A synthetic but complete run folder for the analysis benchmarks (not a benchmark module).

Written in the contracts' formats by the suite's own writers: FDNS stores (``suite.fdns``), a base
network and one transfer-learned network per layer subset and seed (``suite.model.save_model``; TL =
the base with its trainable layers perturbed) and the sweep's ``results.csv``. The CCs in the table
are random draws (seeded), with no built-in preference for any layer: a test of the analysis must
derive what it expects from the table, not from a premise of the fixture.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from suite import layout
from suite.fdns import Layout, create_store, split_labels, write_chunk
from suite.model import ClosureCNN, save_model

TARGETS = ("high_re", "beta20")


def _fields(rng, n: int, k0: float, count: int):
    """ψ, ω, Π: random periodic fields with power around |k| = k0, ∇²ψ = −ω."""
    k = np.fft.fftfreq(n, 1.0 / n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    amp = np.exp(-0.5 * (np.sqrt(k2) - k0) ** 2)
    z = rng.standard_normal((2, count, n, n)) + 1j * rng.standard_normal((2, count, n, n))
    omega, pi = (np.fft.ifft2(z * amp).real * n)
    psi = np.fft.ifft2(np.fft.fft2(omega) / np.where(k2 > 0, k2, np.inf)).real
    return psi, omega, pi


def _store(path: Path, rng, n: int, k0: float, members: int = 2, snapshots: int = 4) -> None:
    lay = Layout(members=members, snapshots=snapshots, chunk_time=snapshots, n_les=n, n_dns=2 * n,
                 L=2 * math.pi, sample_interval=0.1, split=split_labels(members - 1, 0, 1))
    create_store(path, lay, {"system": path.stem, "L": 2 * math.pi, "n_les": n, "n_dns": 2 * n})
    for m in range(members):
        psi, omega, pi = _fields(rng, n, k0, snapshots)
        vals = {"psi": psi, "omega": omega, "pi": pi, "spectrum_dns": np.zeros((snapshots, n + 1))}
        vals |= {s: np.zeros(snapshots) for s in ("energy", "enstrophy", "backscatter", "transfer")}
        write_chunk(path, m, 0, vals)


def build_run(root, layers: int = 4, width: int = 8, kernel: int = 5, n: int = 32,
              targets=TARGETS, seeds=(0,)) -> tuple[Path, int]:
    """Write the run folder under ``root``; returns (root, number of TL networks)."""
    root = Path(root)
    rng = np.random.default_rng(7)
    layout.fdns_dir(root).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(("base",) + tuple(targets)):
        _store(layout.fdns_store(root, s), rng, n, 2.0 + 2 * i)
    norm = {"mean": {"psi": 0.0, "omega": 0.0, "pi": 0.0}, "std": {"psi": 1.0, "omega": 1.0, "pi": 1.0}}
    torch.manual_seed(0)
    base = ClosureCNN(layers, width, kernel)
    save_model(layout.base_model_dir(root), base, norm, {})
    masks = ["".join(b) for b in itertools.product("01", repeat=layers) if "1" in b]
    cc_rng = np.random.default_rng(11)
    for ti, t in enumerate(targets):
        rows = []
        for seed, mask in itertools.product(seeds, masks):
            tl = ClosureCNN(layers, width, kernel)
            tl.load_state_dict(base.state_dict())
            g = torch.Generator().manual_seed(100 * ti + int(mask, 2) + 10000 * seed)
            with torch.no_grad():
                for bit, conv in zip(mask, tl.convs):
                    if bit == "1":
                        conv.weight.add_(0.3 * torch.randn(conv.weight.shape, generator=g))
            save_model(layout.tl_model_dir(root, t, 0.1, seed, mask), tl, norm, {})
            first = mask.index("1") + 1
            rows.append(dict(target=t, fraction=0.1, seed=seed, mask=mask, kind="tl",
                             cc=float(cc_rng.uniform(0.3, 0.9)), cc_backscatter=0.5, cc_diffusion=0.5, rel_l2=0.5,
                             epochs=1, wall_time_s=1.0, n_trainable=1, first_trainable=first,
                             n_layers_trained=mask.count("1"), final_train_loss=0.1, final_val_loss=0.1))
        layout.sweep_dir(root, t).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(layout.sweep_results(root, t), index=False)
    return root, len(masks) * len(targets) * len(seeds)
