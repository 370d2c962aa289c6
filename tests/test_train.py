"""Training: data access, the network learns an exact linear target, the CLI writes the base model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fdns_synth import stencil_apply, write_store
from suite.dataset import FDNSData, batch_indices
from suite.model import ClosureCNN, load_model
from suite.train import TrainSettings, evaluate_model, fit

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("fdns") / "base.zarr", n=16, snapshots=12, members=(3, 1, 1))


def test_splits_by_member_and_training_statistics(store):
    data = FDNSData(store)
    assert data.members("train").tolist() == [0, 1, 2] and data.members("test").tolist() == [4]
    tr = data.snapshots("train")
    assert len(tr) == 36 and set(tr[:, 0]) == {0, 1, 2}
    sub = data.snapshots("train", fraction=0.25, seed=3)
    assert len(sub) == 9 and np.array_equal(sub, data.snapshots("train", fraction=0.25, seed=3))
    assert {tuple(p) for p in sub} <= {tuple(p) for p in tr}
    norm = data.normalization()
    ref = data.ds["omega"].isel(member=[0, 1, 2]).values
    assert norm["mean"]["omega"] == pytest.approx(ref.mean(), rel=1e-12)
    assert norm["std"]["omega"] == pytest.approx(ref.std(), rel=1e-12)
    t = data.tensors("test", norm)
    assert t.x.shape == (12, 2, 16, 16) and t.y.shape == (12, 1, 16, 16) and t.x.dtype == torch.float32
    # round trip to physical units, and the exact stencil relation of the synthetic store
    assert np.allclose(t.raw("omega"), data.ds["omega"].isel(member=4).values, atol=1e-5)
    assert np.allclose(t.raw("pi"), stencil_apply(t.raw("omega")) - 0.25, atol=1e-4)


def test_incomplete_store_uses_complete_snapshots_only(tmp_path):
    path = write_store(tmp_path / "part.zarr", n=16, snapshots=8, members=(2, 1, 1), complete=False)
    data = FDNSData(path)
    assert len(data.snapshots("train")) == 4  # one chunk of member 0
    from suite.errors import DataError
    with pytest.raises(DataError, match="no complete snapshots"):
        data.snapshots("test")


def test_batches_are_the_same_global_batches_for_any_world_size():
    one = batch_indices(21, 8, epoch=2, seed=5)
    two = [batch_indices(21, 8, epoch=2, seed=5, rank=r, world=2) for r in range(2)]
    for b, (idx, g) in enumerate(one):
        assert g == len(idx)
        assert np.array_equal(np.concatenate([two[0][b][0], two[1][b][0]]), idx)
    assert sorted(np.concatenate([i for i, _ in one]).tolist()) == list(range(21))
    assert not np.array_equal(one[0][0], batch_indices(21, 8, epoch=3, seed=5)[0][0])


def test_network_learns_an_exact_linear_stencil(store):
    data = FDNSData(store)
    norm = data.normalization()
    train, test = data.tensors("train", norm), data.tensors("test", norm)
    torch.manual_seed(0)
    model = ClosureCNN(1, 1, 5)  # one linear 5x5 layer (+ bias): Π is exactly representable
    res = fit(model, train, None, TrainSettings(epochs=150, batch_size=6, lr=2e-2, progress=False))
    assert res.history["train_loss"][-1] < 1e-4
    m = evaluate_model(model, test)
    assert m["cc"] > 0.999 and m["cc_backscatter"] > 0.999 and m["cc_diffusion"] > 0.999
    # (the kernel itself is not unique: ω̄ = −∇²ψ̄ lets the ψ̄ channel carry part of the stencil)
    assert m["rel_l2"] < 0.02


def test_frozen_layers_get_no_gradient_and_stay_fixed(store):
    data = FDNSData(store)
    norm = data.normalization()
    train = data.tensors("train", norm)
    torch.manual_seed(1)
    model = ClosureCNN(3, 4, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_trainable("010")
    fit(model, train, None, TrainSettings(epochs=1, batch_size=12, lr=1e-2, progress=False))
    after = model.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == k.startswith("conv2"), k
    assert model.conv1.weight.grad is None and model.conv3.bias.grad is None


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", "train", *args], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__)), env=env, timeout=600)


def test_cli_train_writes_the_base_model_with_baselines(tmp_path):
    write_store(tmp_path / "fdns" / "base.zarr", n=16, snapshots=8, members=(2, 1, 1))
    r = _cli("--preset", "ci", "--run-dir", str(tmp_path), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    for name in ("cnn", "smag", "leith", "dsmag", "dleith"):
        assert name in r.stdout
    model, norm, meta = load_model(tmp_path / "models" / "base")
    assert model.config["layers"] == 3 and model.config["padding"] == "circular"
    assert len(meta["history"]["train_loss"]) == 3 and meta["provenance"]["config"]["model"]["width"] == 8
    metrics = json.loads((tmp_path / "models" / "base" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cnn", "smag", "leith", "dsmag", "dleith"}
    assert -1 <= metrics["models"]["cnn"]["cc"] <= 1
    assert len(metrics["models"]["smag"]["spectrum"]["k"]) == 9
    assert not (tmp_path / "models" / "base" / "checkpoint.pt").exists()
    r2 = _cli("--preset", "ci", "--run-dir", str(tmp_path))
    assert r2.returncode == 0 and "exists" in r2.stdout


def test_cli_errors_before_writing(tmp_path):
    r = _cli("--preset", "ci", "--run-dir", str(tmp_path))
    assert r.returncode == 2 and "not found" in r.stderr
    assert not (tmp_path / "models").exists()
    r = _cli("--preset", "ci", "--run-dir", str(tmp_path), "--system", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
