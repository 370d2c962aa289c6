"""The Dask analysis of a whole (synthetic) sweep: real LocalClusters, real model folders and stores.

The run folder comes from bench.synthetic.build_run (the same builder the analysis benchmarks use), in
the contracts' formats: FDNS stores written by suite.fdns, models by suite.model.save_model (TL
networks = the base network with its trainable layers changed), and a results.csv with the
contract's columns whose CCs are random draws: what the tests expect of the comparison is derived
here from the table and the stored quantities, never from a premise built into the fixture.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

N, LAYERS, WIDTH, KERNEL = 16, 3, 3, 3
TARGETS = ["high_re", "beta20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from bench.synthetic import build_run
    root, n_networks = build_run(tmp_path_factory.mktemp("run"), layers=LAYERS, width=WIDTH, kernel=KERNEL,
                                 n=N, targets=TARGETS, seeds=(0, 1))
    assert n_networks == 28
    return root


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
    assert info1["networks"] == info1["computed"] == 2 * 7 * 2
    one = _snapshot(run_dir)
    info2 = _analyze(run_dir, 2)
    assert info2["computed"] == 28
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
    # step 3: the threshold is per layer and network; every re-trained layer has kernels above it
    for i, mask in enumerate(sw["mask"].values):
        for li, bit in enumerate(mask):
            if bit == "1":
                d = sw["dspec"].values[i, sw["kernel_layer"].values == li + 1]
                assert sw["threshold"].values[i, li] == pytest.approx(np.percentile(d, 90.0), rel=1e-5)
                assert sw["n_above"].values[i, li] == max(1, int(np.sum(d > sw["threshold"].values[i, li])))
                assert sw["change_top"].values[i, li].sum() == pytest.approx(1.0)
            else:
                assert sw["n_above"].values[i, li] == 0 and np.isnan(sw["change_top"].values[i, li]).all()
    _check_framework(run_dir, one)


def _check_framework(run_dir, stores):
    """The comparison against what the results table and the stored quantities say, recomputed here."""
    import pandas as pd
    from scipy.stats import spearmanr
    fw, data, base = stores["framework.zarr"], stores["data_spectra.zarr"], stores["base.zarr"]
    comp = json.loads(fw.attrs["comparison"])
    for t in TARGETS:
        df = pd.read_csv(run_dir / "sweep" / t / "results.csv", dtype={"mask": str})
        single = df[(df["kind"] == "tl") & (df["n_layers_trained"] == 1)]
        per_seed = single.pivot_table(index="seed", columns="first_trainable", values="cc")
        np.testing.assert_allclose(fw["cc_replicates"].sel(target=t).values, per_seed.values)
        assert int(fw["n_replicates"].sel(target=t)) == 2
        cc = per_seed.mean().values
        assert comp[t]["measured_best"] == int(np.argmax(cc)) + 1
        # σ from the stored gains and mismatch
        G, M = base["gain"].values, data["mismatch"].sel(target=t).values
        sigma = (G @ M) / (M.sum() * G[:, 1:].mean(axis=1))
        np.testing.assert_allclose(fw["score"].sel(target=t).values, sigma, rtol=1e-10)
        assert comp[t]["recommended"] == int(np.argmax(sigma)) + 1
        a = fw["agreement"].sel(target=t)
        assert float(a.sel({"method": "framework", "metric": "spearman"})) == pytest.approx(spearmanr(sigma, cc).statistic)
        assert float(a.sel({"method": "framework", "metric": "top1"})) == float(np.argmax(sigma) == np.argmax(cc))
        lo, hi = fw["agreement_lo"].sel(target=t).values, fw["agreement_hi"].sel(target=t).values
        assert np.all(lo[np.isfinite(lo)] <= hi[np.isfinite(lo)])
        # data step: the band lies where the mismatch is at least half its maximum
        band = data["in_band"].sel(target=t).values
        assert band.any() and np.all(M[band] >= 0.5 * M.max())


def test_resume_skips_finished_networks(run_dir):
    _analyze(run_dir, 1, force=False)  # finishes whatever an earlier test left undone
    info = _analyze(run_dir, 1, force=False)
    assert info["computed"] == 0 and info["networks"] == 28


def test_cli_analyze_and_summary(run_dir, tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('extends = "ci"\n[model]\nlayers = 3\nwidth = 3\nkernel = 3\n'
                   '[analyze]\nworkers = 1\npercentile = 90.0\n')
    r = subprocess.run([sys.executable, "-m", "turbtl.cli", "analyze", "--config", str(cfg), "--run-dir",
                        str(run_dir)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "analyze:" in r.stdout.strip().splitlines()[-1]
    from analysis import summary
    s = summary(run_dir)
    for fig in s["figures"].values():
        assert fig.endswith(".png") and (run_dir / "figures" / fig.split("/")[-1]).is_file()
    assert set(s["targets"]) == set(TARGETS)
    for t in TARGETS:
        assert {f"framework_step{i}_{t}" for i in (1, 2, 3)} <= set(s["figures"])
        v = s["targets"][t]
        assert set(v["agreement"]) == {"framework", "random", "params", "shallowest"}
        assert v["n_replicates"] == 2 and len(v["step3"]) == LAYERS
    from analysis.framework_report import framework_html
    pieces = framework_html(s)
    assert "null: random ranking" in pieces["test"] and "Step 3" in pieces["steps"]
    bad = subprocess.run([sys.executable, "-m", "turbtl.cli", "analyze", "--config", str(cfg), "--run-dir",
                          str(tmp_path / "empty")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not found" in bad.stderr   # the first missing input is named
