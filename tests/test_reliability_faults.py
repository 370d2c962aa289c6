"""Faults injected into real `turbtl` runs (subprocesses, real MPI ranks, real files):

- damaged data: an FDNS chunk cut short or altered, model.pt cut short, a training checkpoint cut
  short, a DNS checkpoint tampered with or cut short, completeness markers lost, a row file of garbage;
  each is detected and reported with the path and what to do (never silently used), and doing what the
  message says recovers the uninterrupted result;
- two commands on one run folder: the second stops (exit 2) naming the holder, nothing corrupted;
- a full disk (tmpfs, as root) and a file-size limit (RLIMIT_FSIZE): one clear line, a consistent store,
  and the same command finishes equal to an uninterrupted run once space is back;
- MPI: one rank failing (its checkpoint path is unwritable) aborts both ranks with its message; a
  blow-up under MPI and serially names step, time and the last good checkpoint.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reliability_common import (assert_same_zarr, ci_run, copy_run, one_error_line, popen, snapshot, turbtl,
                                write_config)
from suite.fdns import completed, open_fdns

CI = 'extends = "ci"\n'


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return ci_run(tmp_path_factory, upto="transfer")


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _chunk(store: Path, var: str, member: int, tchunk: int) -> Path:
    p = store / var / "c" / str(member) / str(tchunk)
    while p.is_dir():  # the trailing chunk indices of the whole (y, x) or (k) extent
        p = p / "0"
    return p


# --------------------------------------------------------------------------------------------
# damaged data


@pytest.mark.parametrize("damage, member, command", [("truncated", 0, "train"), ("altered", 3, "les")])
def test_damaged_fdns_chunk_is_reported_by_its_readers(shared, tmp_path, damage, member, command):
    """A training member's chunk cut short (read by `turbtl train`), a test member's chunk with one byte
    altered (only the chunk's checksum sees it; read by `turbtl les`)."""
    run = copy_run(shared, tmp_path / "run", parts=("fdns", "models", "stages"))
    chunk = _chunk(run / "fdns" / "base.zarr", "omega", member, 0)
    if damage == "truncated":
        _cut(chunk)
    else:
        b = bytearray(chunk.read_bytes())
        b[len(b) // 2] ^= 0x5A
        chunk.write_bytes(bytes(b))
    before = snapshot(run)
    extra = ["--force"] if command == "train" else ["--no-progress"]
    r = turbtl(command, "--preset", "ci", "--run-dir", run, *extra, check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "base.zarr is damaged" in line and "turbtl dns --force --systems base" in line
    if command == "train":
        assert snapshot(run) == before  # the old model is kept
    assert not (run / "les" / "base.zarr").exists()


def test_truncated_model_is_reported_by_every_stage_that_reads_it(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run", parts=("fdns", "models", "stages"))
    model = run / "models" / "base" / "model.pt"
    _cut(model)
    before = snapshot(run)
    for cmd in (["train"], ["transfer", "--quiet"], ["analyze"], ["les", "--no-progress"]):
        r = turbtl(cmd[0], "--preset", "ci", "--run-dir", run, *cmd[1:], check=False)
        line = one_error_line(r.stderr)
        assert r.returncode == 2 and str(model) in line and "corrupt" in line and "turbtl train --force" in line, line
    assert snapshot(run) == before


def test_truncated_training_checkpoint_is_refused_and_force_starts_over(shared, tmp_path):
    import torch

    from suite.config import load_config
    from suite.dataset import FDNSData
    from suite.model import model_from_config
    from suite.train import TrainSettings, base_paths, fit

    run = copy_run(shared, tmp_path / "run", parts=("fdns", "stages"))
    cfg = load_config(preset="ci")
    paths = base_paths(run)
    paths["dir"].mkdir(parents=True)
    data = FDNSData(run / "fdns" / "base.zarr")  # a real interrupted training: 1 of 3 epochs, its checkpoint
    norm = data.normalization()
    torch.manual_seed(0)
    fit(model_from_config(cfg), data.tensors("train", norm), None,
        TrainSettings.from_config(cfg, progress=False), checkpoint=paths["checkpoint"], stop_after=1)
    _cut(paths["checkpoint"])
    before = snapshot(run)
    r = turbtl("train", "--preset", "ci", "--run-dir", run, "--resume", check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and str(paths["checkpoint"]) in line and "--force" in line
    assert snapshot(run) == before
    turbtl("train", "--preset", "ci", "--run-dir", run, "--force")  # what the message says: starts over
    assert not paths["checkpoint"].exists()
    assert torch.equal(torch.load(paths["model"], weights_only=True)["state_dict"]["conv1.weight"],
                       torch.load(shared / "models" / "base" / "model.pt", weights_only=True)["state_dict"]["conv1.weight"])


def _mark_incomplete(store: Path, member: int, sl: slice) -> None:
    import zarr
    g = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    row = g["complete"][member, :]
    row[sl] = False
    g["complete"][member, :] = row


def test_dns_checkpoint_tampered_or_cut_is_reported_and_deleting_it_recovers(shared, tmp_path):
    from solver.checkpoint import member_path

    run = copy_run(shared, tmp_path / "run", parts=("fdns",))
    store, ck = run / "fdns" / "base.zarr", member_path(run / "fdns" / "base.ckpt", 3)
    _mark_incomplete(store, 3, slice(4, 8))  # member 3 must resume from its checkpoint
    with np.load(ck) as z:  # tampered: the state changed, the stored checksum kept
        arrays = {k: z[k] for k in z.files}
    arrays["omega_hat"] = arrays["omega_hat"] * 1.001
    np.savez(ck, **arrays)
    cmd = ("dns", "--preset", "ci", "--systems", "base", "--run-dir", run, "--no-progress")
    before = snapshot(run)
    r = turbtl(*cmd, check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and str(ck) in line and "sha256" in line and "delete this checkpoint" in line
    assert snapshot(run) == before
    _cut(ck)  # cut short: same, "truncated or corrupt"
    r = turbtl(*cmd, check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and str(ck) in line and "truncated or corrupt" in line
    ck.unlink()  # what the message says: member 3 starts over and the store ends as the uninterrupted one
    turbtl(*cmd)
    assert completed(store).all()
    assert_same_zarr(store, shared / "fdns" / "base.zarr")


def test_lost_completeness_markers_make_the_member_start_over(shared, tmp_path):
    run = copy_run(shared, tmp_path / "run", parts=("fdns",))
    store = run / "fdns" / "base.zarr"
    _mark_incomplete(store, 2, slice(0, 4))  # checkpoint says "all written", the markers disagree
    assert open_fdns(store).sizes["member"] == 4 and np.isnan(open_fdns(store)["pi"].values[2, :4]).all()
    turbtl("dns", "--preset", "ci", "--systems", "base", "--run-dir", run, "--no-progress")
    assert completed(store).all()
    assert_same_zarr(store, shared / "fdns" / "base.zarr")


@pytest.mark.parametrize("garbage", [b"\x89\xff\x00garbage", b"[1, 2, 3]", b'{"cc": 0.5}'])
def test_garbage_row_file_is_reported_and_deleting_it_redoes_the_subset(shared, tmp_path, garbage):
    import pandas as pd

    run = copy_run(shared, tmp_path / "run", parts=("fdns", "models", "sweep", "stages"))
    row = sorted((run / "sweep" / "beta20" / "rows").glob("*/tl-010.json"))[0]
    row.write_bytes(garbage)
    args = ("transfer", "--preset", "ci", "--run-dir", run, "--quiet")
    r = turbtl(*args, check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and str(row) in line and "delete it to redo that subset" in line
    row.unlink()
    turbtl(*args)
    got = pd.read_csv(run / "sweep" / "beta20" / "results.csv", dtype={"mask": str})
    ref = pd.read_csv(shared / "sweep" / "beta20" / "results.csv", dtype={"mask": str})
    pd.testing.assert_frame_equal(got.drop(columns="wall_time_s"), ref.drop(columns="wall_time_s"))


# --------------------------------------------------------------------------------------------
# two commands on one run folder


def test_a_second_command_on_a_busy_run_folder_stops_and_corrupts_nothing(shared, tmp_path):
    run = tmp_path / "run"
    dns = popen("dns", "--preset", "ci", "--systems", "base", "--run-dir", run, "--no-progress")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and dns.poll() is None:
            lock = run / ".turbtl.lock"
            if (run / "fdns" / "base.zarr" / "zarr.json").exists() and lock.exists() and lock.read_text():
                break
            time.sleep(0.02)
        assert dns.poll() is None, "dns finished before the test could hold it"
        os.kill(dns.pid, signal.SIGSTOP)  # keep it holding the folder while the others try
        before = snapshot(run)
        for cmd in (["train"], ["dns", "--systems", "base"], ["report"]):
            r = turbtl(cmd[0], "--preset", "ci", "--run-dir", run, *cmd[1:], check=False)
            line = one_error_line(r.stderr)
            assert r.returncode == 2 and f"in use by `turbtl dns` (pid {dns.pid}" in line and "--run-dir" in line
        assert snapshot(run) == before
    finally:
        os.kill(dns.pid, signal.SIGCONT)
    out, err = dns.communicate(timeout=300)
    assert dns.returncode == 0, err
    assert completed(run / "fdns" / "base.zarr").all()
    assert_same_zarr(run / "fdns" / "base.zarr", shared / "fdns" / "base.zarr")
    assert not (run / "models").exists()


# --------------------------------------------------------------------------------------------
# a full disk


def _limit_file_size(limit: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _assert_consistent(store: Path):
    done = completed(store)
    ds = open_fdns(store)
    kept = np.flatnonzero(done.any(axis=1))
    assert list(ds["member"].values) == list(kept)
    for i, m in enumerate(kept):  # exactly the complete snapshots hold data
        assert np.isfinite(ds["pi"].values[i][done[m]]).all() and np.isnan(ds["pi"].values[i][~done[m]]).all()
    return done


def test_file_size_limit_gives_one_line_and_the_run_resumes(shared, tmp_path):
    # checkpoints (~69 kB) only at the end of each member, zarr chunks (< 10 kB) below the limit:
    # member 0's data is written and marked complete, then its checkpoint hits the limit
    cfg = write_config(tmp_path / "c.toml", CI + '[dns]\nsystems = ["base"]\ncheckpoint_interval = 50.0\n')
    run = tmp_path / "run"
    args = ("dns", "--config", cfg, "--run-dir", run, "--no-progress")
    r = turbtl(*args, check=False, preexec_fn=_limit_file_size(40_000))
    line = one_error_line(r.stderr)
    assert r.returncode == 1, r.stderr
    assert "file too large" in line and "member-00000.npz" in line and "run the same command again" in line
    store = run / "fdns" / "base.zarr"
    done = _assert_consistent(store)
    assert done[0].all() and not done[1:].any()
    assert not list((run / "fdns" / "base.ckpt").glob(".*tmp"))  # no temporary file left behind
    turbtl(*args)  # space is back
    assert_same_zarr(store, shared / "fdns" / "base.zarr")


@pytest.fixture
def tiny_fs(tmp_path):
    """A 700 kB tmpfs (needs root and CAP_SYS_ADMIN); yields (mount point, grow())."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt, lambda: subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_gives_one_line_a_consistent_store_and_resumes(shared, tiny_fs):
    mnt, grow = tiny_fs
    run = mnt / "run"
    # --ignore-resources: the estimate would refuse this 700 kB disk up front; here it fills up mid-run
    args = ("dns", "--preset", "ci", "--systems", "base", "--run-dir", run, "--no-progress", "--ignore-resources")
    r = turbtl(*args, check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "no space left on device while writing" in line and str(run) in line, r.stderr
    store = run / "fdns" / "base.zarr"
    done = _assert_consistent(store)
    assert 0 < done.sum() < done.size  # it stopped half-way
    grow()
    turbtl(*args)
    assert_same_zarr(store, shared / "fdns" / "base.zarr")


# --------------------------------------------------------------------------------------------
# MPI and blow-ups


def test_one_failing_rank_aborts_both_with_its_message(shared, tmp_path):
    from solver.checkpoint import member_path

    run = copy_run(shared, tmp_path / "run", parts=("fdns",))
    store = run / "fdns" / "base.zarr"
    _mark_incomplete(store, 2, slice(0, 8))
    bad = member_path(run / "fdns" / "base.ckpt", 2)  # rank 1 holds members 2, 3: its checkpoint path
    bad.unlink()                                      # is a folder, so its writes fail; rank 0 has
    (bad / "occupied").mkdir(parents=True)            # nothing to do and waits for rank 1
    r = turbtl("dns", "--preset", "ci", "--systems", "base", "--run-dir", run, "--no-progress", np_=2,
               check=False, timeout=180)
    assert r.returncode != 0
    assert "[rank 1] aborting the MPI job" in r.stderr and str(bad) in r.stderr, r.stderr
    assert "[rank 0] aborting" not in r.stderr
    _assert_consistent(store)


@pytest.mark.parametrize("ranks", [1, 2])
def test_blow_up_names_member_step_time_and_the_last_good_checkpoint(tmp_path, ranks):
    from solver.checkpoint import read_checkpoint

    cfg = write_config(tmp_path / "c.toml", CI + '[dns]\nsystems = ["base"]\ncfl_max = 0.2\n')
    run = tmp_path / "run"
    r = turbtl("dns", "--config", cfg, "--run-dir", run, "--no-progress", np_=ranks, check=False, timeout=300)
    ck = run / "fdns" / "base.ckpt" / "member-00001.npz"
    if ranks == 2:  # members 2, 3 run on rank 1: the first group to blow up aborts the job with its message
        assert r.returncode != 0
        assert "aborting the MPI job" in r.stderr and "SimulationBlowUp" in r.stderr, r.stderr
        line = next(ln for ln in r.stderr.splitlines() if "blew up" in ln)
        assert " at step " in line and ", t = " in line and ("last good checkpoint: " in line
                                                            or "no checkpoint written yet" in line), line
        _assert_consistent(run / "fdns" / "base.zarr")
        return
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert "base member 1: simulation blew up: CFL = 0.202 > cfl_max = 0.2 at step 400, t = 1.6" in line, r.stderr
    assert f"last good checkpoint: {ck} (step 325)" in line and "--force" in line
    assert read_checkpoint(ck)[1]["step"] == 325  # and it is that checkpoint
    _assert_consistent(run / "fdns" / "base.zarr")


def test_blow_up_before_any_checkpoint_says_so(tmp_path):
    cfg = write_config(tmp_path / "c.toml", CI + '[dns]\nsystems = ["base"]\ncfl_max = 0.05\n')
    r = turbtl("dns", "--config", cfg, "--run-dir", tmp_path / "run", "--no-progress", check=False)
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "at step 50, t = 0.2" in line and "no checkpoint written yet" in line
