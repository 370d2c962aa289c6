"""The Dask analysis of a whole (synthetic) sweep: real LocalClusters, real model folders and stores.

The run folder is built here in the contracts' formats: FDNS stores written by suite.fdns, models by
suite.model.save_model (TL networks = the base network with its trainable layers changed), and a
results.csv with the contract's columns.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

N, LAYERS, WIDTH, KERNEL = 16, 3, 3, 3
TARGETS = ["high_re", "beta20"]


def _field(rng, n, k0, members, snaps):
    """Random periodic fields with the power of each mode ∝ exp(-(|k| - k0)²)."""
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(k[:, None], k[None, :])
    amp = np.exp(-0.5 * (kk - k0) ** 2)
    z = rng.standard_normal((members, snaps, n, n)) + 1j * rng.standard_normal((members, snaps, n, n))
    return np.fft.ifft2(z * amp).real * n


def _store(path, rng, k0):
    from suite.fdns import Layout, create_store, split_labels, write_chunk
    lay = Layout(members=2, snapshots=4, chunk_time=2, n_les=N, n_dns=2 * N, L=2 * np.pi,
                 sample_interval=0.1, split=split_labels(1, 0, 1))
    create_store(path, lay, {"system": path.stem, "L": 2 * np.pi, "n_les": N, "n_dns": 2 * N})
    omega = _field(rng, N, k0, 2, 4)
    k = np.fft.fftfreq(N, 1.0 / N)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    k2[0, 0] = 1
    psi = np.fft.ifft2(np.fft.fft2(omega) / k2).real
    pi = _field(rng, N, k0 + 1, 2, 4)
    for m in range(2):
        for c in range(2):
            sl = slice(2 * c, 2 * c + 2)
            vals = {"psi": psi[m, sl], "omega": omega[m, sl], "pi": pi[m, sl]}
            vals |= {s: np.zeros(2) for s in ("energy", "enstrophy", "backscatter", "transfer")}
            vals["spectrum_dns"] = np.zeros((2, N + 1))
            write_chunk(path, m, c, vals)


def build_run(root):
    """A complete synthetic run folder (base + two targets, every subset of 3 layers)."""
    from suite.model import ClosureCNN, save_model
    rng = np.random.default_rng(7)
    (root / "fdns").mkdir(parents=True)
    for s, k0 in (("base", 2.0), ("high_re", 5.0), ("beta20", 3.0)):
        _store(root / "fdns" / f"{s}.zarr", rng, k0)
    norm = {"mean": {"psi": 0.0, "omega": 0.0, "pi": 0.0}, "std": {"psi": 1.0, "omega": 1.0, "pi": 1.0}}
    torch.manual_seed(0)
    base = ClosureCNN(LAYERS, WIDTH, KERNEL)
    save_model(root / "models" / "base", base, norm, {})
    masks = ["".join(b) for b in itertools.product("01", repeat=LAYERS) if "1" in b]
    rows = []
    for ti, t in enumerate(TARGETS):
        for mask in masks:
            tl = ClosureCNN(LAYERS, WIDTH, KERNEL)
            tl.load_state_dict(base.state_dict())
            g = torch.Generator().manual_seed(100 * ti + int(mask, 2))
            with torch.no_grad():
                for bit, conv in zip(mask, tl.convs):
                    if bit == "1":
                        conv.weight.add_(0.3 * torch.randn(conv.weight.shape, generator=g))
            save_model(root / "models" / "tl" / t / "f0.5_s0" / mask, tl, norm, {})
            first = mask.index("1") + 1
            rows.append(dict(target=t, fraction=0.5, seed=0, mask=mask, kind="tl",
                             cc=0.9 - 0.1 * first - 0.01 * mask.count("1"), cc_backscatter=0.5,
                             cc_diffusion=0.5, rel_l2=0.5, epochs=2, wall_time_s=1.0, n_trainable=10,
                             first_trainable=first, n_layers_trained=mask.count("1"),
                             final_train_loss=0.1, final_val_loss=0.1))
        (root / "sweep" / t).mkdir(parents=True)
        pd.DataFrame([r for r in rows if r["target"] == t]).to_csv(root / "sweep" / t / "results.csv", index=False)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("run"))


def _analyze(run_dir, workers, force=True):
    from analysis.aggregate import analyze_sweep, make_client
    client, cluster = make_client(workers)
    try:
        return analyze_sweep(run_dir, TARGETS, "base", client, percentile=90.0, activation_samples=2,
                             force=force, progress=False)
    finally:
        client.close()
        cluster.close()


def _snapshot(run_dir):
    from analysis.aggregate import open_result
    import xarray as xr
    out = {}
    for p in sorted((run_dir / "analysis").glob("*.zarr")):
        ds = open_result(p)
        ds.attrs.pop("provenance", None)
        out[p.name] = ds
    return out


def test_one_and_two_workers_give_identical_datasets(run_dir):
    info1 = _analyze(run_dir, 1)
    assert info1["networks"] == info1["computed"] == 2 * 7
    one = _snapshot(run_dir)
    info2 = _analyze(run_dir, 2)
    assert info2["computed"] == 14
    two = _snapshot(run_dir)
    assert set(one) == {"base.zarr", "data_spectra.zarr", "framework.zarr", "most_changed.zarr",
                        "sweep_high_re.zarr", "sweep_beta20.zarr"}
    for name in one:
        assert one[name].identical(two[name]), name
    sw = one["sweep_high_re.zarr"]
    assert bool(sw["done"].all())
    # frozen layers are exactly the base layers: no change stored, classes of the base network
    base_cls = one["base.zarr"]["cls"].values
    for i, mask in enumerate(sw["mask"].values):
        frozen = np.array([mask[l - 1] == "0" for l in sw["kernel_layer"].values])
        assert np.isnan(sw["dspec"].values[i, frozen]).all()
        assert np.all(sw["dspec"].values[i, ~frozen] > 0)
        assert np.array_equal(sw["cls"].values[i, frozen], base_cls[frozen])
        # a layer's transitions count every kernel of it once
        assert sw["transitions"].values[i].sum() == sw.sizes["kernel"]
    # Parseval bound of the spectral change
    ok = np.isfinite(sw["dspec"].values)
    assert np.all(sw["dspec"].values[ok] <= N * sw["dW"].values[ok] * (1 + 1e-5))
    fw = one["framework.zarr"]
    comp = json.loads(fw.attrs["comparison"])
    assert comp["high_re"]["measured_best"] == 1        # the constructed results favour layer 1
    assert np.isfinite(comp["high_re"]["spearman_rho"])


def test_resume_skips_finished_networks(run_dir):
    _analyze(run_dir, 1, force=False)  # finishes whatever an earlier test left undone
    info = _analyze(run_dir, 1, force=False)
    assert info["computed"] == 0 and info["networks"] == 14


def test_cli_analyze_and_summary(run_dir, tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('extends = "ci"\n[model]\nlayers = 3\nwidth = 3\nkernel = 3\n'
                   '[analyze]\nworkers = 1\npercentile = 90.0\n')
    r = subprocess.run([sys.executable, "-m", "suite.cli", "analyze", "--config", str(cfg), "--run-dir",
                        str(run_dir)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "analyze:" in r.stdout.strip().splitlines()[-1]
    from analysis import summary
    s = summary(run_dir)
    for fig in s["figures"].values():
        assert fig.endswith(".png") and (run_dir / "figures" / fig.split("/")[-1]).is_file()
    assert set(s["targets"]) == set(TARGETS)
    assert s["targets"]["high_re"]["measured_best"] == 1
    bad = subprocess.run([sys.executable, "-m", "suite.cli", "analyze", "--config", str(cfg), "--run-dir",
                          str(tmp_path / "empty")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "model" in bad.stderr
