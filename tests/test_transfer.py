"""The transfer-learning sweep (suite.transfer, `turbtl transfer`) on a real ci run folder.

The fixture runs the real `turbtl dns` and `turbtl train` on the ci preset (3-layer network, three
systems) once; each test works in a copy of that folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.sweep_harness import sharing_floor, work_units
from suite import transfer as T
from suite.masks import select
from suite.model import load_model

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1")
VOLATILE = ["wall_time_s"]


def turbtl(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ci") / "run"
    for stage in (["dns"], ["train", "--device", "cpu"]):
        r = turbtl(*stage, "--preset", "ci", "--run-dir", str(run))
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return run


@pytest.fixture
def run(base_run, tmp_path):
    out = tmp_path / "run"
    for part in ("fdns", "models"):
        shutil.copytree(base_run / part, out / part)
    return out


def sweep(run, *args, check=True):
    r = turbtl("transfer", "--preset", "ci", "--run-dir", str(run), "--device", "cpu", "--quiet", *args)
    if check:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def table(run):
    return T.load_results(run).drop(columns=VOLATILE)


def weights(run):
    out = {}
    for p in sorted((run / "models" / "tl").rglob("model.pt")):
        sd = torch.load(p, weights_only=True)["state_dict"]
        out[str(p.relative_to(run))] = sd
    return out


def assert_same_weights(a, b, atol=0.0):
    assert sorted(a) == sorted(b)
    for name in a:
        for k in a[name]:
            if atol == 0:
                assert torch.equal(a[name][k], b[name][k]), (name, k)
            else:
                torch.testing.assert_close(a[name][k], b[name][k], atol=atol, rtol=0, msg=f"{name} {k}")


# --------------------------------------------------------------------------------------------


def tl_params(base, mask):
    return sum(p.numel() for c, b in zip(base.convs, mask) if b == "1" for p in c.parameters())


def test_all_subsets_rows_frozen_layers_and_contract(run):
    r = sweep(run, "--seeds", "0,1", "--targets", "high_re")
    base, _, _ = load_model(run / "models" / "base")
    L = base.n_layers
    df = T.load_results(run)
    assert list(df.columns) == list(T.COLUMNS)
    for (target, fraction, seed), g in df[df.kind != "oracle"].groupby(["target", "fraction", "seed"]):
        tl = g[g.kind == "tl"]
        assert len(tl) == 2 ** L - 1 and tl["mask"].nunique() == 2 ** L - 1
        assert sorted(g[g.kind != "tl"]["kind"]) == ["base"] + ["random"] * L + ["scratch"]  # ci: random singles
        assert g[g.kind == "base"]["mask"].item() == "0" * L and g[g.kind == "scratch"]["mask"].item() == "1" * L
    assert sorted(df.target.unique()) == ["high_re"] and sorted(df.seed.unique()) == [0, 1]
    assert len(df) == 2 * (2 ** L - 1 + 2 + L) + 2  # + one oracle per seed
    assert df["cc"].between(-1, 1).all() and (df[df.kind != "base"]["steps"] == 4).all()
    assert (df[df.kind != "base"]["best_step"].between(0, 4)).all()
    oracle = df[df.kind == "oracle"]
    assert (oracle["fraction"] == 1.0).all() and sorted(oracle["seed"]) == [0, 1]
    rnd = df[df.kind == "random"]
    assert (rnd["n_trainable"] == rnd["mask"].map(lambda m: tl_params(base, m))).all() and len(rnd) == 2 * L
    tl = df[df.kind == "tl"]
    assert (tl["first_trainable"] == tl["mask"].map(lambda m: m.index("1") + 1)).all()
    assert (tl["n_layers_trained"] == tl["mask"].str.count("1")).all()
    per_layer = [sum(p.numel() for p in c.parameters()) for c in base.convs]
    assert (tl["n_trainable"] == tl["mask"].map(lambda m: sum(n for n, c in zip(per_layer, m) if c == "1"))).all()
    # after TL: frozen layers bitwise the base network's, re-trained ones changed
    b = base.state_dict()
    for row in tl.itertuples():
        model, norm, meta = load_model(run / "models" / "tl" / row.target / f"f{row.fraction:g}_s{row.seed}" / row.mask)
        for i, bit in enumerate(row.mask):
            for k in (f"conv{i + 1}.weight", f"conv{i + 1}.bias"):
                same = torch.equal(model.state_dict()[k], b[k])
                assert same == (bit == "0"), (row.mask, k)
        assert meta["history"]["step"] == [2, 4] and meta["provenance"]["mask"] == row.mask
        assert norm == load_model(run / "models" / "base")[1]  # the base network's normalization
    # base reference: the stored base network itself, evaluated on the target
    assert (df[df.kind == "base"]["n_trainable"] == 0).all()
    # samples: fraction of the base training size, from the target's training members
    _, _, bmeta = load_model(run / "models" / "base")
    _, _, meta = load_model(run / "models" / "tl" / "high_re" / "f0.5_s1" / "010")
    train_members = set(np.flatnonzero(np.asarray(T.FDNSData(run / "fdns" / "high_re.zarr").labels) == "train"))
    assert meta["n_train"] == round(0.5 * bmeta["n_train"]) and {m for m, _ in meta["train_index"]} <= train_members
    assert "best per number of re-trained layers" in r.stdout and "scratch" in r.stdout
    # a rerun skips every finished subset
    again = sweep(run, "--seeds", "0,1", "--targets", "high_re")
    assert "(26 already done)" in again.stdout
    pd.testing.assert_frame_equal(table(run), df.drop(columns=VOLATILE))


def test_prefix_cache_on_and_off_agree_and_is_computed_once_per_prefix(run):
    spec = T.SweepSpec(run_dir=str(run), epochs=3, batch_size=8, lr=1e-3, share_prefix=True, device="cpu")
    on, off = T.Context(spec), T.Context(T.SweepSpec(**{**spec.__dict__, "share_prefix": False}))
    masks = select("all", 3)
    for mask in masks:
        job = T.Job("high_re", 0.5, 0, "tl", mask)
        row_on, net_on, _ = on.run(job)
        row_off, net_off, _ = off.run(job)
        for k, v in net_on.state_dict().items():
            torch.testing.assert_close(v, net_off.state_dict()[k], atol=1e-6, rtol=0, msg=f"{mask} {k}")
        assert row_on["cc"] == pytest.approx(row_off["cc"], abs=1e-5)
    # one prefix computation per first trainable layer > 1 (layers 2 and 3), reused across subsets
    assert on.train_cache.computed == 2 and off.train_cache.computed == 0


SWEEP = ["--targets", "high_re", "--steps", "50", "--workers", "2"]  # long enough jobs to kill one mid-sweep


@pytest.fixture(scope="module")
def reference(base_run, tmp_path_factory):
    """The uninterrupted sweep the kill, slice and pool tests compare with."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    for part in ("fdns", "models"):
        shutil.copytree(base_run / part, ref / part)
    sweep(ref, *SWEEP)
    return table(ref), weights(ref)


