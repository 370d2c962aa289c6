"""The asv benchmarks: discoverable (``asv check``), and a few actually run, so that a broken
benchmark fails the build. No timing is asserted here (figures live in the asv results)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASV = str(Path(sys.executable).with_name("asv"))


def _conf() -> dict:
    from asv.util import load_json
    return load_json(str(ROOT / "asv.conf.json"), js_comments=True)


def _asv(args, tmp_path, timeout=240):
    """asv with a private HOME (machine file) and a copy of the config writing under tmp_path."""
    conf = _conf() | {"repo": str(ROOT), "benchmark_dir": str(ROOT / "bench"),
                      "results_dir": str(tmp_path / "results"), "html_dir": str(tmp_path / "html"),
                      "env_dir": str(tmp_path / "env")}
    cfg = tmp_path / "asv.conf.json"
    cfg.write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(tmp_path), OMP_NUM_THREADS="1")
    subprocess.run([ASV, "machine", "--yes", "--machine", "ci"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    return subprocess.run([ASV, "--config", str(cfg), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)


def test_config_keeps_results_under_asv_and_pins_torch_first():
    conf = _conf()
    assert conf["benchmark_dir"] == "bench"
    for key in ("results_dir", "html_dir", "env_dir"):
        assert conf[key].startswith(".asv/"), key
    install = conf["install_command"]
    assert "torch==" in install[0] and "{wheel_file}" in install[-1]
    assert ".asv/" in (ROOT / ".gitignore").read_text()


def test_asv_check_and_a_real_run_of_one_benchmark(tmp_path):
    p = _asv(["check", "--python=same"], tmp_path)
    assert p.returncode == 0 and "No problems found" in p.stdout, p.stdout + p.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    p = _asv(["run", "--python=same", "--quick", "--machine", "ci", f"--set-commit-hash={head}",
              "--bench", r"fdns\.Sample\.time_sample", "--show-stderr"], tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    files = [f for f in (tmp_path / "results" / "ci").glob("*.json") if f.name != "machine.json"]
    assert len(files) == 1, p.stdout
    res = json.loads(files[0].read_text())["results"]["fdns.Sample.time_sample"]
    values = res[0]
    assert len(values) == 2 and all(isinstance(v, float) and v > 0 for v in values), res


def test_solver_benchmark_runs_and_gpu_params_are_not_applicable():
    import torch

    from bench.solver import StepTime
    b = StepTime()
    for backend, dtype in (("numpy", "float64"), ("torch", "float32")):
        b.setup(64, backend, dtype, "cpu")
        w0 = b.be.to_numpy(b.state.omega_hat).copy()
        b.time_step(64, backend, dtype, "cpu")
        assert not (b.be.to_numpy(b.state.omega_hat) == w0).all()   # it really stepped
    with pytest.raises(NotImplementedError):
        b.setup(64, "numpy", "float64", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(NotImplementedError):
            b.setup(64, "torch", "float32", "cuda")


def test_missing_stages_are_not_applicable_rather_than_failures():
    from bench.common import require
    with pytest.raises(NotImplementedError):
        require("suite.no_such_stage")
    with pytest.raises(NotImplementedError):
        require("bench.solver_harness", "no_such_function")
    assert require("bench.solver_harness", "measure_step_vs_floor")


def test_harnesses_live_in_bench_not_in_the_library():
    """Every benchmark harness is importable from bench/, and the library modules no longer hold it."""
    import importlib

    from bench.common import require
    for module, names in (("bench.les_harness", ("measure_les_step",)),
                          ("bench.training_harness", ("measure_throughput", "gemm_peak")),
                          ("bench.sweep_harness", ("measure_sharing", "sharing_floor")),
                          ("bench.analysis_harness", ("measure_throughput", "aggregation_throughput"))):
        assert require(module, *names)
    for module, name in (("suite.les", "measure_les_step"), ("suite.train", "measure_throughput"),
                         ("suite.transfer", "measure_sharing"), ("analysis.kernels", "measure_throughput"),
                         ("analysis.aggregate", "aggregation_throughput")):
        assert not hasattr(importlib.import_module(module), name), (module, name)


def test_les_and_sweep_harnesses_return_figures():
    from bench.les_harness import measure_les_step
    from bench.sweep_harness import measure_sharing
    r = measure_les_step(n=16, members=2, steps=1, repeats=1)
    assert r["steps_per_s_none"] > 0 and r["steps_per_s_cnn"] > 0
    s = measure_sharing(layers=3, width=2, kernel=3, n=8, samples=4, batch=4, epochs=1)
    assert s["naive_s"] > 0 and s["shared_s"] > 0 and 0 < s["floor"] <= 1


def test_mpi_and_ddp_runners_return_figures():
    """The subprocess paths the scaling benchmarks use: real mpiexec ranks and torchrun processes."""
    from bench.common import mpi_bench, torchrun_json
    r = mpi_bench(2, ["--bench", "32", "2", "--solver", "--repeats", "1"])
    assert r["ranks"] == 2 and r["s_per_step"] > 0
    script = str(ROOT / "bench" / "scripts" / "ddp_train.py")
    d = torchrun_json(2, script, ["--grid", "16", "--samples", "8", "--batch", "4", "--epochs", "2"])
    assert d["world"] == 2 and d["samples_per_s"] > 0


def test_synthetic_run_folder_is_readable_by_the_analysis():
    from analysis.aggregate import find_networks
    from suite.fdns import open_fdns
    import tempfile
    from bench.synthetic import build_run
    with tempfile.TemporaryDirectory() as d:
        root, count = build_run(d, layers=2, width=2, kernel=3, n=8)
        assert count == 2 * 3
        assert len(find_networks(root, "high_re")) == 3
        ds = open_fdns(root / "fdns" / "beta20.zarr")
        assert ds["omega"].shape[-1] == 8


def test_gemm_peak_takes_the_fastest_route_and_the_conv_route_is_the_same_product(monkeypatch):
    """The training floor: a 1×1 convolution computes exactly ``a @ b`` (so its rate is a GEMM rate),
    both routes are measured on CPU, and the peak is the fastest of them."""
    import torch
    import torch.nn.functional as F

    import bench.training_harness as th
    from bench.training_harness import _conv1x1_operands, gemm_peak, gemm_rates
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(48, 48, generator=g), torch.randn(48, 48, generator=g)
    x, w = _conv1x1_operands(a, b)
    got = F.conv2d(x, w).reshape(48, 48).t()
    assert torch.allclose(got, a @ b, rtol=1e-4, atol=1e-4)
    r = gemm_rates("cpu", n=256, repeats=2, conv=(2, 8, 16, 3))
    assert set(r) == {"mm", "conv1x1", "conv"} and all(v > 0 for v in r.values())
    # the dense-convolution route: a bare, unpadded forward convolution of 2 k² C² size² batch FLOPs
    call, flops = th._conv_route("cpu", 2, 8, 16, 3)
    out = call()
    assert tuple(out.shape) == (2, 8, 16, 16) and flops == 2 * 9 * 8 * 8 * 16 * 16 * 2
    monkeypatch.setattr(th, "gemm_rates", lambda *a, **k: {"mm": 180.0, "conv1x1": 400.0, "conv": 480.0})
    assert gemm_peak("cpu") == 480.0


def test_step_vs_floor_orders_measure_the_same_work():
    """Both timing orders of the solver harness (blocks of back-to-back steps, or single steps
    interleaved) give positive times and a ratio that is their quotient; an unknown order is
    refused before anything runs."""
    from bench.solver_harness import measure_batched_vs_floor, measure_step_vs_floor
    for order in ("blocks", "steps"):
        r = measure_step_vs_floor(32, steps=3, repeats=2, order=order)
        assert r["order"] == order and r["ms_per_step"] > 0 and r["floor_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ms_per_step"] / r["floor_ms"])
        b = measure_batched_vs_floor(n=32, members=2, steps=2, repeats=1, order=order)
        assert b["order"] == order and b["ratio"] == pytest.approx(b["ms_per_step"] / b["floor_ms"])
    with pytest.raises(ValueError, match="order"):
        measure_step_vs_floor(32, order="interleaved")
    with pytest.raises(ValueError, match="order"):
        measure_batched_vs_floor(n=32, order="interleaved")


def test_the_floor_counts_its_faster_runtime_and_the_threading_ways_agree():
    """The FFT floor is also timed in a fresh process on pyFFTW's own OpenMP runtime and the faster
    of the two counts; the hot loop's ways of threading (parallel kernels, the runner's team, one
    thread, and parallel kernels beside a second runtime) give the same bits (the harness asserts
    it) and a time each."""
    pytest.importorskip("pyfftw")
    pytest.importorskip("numba")
    from bench.solver_harness import measure_kernel_threading, measure_step_vs_floor
    r = measure_step_vs_floor(32, threads=2, steps=2, repeats=1)
    assert r["floor_ms"] == min(r["floor_in_process_ms"], r["floor_own_runtime_ms"])
    assert r["floor_from"] == ("own runtime" if r["floor_own_runtime_ms"] < r["floor_in_process_ms"]
                               else "in process")
    t = measure_kernel_threading(32, members=2, steps=2, repeats=1)
    assert all(t[f"{k}_ms"] > 0 for k in ("parallel", "team", "serial", "separate_runtimes"))


def test_fused_x_measurement_times_both_ways_and_checks_they_agree(monkeypatch):
    """``measure_fused_x`` builds one case with and one without the fused x pass (the switch is
    restored afterwards), times both, and their states agree to rounding (it asserts so)."""
    pytest.importorskip("pyfftw")
    pytest.importorskip("numba")
    from bench.solver_harness import measure_fused_x
    from solver import fftw_rows
    if not fftw_rows.available():
        pytest.skip(fftw_rows.describe())
    monkeypatch.setenv(fftw_rows.FUSED_ENV, "1")
    r = measure_fused_x(32, members=2, steps=2, repeats=1)
    assert r["fused_ms"] > 0 and r["unfused_ms"] > 0 and r["max_rel_diff"] <= 1e-12
    assert abs(r["speedup"] - r["unfused_ms"] / r["fused_ms"]) < 1e-12
    assert os.environ[fftw_rows.FUSED_ENV] == "1"
