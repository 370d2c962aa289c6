"""The paper preset's options (issue 19), on real runs of tiny grids.

- per-system DNS grids: two systems on 32² and 64² DNS, one 16² LES grid (`turbtl dns`);
- rotation augmentation: Π of the rotated DNS field equals the rotated Π of the store (the
  equivariance the augmentation relies on), and the augmented training set is the data plus its
  exact rotated copies, 4x the samples (`turbtl train` records the snapshots and the samples);
- re-training budgets by the number of re-trained layers (`transfer.epochs_by_layers`, `turbtl
  transfer`: the steps of every row);
- `turbtl config --preset paper` and `--estimate`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from solver.backends import make_backend
from solver.equation import Equation, Parameters
from solver.filters import make_filter
from solver.grid import Grid
from solver.sgs import FDNSSampler
from suite.config import load_config
from suite.dataset import FDNSData, rotate90
from suite.fdns import open_fdns, read_attrs

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
GRIDS = {"base": 32, "high_re": 64}
CONFIG = """extends = "ci"
[grid]
n_dns = 32
n_les = 16
[systems.high_re]
n_dns = 64
[dns]
systems = ["base", "high_re"]
snapshots = 4
[train]
augment = "rot90"
[transfer]
targets = ["high_re"]
epochs_by_layers = [2, 3]
fractions = [0.5]
oracle_steps = 0
"""


def turbtl(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def two_grids(tmp_path_factory):
    """`turbtl dns` of base (32²) and high_re (64²) with --save-dns, one 16² LES grid."""
    top = tmp_path_factory.mktemp("paper")
    cfg = top / "two_grids.toml"
    cfg.write_text(CONFIG)
    run = top / "run"
    r = turbtl("dns", "--config", str(cfg), "--run-dir", str(run), "--save-dns", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return cfg, run, r.stdout


def test_each_system_on_its_own_dns_grid_and_the_les_grid(two_grids):
    cfg, run, out = two_grids
    fps = set()
    for system, n in GRIDS.items():
        assert f"dns {system}: 4 members x 4 snapshots" in out
        path = run / "fdns" / f"{system}.zarr"
        a = read_attrs(path)
        assert a["n_dns"] == n and a["n_les"] == 16
        prov = json.loads(a["provenance"])
        assert prov["config"]["systems"][system]["n_dns"] == n and prov["config"]["grid"]["n_dns"] == 32
        fps.add(a["fingerprint"])
        ds = open_fdns(path)
        for v in ("psi", "omega", "pi"):
            assert ds[v].shape == (4, 4, 16, 16), v  # the LES shape, whatever the DNS grid
        assert ds.sizes["k"] == n // 2 + 1 and ds.omega_dns.shape == (4, 4, n, n)
        assert np.isfinite(ds.pi.values).all() and ds.pi.values.std() > 0
    assert len(fps) == 2
    # a rerun finds both stores finished (the fingerprints of their own grids match)
    r = turbtl("dns", "--config", str(cfg), "--run-dir", str(run), "--no-progress", "--save-dns")
    assert r.returncode == 0 and r.stdout.count("kept") == 2, r.stdout + r.stderr


@pytest.mark.slow
def test_two_grids_slab_decomposed_match_the_serial_run(two_grids, tmp_path):
    """`mpiexec -n 2` with dns.ranks_per_member = 2: each system's members slab-decomposed on its own
    grid (32² and 64²); the same numbers as the serial stores to rounding."""
    cfg, run, _ = two_grids
    par_cfg = tmp_path / "slab.toml"
    par_cfg.write_text(cfg.read_text().replace("[dns]\n", "[dns]\nranks_per_member = 2\n"))
    par = tmp_path / "slab"
    cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", "2", str(Path(sys.executable).parent / "turbtl"),
           "dns", "--config", str(par_cfg), "--run-dir", str(par), "--save-dns", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    for system, n in GRIDS.items():
        a, b = open_fdns(run / "fdns" / f"{system}.zarr"), open_fdns(par / "fdns" / f"{system}.zarr")
        assert b.attrs["n_dns"] == n and b.omega_dns.shape[-1] == n
        for v in ("psi", "omega", "pi", "omega_dns", "energy", "spectrum_dns"):
            x, y = a[v].values, b[v].values
            assert np.max(np.abs(x - y)) <= 1e-9 * np.max(np.abs(x)), (system, v)


def _sampler(attrs) -> FDNSSampler:
    n = int(attrs["n_dns"])
    g = Grid(n, float(attrs["L"]), backend=make_backend(n, backend="numpy", threads=1))
    eq = Equation(g, Parameters(re=float(attrs["re"]), mu=float(attrs["mu"])), dealias=attrs["dealias"],
                  jacobian=attrs["jacobian"])
    return FDNSSampler(eq, int(attrs["n_les"]), make_filter(attrs["filter"], float(attrs["filter_width"])))


@pytest.mark.parametrize("system", sorted(GRIDS))
def test_pi_of_the_rotated_flow_is_the_rotated_pi(two_grids, system):
    """Filtering, coarse-graining and Π commute with quarter turns of the periodic square: Π computed
    from the rotated DNS vorticity equals the store's Π rotated, to rounding (the store's own Π is
    recomputed first from the same DNS field, so the comparison uses the DNS's exact numerics)."""
    _, run, _ = two_grids
    ds = open_fdns(run / "fdns" / f"{system}.zarr")
    sampler = _sampler(ds.attrs)
    be = sampler.backend
    for member, time in ((0, 0), (3, 3)):
        w = ds.omega_dns.values[member, time]
        stored = {v: ds[v].values[member, time] for v in ("psi", "omega", "pi")}
        again = sampler(be.rfft2(w))
        for v, ref in stored.items():
            assert np.allclose(again[v], ref, rtol=0, atol=1e-10 * np.abs(ref).max()), v
        for turns in (1, 2, 3):
            rot = sampler(be.rfft2(np.ascontiguousarray(rotate90(w, turns))))
            for v, ref in stored.items():
                err = np.abs(rot[v] - rotate90(ref, turns)).max()
                assert err <= 1e-10 * np.abs(ref).max(), (v, turns, err)
        # and a rotation is not the identity on these fields
        assert np.abs(rotate90(stored["pi"], 1) - stored["pi"]).max() > 0.1 * np.abs(stored["pi"]).max()


