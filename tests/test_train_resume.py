"""A real `turbtl train` process SIGKILLed during an epoch, then --resume: the final weights equal
an uninterrupted run's (CPU, bit for bit)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fdns_synth import write_store
from suite.model import load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = """extends = "ci"
[model]
layers = 3
width = 16
kernel = 5
[train]
epochs = 4
batch_size = 4
lr = 1e-3
"""


def _cmd(run_dir, *extra):
    return [sys.executable, "-m", "turbtl.cli", "train", "--config", str(run_dir / "c.toml"),
            "--run-dir", str(run_dir), "--device", "cpu", *extra]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_RANK", "PMI_SIZE"):
        env.pop(k, None)
    return env


def _prepare(d):
    write_store(d / "fdns" / "base.zarr", n=32, snapshots=24, members=(2, 1, 1), chunk_time=8)
    (d / "c.toml").write_text(CONFIG)


@pytest.mark.slow
def test_kill_during_an_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _prepare(ref)
    _prepare(cut)
    r = subprocess.run(_cmd(ref), capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr

    ck = cut / "models" / "base" / "checkpoint.pt"
    proc = subprocess.Popen(_cmd(cut), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not ck.exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.05)
        state = torch.load(ck, weights_only=True)
        # kill half-way through the next epoch
        time.sleep(0.5 * state["history"]["epoch_time_s"][-1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ck, weights_only=True)["epoch"]
    assert killed_at < 3 and not (cut / "models" / "base" / "model.pt").exists()

    r = subprocess.run(_cmd(cut), capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert r.returncode == 2 and "--resume" in r.stderr  # no silent restart over a checkpoint
    r = subprocess.run(_cmd(cut, "--resume"), capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr

    m_ref, _, meta_ref = load_model(ref / "models" / "base")
    m_cut, _, meta_cut = load_model(cut / "models" / "base")
    for (k, a), (_, b) in zip(m_ref.state_dict().items(), m_cut.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta_ref["history"]["train_loss"] == meta_cut["history"]["train_loss"]
    assert len(meta_cut["history"]["train_loss"]) == 4
