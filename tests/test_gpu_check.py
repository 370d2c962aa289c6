"""`make gpu-check` (bench/gpu_check.py): without a GPU it says so, writes that summary and exits 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the full check runs instead")
def test_gpu_check_without_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "summary.txt"
    r = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no GPU" in r.stdout
    assert "no GPU" in out.read_text()


def test_make_gpu_check_target_exists(tmp_path):
    # a stamp that is not a makefile: `make -n` then only prints the set-up recipe. (With
    # STAMP=Makefile, make remade its own makefile and ran the pip installs even under -n.)
    r = subprocess.run(["make", "-n", "gpu-check", "PY=python", f"STAMP={tmp_path / 'stamp'}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "bench.gpu_check" in r.stdout
