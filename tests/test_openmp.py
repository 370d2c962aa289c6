"""solver/openmp.py: one OpenMP runtime serves FFTW's threads and the Numba kernels' threads, the
hot loop's kernels then run parallel on that team, and they give the serial kernels' bits. Each
case runs in a fresh interpreter: which runtime a library binds to is decided when it loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pyfftw")
pytest.importorskip("numba")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# FFTW's threads (a 256² plan on 2 threads) and a parallel Numba kernel (2 threads): with one
# runtime they are the same worker threads, with two each runtime keeps its own
THREADS_PROBE = r"""
import json, os, sys
import numpy as np
if "pyfftw" in sys.argv: import pyfftw
if "torch" in sys.argv: import torch
from solver import make_backend, openmp
be = make_backend(256, threads=2)
u, uh = be.zeros_physical(), be.zeros_spectral()
plan = be.plan_rfft2(u, uh)
plan()
import numba
from solver import kernels as K
numba.config.THREADING_LAYER = "omp"
zero = K._compile(True)["zero"]
numba.set_num_threads(2)
zero(np.zeros((1, 64, 64), complex), 0, 64, 0, 64)
plan()
print(json.dumps({"shared": openmp.shared(), "describe": openmp.describe(),
                  "tasks": len(os.listdir("/proc/self/task"))}))
"""

# a forced run on 2 threads (2 members, AB2-CN and RK3-CN), and every kernel on random pieces with
# 2 threads and with 1
RUN_PROBE = r"""
import json, sys
import numpy as np
from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field
from solver import kernels as K
be = make_backend(64, threads=2)
g = Grid(64, backend=be)
out, info = {}, {}
for stepper in ("ab2cn", "rk3cn"):
    eq = Equation(g, Parameters(re=3e3, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper(stepper, eq, dt=2e-3)
    w = random_field(g, kp=8, seed=1)
    s = st.init_state(np.stack([w, 1.1 * w]))
    for _ in range(20):
        st(s)
    out[stepper] = s.omega_hat
    info[stepper] = [eq.fast.parallel_kernels(), eq.kernels.threads, eq.fast.runner((2,)).team is None]
rng = np.random.default_rng(3)
def c(*shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
n, m = 40, 21
w, j = c(3, n, m), c(3, n, m)
vx, vy, q, A, B, F = c(1, m), c(n, 1), rng.standard_normal((n, m)), rng.standard_normal((n, m)), \
    rng.standard_normal((n, m)), c(n, m)
kern = {}
for threads in (1, 2):
    op = K.NumbaOps(threads)
    o = [np.zeros((3, n, m), complex) for _ in range(11)]
    for r, cc in [(slice(0, 13), slice(0, 13)), (slice(28, 40), slice(0, 13)), (slice(3, 5), slice(2, 21))]:
        op.pair_x(w, vx, vy, q, o[0], o[1], r, cc)
        op.pair_y(w, vx, vy, q, o[2], o[3], r, cc)
        op.fields4(w, vx, vy, q, -q, o[4:8], r, cc)
        op.negate(j, o[8], r, cc)
        op.negate_add(j, F, o[9], r, cc)
        o[10][...] = w
        op.ab2(o[10], j.copy(), w.copy(), A, B, -0.25, r, cc)
        op.zero(o[10], slice(0, 2), cc)
    kern[threads] = (op.threads, o)
np.savez(sys.argv[1], **out, **{f"k{t}_{i}": a for t, (_, o) in kern.items() for i, a in enumerate(o)})
print(json.dumps({"info": info, "kernel_threads": [kern[1][0], kern[2][0]]}))
"""


def _probe(code: str, *args: str, shared: bool = True) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OMP_NUM_THREADS", None)
    env["TURBTL_SHARED_OPENMP"] = "1" if shared else "0"
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_one_runtime_serves_fftw_and_the_numba_kernels():
    one, two = _probe(THREADS_PROBE), _probe(THREADS_PROBE, shared=False)
    assert one["shared"] and "system's libgomp.so.1" in one["describe"]
    assert not two["shared"] and "TURBTL_SHARED_OPENMP=0" in two["describe"]
    assert one["tasks"] == two["tasks"] - 1  # one worker thread serves both, not one per runtime


def test_sharing_is_refused_once_pyfftw_is_loaded():
    late = _probe(THREADS_PROBE, "pyfftw")
    assert not late["shared"] and "pyFFTW was imported before" in late["describe"]


def test_a_runtime_torch_loaded_first_is_the_shared_one():
    pytest.importorskip("torch")
    first = _probe(THREADS_PROBE, "torch")
    assert first["shared"] and "already loaded" in first["describe"]


def test_parallel_kernels_give_the_bits_of_the_serial_kernels(tmp_path):
    import numpy as np
    par, ser = tmp_path / "par.npz", tmp_path / "ser.npz"
    a = _probe(RUN_PROBE, str(par))
    b = _probe(RUN_PROBE, str(ser), shared=False)
    # shared runtime: parallel kernels on whole blocks, on 2 threads, no team of the runner's own
    assert a["info"] == {"ab2cn": [True, 2, True], "rk3cn": [True, 2, True]}
    assert a["kernel_threads"] == [1, 2]
    # not shared: serial kernels (the runner's own team decides on its threads)
    assert [v[:2] for v in b["info"].values()] == [[False, 1], [False, 1]]
    assert b["kernel_threads"] == [1, 1]
    pa, pb = np.load(par), np.load(ser)
    for stepper in ("ab2cn", "rk3cn"):
        assert np.array_equal(pa[stepper], pb[stepper]), stepper
    for i in range(11):
        assert np.array_equal(pa[f"k2_{i}"], pa[f"k1_{i}"]), f"kernel output {i}"
    assert pa["k2_0"][:, 13:28, 13:].sum() == 0  # outside every piece: untouched