def test_rot90_augmentation_is_four_exact_rotated_copies(two_grids):
    _, run, _ = two_grids
    data = FDNSData(run / "fdns" / "base.zarr")
    norm = data.normalization()
    plain = data.tensors("train", norm)
    aug = data.tensors("train", norm, augment="rot90")
    n = len(plain)
    assert n == 8 and plain.turns is None and plain.snapshots == 8
    assert len(aug) == 4 * n and aug.snapshots == n and aug.turns.tolist() == [0] * n + [1] * n + [2] * n + [3] * n
    assert np.array_equal(aug.index, np.concatenate([plain.index] * 4))
    for k in range(4):
        rows = slice(k * n, (k + 1) * n)
        assert torch.equal(aug.x[rows], rotate90(plain.x, k)) and torch.equal(aug.y[rows], rotate90(plain.y, k))
    # the rotated copies are the physical samples of the rotated flows: Π of the rotated DNS field
    sampler = _sampler(data.ds.attrs)
    m, t = plain.index[5]
    w = np.ascontiguousarray(rotate90(data.ds.omega_dns.values[m, t], 1))
    pi = sampler(sampler.backend.rfft2(w))["pi"]
    assert np.allclose(aug.raw("pi")[n + 5], pi, rtol=0, atol=1e-5 * np.abs(pi).max())  # float32 tensors
    # rotation permutes the grid points: the training statistics are those of the plain data
    assert np.isclose(aug.x.double().mean(), plain.x.double().mean(), atol=1e-12)
    with pytest.raises(ValueError, match="rot90"):
        data.tensors("train", norm, augment="rot45")