@pytest.mark.slow
def test_kill_mid_sweep_and_rerun_equals_uninterrupted(run, reference):
    cmd = [sys.executable, "-m", "turbtl.cli", "transfer", "--preset", "ci", "--run-dir", str(run), "--device", "cpu",
           "--quiet", *SWEEP]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    rows = run / "sweep" / "high_re" / "rows"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and len(list(rows.rglob("*.json"))) < 3 and proc.poll() is None:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes, mid-sweep
        proc.wait()
    n_done = len(list(rows.rglob("*.json")))
    assert 3 <= n_done < 9, f"the kill came too late or too early ({n_done} of 13 rows)"
    assert proc.returncode == -signal.SIGKILL
    r = sweep(run, *SWEEP)
    assert f"({n_done} already done)" in r.stdout
    pd.testing.assert_frame_equal(table(run), reference[0])
    assert_same_weights(weights(run), reference[1])
    assert not list(run.rglob(".*.tmp*"))  # no half-written file left behind


@pytest.mark.slow
def test_slices_partition_and_merge_into_the_whole(run, reference):
    r0 = sweep(run, *SWEEP, "--slice", "0/2")
    assert "slice 0/2" in r0.stdout
    sweep(run, *SWEEP, "--slice", "1/2")
    pd.testing.assert_frame_equal(table(run), reference[0])
    assert_same_weights(weights(run), reference[1])


