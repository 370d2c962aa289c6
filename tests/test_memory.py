"""suite/memory.py: with the policy on, a training process re-uses freed memory (no page faults on a
step's fresh tensors); with it off (TURBTL_KEEP_FREED_MEMORY=0) nothing changes. Each case runs in
a fresh interpreter, since the policy is process-wide."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# training steps of a small network whose activations (32 x 32 x 128² float32 = 64 MiB) are above
# glibc's largest mmap threshold: the minor page faults and resident memory of the steps after the
# first four are what every later step of a training run pays
PROBE = r"""
import json, resource
import torch
from suite.memory import keep_freed_memory
from suite.model import ClosureCNN
on = keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
m = ClosureCNN(3, 32, 3).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(m.parameters(), lr=1e-5)
x = torch.randn(32, 2, 128, 128).contiguous(memory_format=torch.channels_last)
y = torch.randn(32, 1, 128, 128)
def step():
    loss = ((m(x) - y) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
for _ in range(4):  # the heap settles within a few steps
    step()
r0, f0 = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(json.dumps({"on": on, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
                  "rss_growth": rss() - r0}))
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the policy acts on glibc's malloc only")


def _probe(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TURBTL_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["TURBTL_KEEP_FREED_MEMORY"] = env_value
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_training_steps_reuse_freed_memory_without_page_faults():
    """Three training steps touch several GB of fresh tensors: with glibc's default every 64 MiB
    activation is a new mapping, faulted page by page (several 64 MiB tensors' pages per step);
    with the policy the heap hands the same pages back, and the resident memory stops growing."""
    tensor_pages = 64 * 2**20 // 4096
    on = _probe(None)
    assert on["on"] is True
    # a heap may still grow once by a tensor while it settles; never by more
    assert on["faults"] < 2 * tensor_pages, on
    assert on["rss_growth"] < 2 * 64 * 2**20, on
    off = _probe("0")
    assert off["on"] is False
    # unless the kernel backs fresh mappings with huge pages (THP "always"), they fault per 4 KiB page:
    # several tensors' worth per step, over ten times what the settled heap faults
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not (os.path.exists(thp) and "[always]" in open(thp).read()):
        assert off["faults"] > 3 * tensor_pages and off["faults"] > 10 * on["faults"], (on, off)


def test_the_policy_can_be_switched_off_and_is_idempotent(monkeypatch):
    import suite.memory as M
    assert M.keep_freed_memory({"TURBTL_KEEP_FREED_MEMORY": "0"}) is False
    first = M.keep_freed_memory({})
    assert M.keep_freed_memory({}) is first  # a second call changes nothing
    assert first is (M._libc() is not None)