@pytest.mark.slow
def test_train_augmented_then_transfer_budgets_by_layers(two_grids):
    """`turbtl train` with train.augment = rot90 trains on 4x the samples and records the snapshots
    (the fractions' base) and the samples (the oracle's budget); `turbtl transfer` with
    transfer.epochs_by_layers = [2, 3] gives each run epochs by its number of re-trained layers."""
    cfg, run, _ = two_grids
    r = turbtl("train", "--config", str(cfg), "--run-dir", str(run), "--device", "cpu")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    meta = json.loads((run / "models" / "base" / "meta.json").read_text())
    assert meta["n_train"] == 8 and meta["n_samples"] == 32 and len(meta["train_index"]) == 8
    r = turbtl("transfer", "--config", str(cfg), "--run-dir", str(run), "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    rows = pd.read_csv(run / "sweep" / "high_re" / "results.csv")
    # 4 samples (0.5 x 8 snapshots) in batches of 8: one step per epoch; patience 0: whole budgets
    expected = {"tl": lambda k: 2 if k == 1 else 3, "random": lambda k: 2, "scratch": lambda k: 3}
    seen = set()
    for _, row in rows.iterrows():
        if row["kind"] in expected:
            assert row["steps"] == expected[row["kind"]](int(row["n_layers_trained"])), row.to_dict()
            seen.add((row["kind"], int(row["n_layers_trained"])))
        elif row["kind"] == "oracle":
            assert row["steps"] == 3 * 4  # the base network's: 3 epochs x ceil(32 samples / 8)
    assert {("tl", 1), ("tl", 2), ("tl", 3), ("scratch", 3), ("random", 1)} <= seen


def test_config_paper_prints_the_papers_amounts_and_an_estimate():
    r = turbtl("config", "--preset", "paper")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["systems"]["high_re"]["n_dns"] == 2048 and d["systems"]["base"]["n_dns"] == 1024
    assert d["grid"]["n_les"] == 128
    dns, t = d["dns"], d["transfer"]
    assert dns["members_train"] * dns["snapshots"] == 2000 and dns["members_val"] * dns["snapshots"] == 200
    assert t["fractions"] == [0.1] and t["epochs_by_layers"] == [50, 100] and d["train"]["augment"] == "rot90"
    r = turbtl("config", "--preset", "paper", "--estimate")
    assert r.returncode == 0, r.stderr
    assert "2048² DNS (high_re), 1024² DNS (base, kf25, beta20)" in r.stdout
    assert "1 x 2048² + 3 x 1024² systems" in r.stdout and "8000 samples" in r.stdout
    assert "epochs [50, 100] by re-trained layers" in r.stdout


def test_the_small_preset_keeps_equal_steps():
    cfg = load_config(preset="small")
    assert cfg.transfer.epochs_by_layers == [] and cfg.train.augment == "none"
    assert all(s.n_dns == cfg.grid.n_dns for s in cfg.systems.values())


@pytest.mark.parametrize("text, words", [
    ("[systems.high_re]\nn_dns = 24", "must be >= grid.n_les = 16 and a multiple"),
    ("[systems.high_re]\nn_dns = 8", "must be >= grid.n_les = 16"),
    ("[systems.high_re]\nn_dns = 63", "even integer >= 8"),
    ("[systems.high_re]\nn_dns = -64", "even integer >= 8"),
    ("[systems.high_re]\nn_dns = 64.0", "integer"),
])
def test_invalid_per_system_grid_exits_2_naming_the_field(tmp_path, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('extends = "ci"\n' + text)
    run = tmp_path / "run"
    r = turbtl("dns", "--config", str(cfg), "--run-dir", str(run), "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "systems.high_re.n_dns" in lines[0] and words in lines[0], r.stderr
    assert not run.exists()


def test_forcing_checked_against_the_systems_own_grid(tmp_path):
    # kf = 25 needs more than 64² (2/3 cutoff 21): its own 128² grid resolves it, the default does not
    ok = tmp_path / "ok.toml"
    ok.write_text('extends = "ci"\n[dns]\nsystems = ["base", "kf25"]\n[systems.kf25]\nn_dns = 128\n')
    assert load_config(config_file=ok).system("kf25").n_dns == 128
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "ci"\n[dns]\nsystems = ["base", "kf25"]\n[systems.kf25]\nn_dns = 48\n')
    r = turbtl("config", "--config", str(bad))
    assert r.returncode == 2 and "systems.kf25.kf" in r.stderr and "systems.kf25.n_dns = 48" in r.stderr


def test_job_budget_by_number_of_retrained_layers():
    """The paper preset's budgets: 200 samples in batches of 16 = 13 steps per epoch; 50 epochs for
    one layer, 100 for two or more (scratch: all 11); the oracle the base network's 100 epochs of
    8,000 augmented samples; the small preset's equal steps for every compared run."""
    from suite.transfer import Job, SweepSpec
    from suite.transfer.steps import job_budget
    meta = {"history": {"train_loss": [0.0] * 100}, "n_samples": 8000}
    spec = SweepSpec.from_config(load_config(preset="paper"), "unused")
    L = 11

    def steps(kind, mask):
        return job_budget(Job("high_re", 0.1, 0, kind, mask), spec, 200, 2000, meta)
    assert steps("tl", "1" + "0" * 10) == 50 * 13 and steps("tl", "0" * 10 + "1") == 50 * 13
    assert steps("tl", "11" + "0" * 9) == 100 * 13 and steps("tl", "101" + "0" * 8) == 100 * 13
    assert steps("tl", "1" * L) == steps("scratch", "1" * L) == 100 * 13
    assert steps("random", "01" + "0" * 9) == 50 * 13  # as many layers as the subset it matches
    assert steps("oracle", "1" * L) == 100 * 500
    small = load_config(preset="small")
    spec = SweepSpec.from_config(small, "unused")
    masks = ["10000", "11000", "11111"]
    assert {job_budget(Job("t", 0.1, 0, "tl", m), spec, 7, 70, meta) for m in masks} == {small.transfer.steps}
