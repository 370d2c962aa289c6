"""`turbtl dns` end to end on the ci preset: real processes, real MPI ranks, real SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from suite.fdns import completed, open_fdns, read_attrs

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA_VARS = ("psi", "omega", "pi", "energy", "enstrophy", "spectrum_dns", "backscatter", "transfer", "complete")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _turbtl(*args, np_=1, timeout=300, check=True):
    cmd = [str(BIN / "turbtl"), "dns", "--no-progress", *args]
    if np_ > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(np_)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _assert_same_store(a, b):
    da, db = open_fdns(a, complete_only=False), open_fdns(b, complete_only=False)
    assert set(da.data_vars) == set(db.data_vars)
    for v in da.data_vars:
        x, y = da[v].values, db[v].values
        assert x.shape == y.shape and np.array_equal(x, y), f"{v} differs"
    for c in da.coords:
        assert np.array_equal(da[c].values, db[c].values), f"coordinate {c} differs"
    ta, tb = dict(da.attrs), dict(db.attrs)
    pa, pb = json.loads(ta.pop("provenance")), json.loads(tb.pop("provenance"))
    assert ta == tb
    assert pa["config"]["dns"] == pb["config"]["dns"]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """One serial ci run of the base system (shared by the tests below)."""
    run = tmp_path_factory.mktemp("dns") / "run"
    r = _turbtl("--preset", "ci", "--systems", "base", "--run-dir", str(run), "--save-dns")
    return run, r


def test_store_contents_attrs_and_physics(ci_run):
    run, r = ci_run
    assert "dns base: 4 members x 8 snapshots" in r.stdout and "members*steps/s" in r.stdout
    path = run / "fdns" / "base.zarr"
    ds = open_fdns(path)
    assert ds.sizes["member"] == 4 and ds.sizes["time"] == 8 and ds.sizes["y"] == ds.sizes["x"] == 16
    assert bool(ds.complete.all())
    assert list(ds.split.values) == ["train", "train", "val", "test"]
    assert np.allclose(ds.time.values, np.arange(8) * 0.1)
    a = ds.attrs
    for key in ("re", "nu", "mu", "beta", "kf", "forcing", "L", "n_dns", "n_les", "dt", "stepper", "dealias",
                "filter", "filter_width", "spinup_time", "sample_interval", "seed", "provenance"):
        assert key in a, key
    assert a["re"] == 400.0 and a["nu"] == 1 / 400 and a["n_dns"] == 64 and a["n_les"] == 16
    assert a["filter"] == "gaussian" and a["filter_width"] == pytest.approx(2 * 2 * np.pi / 16)
    prov = json.loads(a["provenance"])
    assert prov["config"]["dns"]["dt"] == a["dt"] and "code_version" in prov and "libraries" in prov
    # members differ (independent seeds), fields are finite, Π is a real signal
    psi = ds.psi.values
    assert np.isfinite(psi).all() and not np.allclose(psi[0], psi[1])
    assert np.std(ds.pi.values) > 0.01 * np.std(ds.omega.values)
    # the filtered vorticity is the coarse-grained, filtered DNS vorticity (omega_dns, --save-dns)
    from solver.filters import CoarseGrain, make_filter, wavenumbers
    w_dns = ds.omega_dns.values
    kx, ky = wavenumbers(64)
    G = make_filter("gaussian", a["filter_width"]).transfer(kx, ky)
    w_bar = np.fft.irfft2(CoarseGrain(64, 16)(G * np.fft.rfft2(w_dns)), s=(16, 16))
    assert np.max(np.abs(w_bar - ds.omega.values)) < 1e-12 * np.max(np.abs(w_dns))
    # DNS diagnostics agree with the stored DNS field: enstrophy = <w^2>/2, E = sum of the spectrum
    assert np.allclose(ds.enstrophy.values, 0.5 * np.mean(w_dns ** 2, axis=(-2, -1)), rtol=1e-12)
    assert np.allclose(ds.spectrum_dns.values.sum(-1), ds.energy.values, rtol=1e-10)
    # enstrophy goes to the subgrid scales on average (T = Π ∇²ω̄ > 0), with some backscatter
    assert float(ds.transfer.mean()) > 0
    bs = ds.backscatter.values
    assert np.all((bs > 0) & (bs < 0.6))


def test_a_finished_store_is_skipped_and_force_redoes_it(ci_run, tmp_path):
    run, _ = ci_run
    path = run / "fdns" / "base.zarr"
    before = (path / "psi" / "zarr.json").stat().st_mtime_ns
    from suite.rundir import read_stage
    rate = read_stage(run, "dns")["members_steps_per_s"]["base"]
    r = _turbtl("--preset", "ci", "--systems", "base", "--run-dir", str(run), "--save-dns")
    assert "kept (use --force to redo)" in r.stdout
    assert (path / "psi" / "zarr.json").stat().st_mtime_ns == before
    # the skip keeps the store's own rate in the stage record (not the skip's zero)
    rec = read_stage(run, "dns")
    assert rate > 0 and rec["members_steps_per_s"]["base"] == rate and len(rec["invocations"]) >= 2
    # another configuration on the same store is refused (exit 2, store untouched)
    r = _turbtl("--preset", "ci", "--systems", "base", "--run-dir", str(run), check=False)
    assert r.returncode == 2 and "another configuration" in r.stderr and "--force" in r.stderr
    assert (path / "psi" / "zarr.json").stat().st_mtime_ns == before


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    r = _turbtl("--preset", "ci", "--systems", "nosuch", "--run-dir", str(run), check=False)
    assert r.returncode == 2 and "nosuch" in r.stderr
    r = _turbtl("--preset", "ci", "--systems", "kf25", "--run-dir", str(run), check=False)
    assert r.returncode == 2 and "kf" in r.stderr
    assert not (run / "fdns").exists()
    # a foreign zarr store where the FDNS store should be
    import xarray as xr
    (run / "fdns").mkdir(parents=True)
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_zarr(run / "fdns" / "base.zarr", zarr_format=3, consolidated=False)
    r = _turbtl("--preset", "ci", "--systems", "base", "--run-dir", str(run), check=False)
    assert r.returncode == 2 and "kind" in r.stderr


def test_one_and_two_ranks_write_identical_stores(ci_run, tmp_path):
    """Members are spread over 2 rank groups that write their own chunks concurrently; the store is
    bit-identical to the serial one."""
    run, _ = ci_run
    par = tmp_path / "par"
    r = _turbtl("--preset", "ci", "--systems", "base", "--run-dir", str(par), "--save-dns", np_=2)
    assert r.stdout.count("dns base:") == 1  # one summary line, from rank 0
    _assert_same_store(run / "fdns" / "base.zarr", par / "fdns" / "base.zarr")


def _write_config(path: Path) -> Path:
    """ci, but more and smaller chunks (the last one short): the run lasts long enough to be killed
    half-way, after the first member has finished."""
    path.write_text('extends = "ci"\n[dns]\nsystems = ["beta20"]\nsnapshots = 23\nchunk_time = 3\n'
                    'sample_interval = 0.08\nspinup_time = 0.4\n')
    return path


def test_sigkill_and_rerun_gives_the_uninterrupted_store(tmp_path):
    cfg = _write_config(tmp_path / "cfg.toml")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _turbtl("--config", str(cfg), "--run-dir", str(ref))
    store = killed / "fdns" / "beta20.zarr"
    cmd = [str(BIN / "turbtl"), "dns", "--no-progress", "--config", str(cfg), "--run-dir", str(killed)]
    n_done, total = 0, None
    for attempt in range(3):  # the kill must land while some but not all chunks are complete
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT)
        deadline = time.time() + 120
        try:
            while time.time() < deadline and proc.poll() is None:
                if (store / "complete" / "zarr.json").exists():
                    try:
                        done = completed(store)
                    except Exception:  # noqa: BLE001 - metadata being written right now
                        done = None
                    if done is not None:
                        total = done.size
                        n_done = int(done.sum())
                        if 0 < n_done < total and n_done >= total // 3:
                            break
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if 0 < n_done < total:
            break
        _turbtl("--config", str(cfg), "--run-dir", str(killed), "--force")  # finished too fast: try again
    assert 0 < n_done < total, "could not kill the run half-way"
    assert 0 < int(completed(store).sum()) < total
    r = _turbtl("--config", str(cfg), "--run-dir", str(killed))
    assert "dns beta20:" in r.stdout
    _assert_same_store(ref / "fdns" / "beta20.zarr", store)
    # it resumed from checkpoints instead of starting over
    rec = json.loads((killed / "stages" / "dns.json").read_text())
    full = json.loads((ref / "stages" / "dns.json").read_text())
    assert rec["member_steps"]["beta20"] < full["member_steps"]["beta20"]
    assert read_attrs(store)["fingerprint"] == read_attrs(ref / "fdns" / "beta20.zarr")["fingerprint"]


def test_slab_decomposed_members_match_the_serial_run(ci_run, tmp_path):
    """2 ranks in one group (dns.ranks_per_member = 2): every member slab-decomposed over both
    ranks. Same numbers as the serial run to rounding (the FFTs are split differently)."""
    run, _ = ci_run
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('extends = "ci"\n[dns]\nranks_per_member = 2\n')
    par = tmp_path / "slab"
    _turbtl("--config", str(cfg), "--systems", "base", "--run-dir", str(par), "--save-dns", np_=2)
    a = open_fdns(run / "fdns" / "base.zarr")
    b = open_fdns(par / "fdns" / "base.zarr")
    for v in ("psi", "omega", "pi", "omega_dns", "energy", "spectrum_dns"):
        x, y = a[v].values, b[v].values
        assert np.max(np.abs(x - y)) <= 1e-9 * np.max(np.abs(x)), v


def test_torch_backend_store_matches_the_numpy_one(ci_run, tmp_path):
    """dns.backend = "torch" (CPU here; CUDA on a GPU node) gives the numpy backend's numbers to rounding."""
    run, _ = ci_run
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('extends = "ci"\n[dns]\nbackend = "torch"\n')
    _turbtl("--config", str(cfg), "--systems", "base", "--run-dir", str(tmp_path / "t"))
    a = open_fdns(run / "fdns" / "base.zarr")
    b = open_fdns(tmp_path / "t" / "fdns" / "base.zarr")
    assert b.attrs["backend"] == "torch"
    for v in ("psi", "omega", "pi", "energy", "spectrum_dns"):
        x, y = a[v].values, b[v].values
        assert np.max(np.abs(x - y)) <= 1e-10 * np.max(np.abs(x)), v
