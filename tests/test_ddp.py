"""DDP: 2 real processes (torchrun, gloo) give the weights of 1 process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from fdns_synth import write_store
from suite.ddp import detect
from suite.model import ClosureCNN, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """extends = "ci"
[model]
layers = 3
width = 6
kernel = 3
[train]
epochs = 2
batch_size = 7
lr = 1e-3
"""


def _train(run_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_RANK", "PMI_SIZE"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "turbtl.cli", "train", "--config", str(run_dir / "c.toml"),
                        "--run-dir", str(run_dir), "--device", "cpu", *extra],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    runs = []
    for name in ("one", "two"):
        d = tmp_path / name
        # 2 train members x 10 snapshots = 20 samples, global batch 7: batches 7, 7, 6 (uneven rank shares)
        write_store(d / "fdns" / "base.zarr", n=16, snapshots=10, members=(2, 1, 1), chunk_time=4)
        (d / "c.toml").write_text(CONFIG)
        runs.append(d)
    _train(runs[0])
    r2 = _train(runs[1], "--nproc", "2")
    assert "2 process(es)" in r2.stdout
    m1, _, meta1 = load_model(runs[0] / "models" / "base")
    m2, _, meta2 = load_model(runs[1] / "models" / "base")
    assert meta2["provenance"]["world_size"] == 2 and meta1["provenance"]["world_size"] == 1
    torch.manual_seed(0)
    init = ClosureCNN(3, 6, 3).state_dict()
    moved = max(float((a - init[k]).abs().max()) for k, a in m1.state_dict().items())
    assert moved > 1e-3  # training did change the weights (6 Adam steps at lr 1e-3)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (k, (a - b).abs().max())
    h1, h2 = meta1["history"]["train_loss"], meta2["history"]["train_loss"]
    assert all(abs(x - y) <= 1e-6 * abs(x) for x, y in zip(h1, h2))


def test_detect_reads_every_launcher():
    assert detect({}) == (0, 1, 0, "none")
    assert detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1, "torchrun")
    assert detect({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                   "SLURM_STEP_ID": "0"}) == (3, 8, 1, "srun")
    # the batch script of an 8-task job is one process, not rank 3 of 8
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0"}) == (0, 1, 0, "none")
    assert detect({"PMI_RANK": "1", "PMI_SIZE": "2"}) == (1, 2, 1, "mpiexec")
    assert detect({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3",
                   "OMPI_COMM_WORLD_LOCAL_RANK": "0"}) == (2, 3, 0, "mpiexec")