def test_one_process_gives_the_pool_s_subset_weights(run, reference):
    # the pool's workers run 1 torch thread each here, the single process all cores: equal to rounding
    sweep(run, *SWEEP[:-1], "1")
    pd.testing.assert_frame_equal(table(run), reference[0], check_exact=False, atol=1e-6, rtol=0)
    assert_same_weights(weights(run), reference[1], atol=1e-6)


def test_slices_are_contiguous_blocks_that_partition_the_list():
    jobs = T.plan(["a", "b"], select("all", 4), [0.1, 0.2], [0, 1])
    assert len(jobs) == 2 * 2 * 2 * (15 + 2)
    for n in (1, 2, 3, 7, 64):
        parts = [T.slice_jobs(jobs, (i, n)) for i in range(n)]
        assert [j for p in parts for j in p] == jobs
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("args, field, words", [
    (["--subsets", "0101"], "transfer.subsets", ["'0101'", "length 4", "singles, pairs, all"]),
    (["--subsets", "000"], "transfer.subsets", ["'000'", "at least one"]),
    (["--slice", "2/2"], "slice", ["0 <= i < n", "2/2"]),
    (["--slice", "x"], "slice", ["i/n"]),
    (["--fractions", "1.5"], "transfer.fractions", ["(0, 1]"]),
    (["--targets", "nowhere"], "transfer.targets", ["nowhere"]),
])
def test_bad_input_exits_2_before_writing(run, args, field, words):
    r = sweep(run, *args, check=False)
    assert r.returncode == 2, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert not (run / "sweep").exists() and not (run / "models" / "tl").exists()


def test_missing_base_network_or_store_exits_2(run):
    shutil.rmtree(run / "models" / "base")
    r = sweep(run, check=False)
    assert r.returncode == 2 and "turbtl train" in r.stderr
    assert not (run / "sweep").exists()


def test_floor_counts_layer_work():
    # 11 equal layers, singles: 0.7 of naive (docs/benchmarks.md), the prefix computed once amortized
    flops = [1.0] * 11
    fl = sharing_floor(select("singles", 11), flops, epochs=10**9)
    assert fl["floor"] == pytest.approx(132 / 187, rel=1e-6)
    # a frozen-suffix-only subset trains layer L: naive runs L forwards, shared one
    assert work_units("001", [1.0] * 3, shared=False) == 3 + 0 + 1
    assert work_units("001", [1.0] * 3, shared=True) == 1 + 0 + 1
    assert work_units("101", [1.0] * 3, shared=True) == 3 + 2 + 2


