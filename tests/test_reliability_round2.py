"""Reliability round 2 (issue 22), through the real CLI (`turbtl.cli.main`, the function behind `turbtl`):
malformed config files and misplaced run folders exit 2 in one line; every stage refuses an empty or
partial run folder before it writes (no report, no lock file, no folder); a resource estimate refuses
what cannot fit this machine; spin-up progress never goes quiet; provenance records thread counts.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from turbtl.cli import main

from reliability_common import LOCK, ci_run, copy_run, one_error_line, snapshot, turbtl, write_config

CI = 'extends = "ci"\n'


def _fails(argv, capsys, *words, code=2) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    line = one_error_line(err)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    return line


def _tree(folder: Path):
    """Every path under ``folder``, the lock file included (None if absent)."""
    folder = Path(folder)
    return None if not folder.exists() else sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------
# files


def test_config_not_utf8_names_file_line_and_column(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b'extends = "ci"\n[grid]\n# r\xe9solution\nn_dns = 64\n')
    _fails(["dns", "--config", cfg, "--run-dir", tmp_path / "run"], capsys,
           str(cfg), "not UTF-8", "line 3", "column 4", "0xe9")
    assert not (tmp_path / "run").exists()
    cfg.write_bytes(b"\xff\xfe[\x00g\x00")  # UTF-16 with a byte-order mark
    _fails(["config", "--config", cfg], capsys, str(cfg), "not UTF-8", "line 1", "column 1")


def test_config_not_toml_names_file_line_and_column(tmp_path, capsys):
    cfg = write_config(tmp_path / "bad.toml", CI + "[dns]\ndt = 0.004\nsnapshots = = 3\n")
    _fails(["train", "--config", cfg, "--run-dir", tmp_path / "run"], capsys,
           str(cfg), "not valid TOML", "line 4", "column")
    assert not (tmp_path / "run").exists()


def test_config_unreadable(tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path / "secret.toml", CI)
    real_open = open

    def deny(path, *a, **kw):
        if str(path) == str(cfg):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr("builtins.open", deny)
    _fails(["dns", "--config", cfg, "--run-dir", tmp_path / "run"], capsys, str(cfg), "permission denied")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# misplaced run folders


def test_run_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    for cmd in ("dns", "train", "report"):
        _fails([cmd, "--preset", "ci", "--run-dir", f], capsys, str(f), "is a file", "--run-dir")
    _fails(["dns", "--preset", "ci", "--run-dir", f / "run"], capsys, str(f / "run"), "is a file")
    assert f.read_text() == "mine\n" and _tree(tmp_path) == ["notes.txt"]


def test_run_dir_whose_parent_is_not_writable(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: emulate this user's view by the mode bits
        monkeypatch.setattr("suite.rundir._writable", lambda p: bool(Path(p).stat().st_mode & 0o200))
    try:
        _fails(["dns", "--preset", "ci", "--run-dir", ro / "a" / "run"], capsys,
               str(ro / "a" / "run"), f"the folder {ro} is not writable", "--run-dir")
        assert _tree(ro) == []
        _fails(["transfer", "--preset", "ci", "--run-dir", ro], capsys, str(ro), "not writable", "permissions")
    finally:
        ro.chmod(0o755)


def test_run_dir_of_another_configuration(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"preset": "ci", "source": "preset:ci"}))
    before = _tree(run)
    line = _fails(["dns", "--preset", "small", "--run-dir", run], capsys,
                  str(run), "another configuration", "'ci'", "'small'", "--run-dir")
    assert "runs/small" in line
    _fails(["report", "--preset", "small", "--run-dir", run], capsys, "another configuration")
    assert _tree(run) == before


def test_run_dir_that_is_not_a_run_folder(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("x")
    _fails(["dns", "--preset", "ci", "--run-dir", home], capsys, str(home), "not a turbtl run folder", "thesis.tex")
    assert _tree(home) == ["thesis.tex"]


def test_a_run_folder_with_only_rendered_jobs_is_a_run_folder(tmp_path, capsys):
    """`turbtl jobs render` writes RUN/jobs/ first; the stages the jobs then run must accept it."""
    run = tmp_path / "run"
    assert main(["jobs", "render", "--preset", "ci", "--run-dir", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["jobs"]
    capsys.readouterr()
    assert main(["dns", "--preset", "ci", "--run-dir", str(run), "--systems", "base", "--no-progress"]) == 0


def test_a_finished_stage_records_the_configuration(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["dns", "--preset", "ci", "--run-dir", str(run), "--systems", "base", "--no-progress"]) == 0
    capsys.readouterr()
    assert json.loads((run / "run.json").read_text())["preset"] == "ci"


# --------------------------------------------------------------------------------------------
# nothing to work on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return ci_run(tmp_path_factory, upto="train")


def _refuses(argv, run: Path, capsys, *words):
    before = _tree(run)
    _fails(argv, capsys, *words)
    assert _tree(run) == before, f"{run} was written to (a lock file or a report counts)"


STAGES_FIRST = [("train", "turbtl dns"), ("transfer", "turbtl train"), ("analyze", "turbtl dns"),
                ("les", "turbtl"), ("report", "turbtl dns")]


@pytest.mark.parametrize("stage, first", STAGES_FIRST, ids=[s for s, _ in STAGES_FIRST])
def test_every_stage_on_an_empty_run_folder(tmp_path, capsys, stage, first):
    empty = tmp_path / "run"
    empty.mkdir()
    _refuses([stage, "--preset", "ci", "--run-dir", empty], empty, capsys, str(empty), first)
    assert not (empty / LOCK).exists()


@pytest.mark.parametrize("stage", [s for s, _ in STAGES_FIRST])
def test_every_stage_on_a_missing_run_folder_creates_nothing(tmp_path, capsys, stage):
    _fails([stage, "--preset", "ci", "--run-dir", tmp_path / "nope"], capsys, str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


def test_report_on_an_empty_run_folder_writes_no_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _refuses(["report", "--run-dir", run], run, capsys, "no stage has finished", "turbtl dns")
    assert not (run / "report.html").exists()


def _stopped_early(run: Path, system: str):
    """The store of a DNS killed before any chunk of the system was complete."""
    import zarr
    g = zarr.open_group(str(run / "fdns" / f"{system}.zarr"), mode="r+", use_consolidated=False)
    g["complete"][...] = np.zeros(g["complete"].shape, bool)


def test_train_and_les_on_a_dns_that_stopped_early(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run", parts=("fdns", "models"))
    _stopped_early(run, "base")
    _refuses(["train", "--preset", "ci", "--run-dir", run, "--force"], run, capsys,
             "base.zarr", "'train' split", "turbtl dns")
    _refuses(["les", "--preset", "ci", "--run-dir", run, "--no-progress"], run, capsys, "base.zarr", "turbtl dns")


def test_transfer_before_train_and_analyze_before_transfer(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run", parts=("fdns",))
    _refuses(["transfer", "--preset", "ci", "--run-dir", run], run, capsys, "models/base", "turbtl train")
    _refuses(["analyze", "--preset", "ci", "--run-dir", run], run, capsys, "models/base", "turbtl train")
    run2 = copy_run(trained, tmp_path / "run2", parts=("fdns", "models", "stages"))
    # the shared `trained` folder may hold transfer outputs of tests that ran before this one
    shutil.rmtree(run2 / "models" / "tl", ignore_errors=True)
    (run2 / "stages" / "transfer.json").unlink(missing_ok=True)
    _refuses(["analyze", "--preset", "ci", "--run-dir", run2], run2, capsys, "models/tl", "turbtl transfer")


# --------------------------------------------------------------------------------------------
# resources


def test_a_grid_far_too_large_exits_2_with_the_estimate_and_no_run_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "huge.toml", CI + "[grid]\nn_dns = 1048576\n")
    for cmd in ("dns", "run"):
        line = _fails([cmd, "--config", cfg, "--run-dir", tmp_path / "run"], capsys,
                      "memory", "TB", "per process", "this machine has", "grid.n_dns = 1048576", "--ignore-resources")
        assert "dns" in line
        assert not (tmp_path / "run").exists()


def test_disk_limit_refuses_and_the_override_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TURBTL_DISK_LIMIT", "1000")
    run = tmp_path / "run"
    _fails(["dns", "--preset", "ci", "--run-dir", run, "--systems", "base"], capsys,
           "disk", "only 1 kB is free", "--ignore-resources")
    assert not run.exists()
    monkeypatch.setenv("TURBTL_MEMORY_LIMIT", "1000")
    _fails(["dns", "--preset", "ci", "--run-dir", run, "--systems", "base"], capsys, "memory", "this machine has 1 kB")
    assert main(["dns", "--preset", "ci", "--run-dir", str(run), "--systems", "base", "--no-progress",
                 "--ignore-resources"]) == 0
    assert (run / "fdns" / "base.zarr").is_dir()


def test_config_estimate_for_every_preset(capsys):
    for preset in ("ci", "small", "medium", "paper"):
        assert main(["config", "--preset", preset, "--estimate"]) == 0
        out = capsys.readouterr().out
        for word in ("memory/process", "disk", "core-hours", "dns", "train", "transfer", "analyze", "les", "total"):
            assert word in out, out
    assert "2,080,000 steps" in out and "GB" in out  # paper: 2.08 M steps per member (2e6 spin-up + 200 x 400), disk in GB


def test_dns_memory_estimate_against_tracemalloc():
    """The per-point constant of the DNS memory model against what the solver allocates at 256²."""
    import tracemalloc

    from solver.filters import make_filter
    from solver.sgs import FDNSSampler
    from suite.config import load_config
    from suite.dns import dns_ensemble
    from suite.resources import DNS_BYTES_PER_POINT
    n = 256
    cfg = load_config(preset="ci", overrides={"grid": {"n_dns": n}, "dns": {"threads": 1}})
    # a small member first, untraced: modules imported lazily on the way (pandas, xarray, ...) are
    # not the solver's per-point memory
    small = load_config(preset="ci", overrides={"grid": {"n_dns": 32, "n_les": 16}, "dns": {"threads": 1}})
    warm = dns_ensemble(small, "base").member(0, cfl_max=10.0).start()
    warm.advance_to(3)
    FDNSSampler(warm.equation, 16, make_filter(small.dns.filter, small.filter_width))(warm.state.omega_hat)
    del warm
    tracemalloc.start()
    try:
        run = dns_ensemble(cfg, "base").member(0, cfl_max=10.0).start()
        run.advance_to(3)
        FDNSSampler(run.equation, cfg.grid.n_les, make_filter(cfg.dns.filter, cfg.filter_width))(run.state.omega_hat)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ratio = DNS_BYTES_PER_POINT * n * n / peak
    assert 0.8 <= ratio <= 1.5, (peak / n / n, ratio)


# --------------------------------------------------------------------------------------------
# progress and provenance


def test_spinup_reports_steps_rate_and_eta_and_the_summary_says_where_time_went(tmp_path):
    cfg = write_config(tmp_path / "spin.toml", CI + '[dns]\nsystems = ["base"]\nmembers_train = 1\n'
                       "members_val = 0\nspinup_time = 6.0\n")
    r = turbtl("dns", "--config", cfg, "--run-dir", tmp_path / "run", timeout=300)
    notes = [s for s in r.stderr.replace("\r", "\n").splitlines() if "spin-up" in s]
    assert notes, r.stderr[-2000:]
    last = notes[-1]
    for w in ("member", "steps", "steps/s", "ETA member", "all"):
        assert w in last, last
    summary = json.loads((tmp_path / "run" / "stages" / "dns.json").read_text())["summary"]
    for w in ("spin-up", "steps", "filtering", "I/O", "other"):
        assert w in summary, summary


def test_provenance_records_thread_counts_and_the_command(trained):
    meta = json.loads((trained / "models" / "base" / "meta.json").read_text())
    prov = meta["provenance"]
    th = prov["threads"]
    for k in ("torch_intraop", "fftw", "numba", "openmp", "fused_x", "mpi_ranks", "ddp_world"):
        assert k in th, th
    assert isinstance(th["torch_intraop"], int) and th["torch_intraop"] >= 1 and th["ddp_world"] == 1
    assert th["env"].get("OMP_NUM_THREADS") == "1"
    assert "train" in prov["command"]["argv"] and "OMP_NUM_THREADS=1" in prov["command"]["rerun"]
    import zarr
    g = zarr.open_group(str(trained / "fdns" / "base.zarr"), mode="r", use_consolidated=False)
    p = g.attrs["provenance"]
    p = json.loads(p) if isinstance(p, str) else p
    assert p["threads"]["fftw"] >= 1 and p["threads"]["mpi_ranks"] == 1 and "dns" in p["command"]["argv"]
