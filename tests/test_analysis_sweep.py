"""The Dask analysis of a whole (synthetic) sweep: real LocalClusters, real model folders and stores.

The run folder comes from bench.synthetic.build_run (the same builder the analysis benchmarks use), in
the contracts' formats: FDNS stores written by suite.fdns, models by suite.model.save_model (TL
networks = the base network with its trainable layers changed), and a results.csv with the
contract's columns.
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
                                 n=N, targets=TARGETS)
    assert n_networks == 14
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
    r = subprocess.run([sys.executable, "-m", "turbtl.cli", "analyze", "--config", str(cfg), "--run-dir",
                        str(run_dir)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "analyze:" in r.stdout.strip().splitlines()[-1]
    from analysis import summary
    s = summary(run_dir)
    for fig in s["figures"].values():
        assert fig.endswith(".png") and (run_dir / "figures" / fig.split("/")[-1]).is_file()
    assert set(s["targets"]) == set(TARGETS)
    assert s["targets"]["high_re"]["measured_best"] == 1
    bad = subprocess.run([sys.executable, "-m", "turbtl.cli", "analyze", "--config", str(cfg), "--run-dir",
                          str(tmp_path / "empty")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "model" in bad.stderr