def test_worker_caches_give_a_fresh_worker_s_rows_and_tensors(run):
    # a worker reads each split once and cuts the samples from it: the same tensors as reading the
    # sample alone, and a job run after others (warm caches) gives the row of a fresh worker
    spec = T.SweepSpec(run_dir=str(run), epochs=3, batch_size=8, lr=1e-3, steps=4, eval_every=2, device="cpu")
    warm = T.Context(spec)
    data = T.FDNSData(run / "fdns" / "high_re.zarr")
    for fraction, seed in ((0.5, 0), (0.5, 1), (None, 0)):
        got = warm.tensors("high_re", "train", fraction, seed)
        count = None if fraction is None else warm.sample_count(fraction)
        want = data.tensors("train", warm.norm, seed=seed, count=count)
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
        assert np.array_equal(got.index, want.index) and got.x.is_contiguous() == want.x.is_contiguous()
    jobs = [T.Job("high_re", 0.5, 0, "tl", m) for m in ("100", "010", "001", "011")]
    jobs += [T.Job("high_re", 0.5, 1, "random", "010"), T.Job("high_re", 1.0, 0, "oracle", "111")]
    for job in jobs:
        warm.run(job)
    for job in jobs[1:]:
        a, net_a, _ = warm.run(job)
        b, net_b, _ = T.Context(spec).run(job)
        assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
        assert_same_weights({"n": net_a.state_dict()}, {"n": net_b.state_dict()})
    # every val/test prefix of the target stays cached (bounded by bytes, not by a count)
    assert warm.eval_cache.computed == 4 and len(warm.eval_cache.items) == 4


def test_pool_takes_the_longest_jobs_first_and_prefix_cache_bounds_bytes(run):
    spec = T.SweepSpec(run_dir=str(run), epochs=3, batch_size=8, lr=1e-3, steps=4, oracle_steps=4, device="cpu")
    ctx = T.Context(spec)
    jobs = T.plan(["high_re"], select("all", 3), [0.5], [0], oracle=True, random_masks=["010"])
    order = T.longest_first(ctx, jobs)
    assert sorted(order, key=jobs.index) == jobs
    costs = [ctx.cost(j) for j in order]
    assert costs == sorted(costs, reverse=True) and order[-1].kind == "base" and costs[-1] == 0
    # every layer trained (ci: 4 steps of a full batch each): the costliest; a deeper start is cheaper
    full_jobs = [j for j in jobs if j.kind in ("oracle", "scratch", "random") or j.mask == "111"]
    assert {ctx.cost(j) for j in full_jobs} == {costs[0]} and order[:len(full_jobs)] == full_jobs
    assert ctx.cost(T.Job("high_re", 0.5, 0, "tl", "001")) < ctx.cost(T.Job("high_re", 0.5, 0, "tl", "010")) < costs[0]
    cache = T.PrefixCache(None, max_bytes=3 * 4 * 10)
    for k in range(5):
        cache.get(k, lambda: torch.zeros(10))
    assert list(cache.items) == [2, 3, 4] and cache.nbytes == 120
    big = T.PrefixCache(None, max_bytes=1)
    big.get("a", lambda: torch.zeros(10))  # the newest entry stays even over the bound
    assert list(big.items) == ["a"]


def test_oracle_init_base_starts_from_the_base_weights_and_trains_on_the_full_data(run):
    """transfer.oracle_init = base: the oracle is the base network fine-tuned (every layer) on the
    target's full training data: with a zero-length budget (lr 0) it is the base network itself and
    scores as the base reference; the default starts from seeded random weights."""
    from suite.model import load_model
    base, _, _ = load_model(run / "models" / "base")
    job = T.Job("high_re", 1.0, 0, "oracle", "111")
    kw = dict(run_dir=str(run), epochs=3, batch_size=8, lr=0.0, steps=4, oracle_steps=4, device="cpu")
    warm = T.Context(T.SweepSpec(oracle_init="base", **kw))
    assert_same_weights({"n": warm.network(job).state_dict()}, {"n": base.state_dict()})
    row, net, _ = warm.run(job)
    ref, _, _ = warm.run(T.Job("high_re", 0.5, 0, "base", "000"))
    assert row["cc"] == pytest.approx(ref["cc"], abs=1e-6)
    assert row["n_train"] == len(warm.tensors("high_re", "train", None, 0))
    cold = T.Context(T.SweepSpec(**kw)).network(job)
    first = next(iter(base.state_dict()))
    assert not torch.equal(cold.state_dict()[first], base.state_dict()[first])
