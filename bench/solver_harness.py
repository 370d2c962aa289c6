"""Benchmark harnesses of the solver: what the asv benchmarks (bench/solver.py, bench/fdns.py,
bench/mpi.py) and bench/run.sh time. They used to live in solver modules; the solver library holds
no timing code (docs/architecture.md).

- :func:`measure_step_vs_floor`: one forced-turbulence step against the FFT floor of its backend;
- :func:`bench_steps`: AB2-CN steps of an MPI ensemble (:class:`solver.ensemble.Ensemble`);
- :func:`bench_fft_pairs`: planned forward + inverse slab-FFT pairs over an MPI group;
- the MPI command line (one thread per rank; rank 0 prints one line of ``key=value``)::

    OMP_NUM_THREADS=1 mpiexec -n 2 python -P bench/solver_harness.py --bench 1024 20 [--solver]
        [--members M --ranks-per-member R --repeats K --backend numpy|torch]

Only the solver's public API is imported (absolute imports), so the file runs as a script under
``mpiexec`` as well as a module of the asv suite.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from types import SimpleNamespace

import numpy as np

from solver.backends import make_backend
from solver.ensemble import Ensemble
from solver.equation import Equation, Parameters
from solver.forcing import make_forcing
from solver.grid import Grid
from solver.initial import random_field
from solver.parallel import Decomposition, abort_on_error
from solver.stepping import make_stepper


def _summary(be) -> str:
    """The backend in one line: ``summary()`` (before it existed ``describe()`` returned that line)."""
    return be.summary() if hasattr(be, "summary") else be.describe()


def _kernels(eq):
    """The equation's hot-loop kernels (``kernels``; ``ops`` before solver/fastpath.py)."""
    return eq.kernels if hasattr(eq, "kernels") else eq.ops


FLOOR_PLANNER = "FFTW_MEASURE"
#: how step, floor and pruned floor alternate (:func:`measure_step_vs_floor`)
ORDERS = ("blocks", "steps")


class FFTFloor:
    """The fastest FFT floor of one AB2-CN step (issue 21), independent of the solver's code:
    4 inverse c2r + 1 forward r2c 2D transforms as raw pyFFTW ``FFTW`` objects on aligned arrays
    (``planner``, default ``FFTW_MEASURE``; ``threads`` as the step; ``FFTW_DESTROY_INPUT`` on
    the c2r), over ``batch`` members in one batched plan each.

    Two ways of running the 4 inverses are timed at every ``floor()``, on the same buffers: 4
    separate plans, and one plan batched over the 4 inputs (FFTW's vector loop over them is faster
    at some sizes); the faster of the two counts for that step (``wins`` counts which way won).

    The c2r destroy their input, so before each of them its input is restored from a pristine copy
    (the step's spectral state); those copies are timed *separately* (``copy_s``) and are not part
    of the floor. Plans are made with the process's FFTW wisdom set aside (exported, forgotten,
    re-imported afterwards): the floor neither uses nor leaves behind the solver's wisdom, so the
    solver's own plans (and so its rounding) are untouched by measuring it.

    ``floor()`` runs one floor step and returns (transform seconds, copy seconds)."""

    def __init__(self, n: int, threads: int, dtype: str = "float64", batch: tuple = (),
                 init=None, planner: str = FLOOR_PLANNER):
        import pyfftw
        real = np.dtype(dtype)
        cplx = np.dtype("complex128" if real == np.float64 else "complex64")
        shp_s, shp_p = tuple(batch) + (n, n // 2 + 1), tuple(batch) + (n, n)
        self.n, self.threads, self.batch, self.planner = n, threads, tuple(batch), planner
        rng = np.random.default_rng(0)
        self.pristine = pyfftw.empty_aligned(shp_s, dtype=cplx)
        if init is None:
            init = rng.standard_normal(shp_s) + 1j * rng.standard_normal(shp_s)
        self.pristine[...] = init
        # the 4 inputs and outputs stacked: one plan batched over them, or 4 plans on their views
        self.spec4 = pyfftw.empty_aligned((4,) + shp_s, dtype=cplx)
        self.phys4 = pyfftw.empty_aligned((4,) + shp_p, dtype=real)
        self.spec, self.phys = list(self.spec4), list(self.phys4)
        self.out = pyfftw.empty_aligned(shp_s, dtype=cplx)
        self.wins = {"separate": 0, "batched": 0}
        saved = pyfftw.export_wisdom()
        pyfftw.forget_wisdom()
        try:
            self.inv = [pyfftw.FFTW(s, p, axes=(-2, -1), direction="FFTW_BACKWARD",
                                    flags=(planner, "FFTW_DESTROY_INPUT"), threads=threads)
                        for s, p in zip(self.spec, self.phys)]
            self.inv4 = pyfftw.FFTW(self.spec4, self.phys4, axes=(-2, -1), direction="FFTW_BACKWARD",
                                    flags=(planner, "FFTW_DESTROY_INPUT"), threads=threads)
            self.fwd = pyfftw.FFTW(self.phys[0], self.out, axes=(-2, -1), direction="FFTW_FORWARD",
                                   flags=(planner,), threads=threads)
        finally:
            pyfftw.forget_wisdom()
            pyfftw.import_wisdom(saved)
        for s in self.spec:
            np.copyto(s, self.pristine)
        for f in self.inv:
            f.execute()
        scale = 1.0 / (n * n)  # products of O(1) fields, as in the step (no overflow, no denormals)
        for p in self.phys:
            p *= scale

    def floor(self) -> tuple[float, float]:
        """One floor step: (transform seconds, copy seconds), the 4 inverses the faster way."""
        separate, batched = self.inverses(batched=False), self.inverses(batched=True)
        best = min(separate, batched)
        self.wins["separate" if best is separate else "batched"] += 1
        t0 = time.perf_counter()
        self.fwd.execute()
        return best[0] + time.perf_counter() - t0, best[1]

    def inverses(self, batched: bool) -> tuple[float, float]:
        """The 4 inverses, as one batched plan or 4 plans: (transform seconds, copy seconds)."""
        clock = time.perf_counter
        if batched:
            t0 = clock()
            for s in self.spec:
                np.copyto(s, self.pristine)
            t1 = clock()
            self.inv4.execute()
            return clock() - t1, t1 - t0
        t_fft = t_copy = 0.0
        for s, f in zip(self.spec, self.inv):
            t0 = clock()
            np.copyto(s, self.pristine)
            t1 = clock()
            f.execute()
            t_copy += t1 - t0
            t_fft += clock() - t1
        return t_fft, t_copy

    def describe(self) -> str:
        import pyfftw
        b = f" x{self.batch}" if self.batch else ""
        return (f"pyFFTW {pyfftw.__version__} FFTW objects{b}: 4 c2r (DESTROY_INPUT; 4 plans or one "
                f"batched over the 4, the faster each step: {self.wins}) + 1 r2c, "
                f"{self.planner}, {self.threads} threads, aligned")


def own_runtime_floor(n: int, threads: int, batch: tuple = (), dtype: str = "float64", steps: int = 20,
                      repeats: int = 5, planner: str = FLOOR_PLANNER) -> dict:
    """:class:`FFTFloor` as a plain pyFFTW user meets it: in a fresh Python process that imports
    pyFFTW first, so that FFTW runs on the OpenMP runtime pyFFTW ships (the solver's processes
    make FFTW share one runtime with the Numba kernels, solver/openmp.py; which runtime is the
    faster for FFTW alone is not assumed). OMP_NUM_THREADS=threads. Returns ``best_s`` (best
    transform seconds of ``repeats * steps`` floor steps after 3 warm-up ones) and ``runtime``."""
    import json
    from pathlib import Path

    from bench.common import run
    root = str(Path(__file__).resolve().parents[1])
    code = (f"import json, sys; sys.path.insert(0, {root!r}); import pyfftw; "
            f"from bench.solver_harness import FFTFloor; from solver import openmp; "
            f"fl = FFTFloor({n}, {threads}, dtype={dtype!r}, batch={tuple(batch)!r}, planner={planner!r}); "
            f"[fl.floor() for _ in range(3)]; "
            f"best = min(fl.floor()[0] for _ in range({steps * repeats})); "
            f"print(json.dumps({{'best_s': best, 'runtime': openmp.describe()}}))")
    out = run([sys.executable, "-P", "-c", code], timeout=900, threads=threads)
    return json.loads(out.strip().splitlines()[-1])


def _load() -> str:
    """The machine's load average (1 min) and CPUs, for the record next to every figure."""
    try:
        import os
        return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    except OSError:  # pragma: no cover
        return "load n/a"


def _spread(xs) -> float:
    """(max - min) / min of repeated timings: how much the machine's load moved them."""
    xs = [x for x in xs if math.isfinite(x)]
    return (max(xs) - min(xs)) / min(xs) if xs and min(xs) > 0 else math.nan


def _check_order(order: str) -> None:
    """ValueError unless ``order`` is one of :data:`ORDERS` (before anything is built or timed)."""
    if order not in ORDERS:
        raise ValueError(f"order = {order!r}: must be one of {', '.join(ORDERS)}")


def _floors(in_process_s: float, own: dict | None) -> dict:
    """The floor figures: in this process, on pyFFTW's own runtime (``own``, or None), the faster."""
    out = {"floor_in_process_ms": in_process_s * 1e3, "floor_own_runtime_ms": math.nan,
           "floor_from": "in process", "floor_ms": in_process_s * 1e3}
    if own is not None:
        out["floor_own_runtime_ms"] = own["best_s"] * 1e3
        if own["best_s"] < in_process_s:
            out["floor_from"], out["floor_ms"] = "own runtime", own["best_s"] * 1e3
    return out


def measure_step_vs_floor(n: int, backend: str = "numpy", dtype: str = "float64", steps: int = 20,
                          threads: int = 0, repeats: int = 5, device: str = "cpu",
                          stepper: str = "ab2cn", planner: str = FLOOR_PLANNER, order: str = "blocks",
                          own_runtime: bool = True) -> dict:
    """Time one forced-turbulence step (2/3 rule, advective Jacobian) against the FFT floor.

    The floor on CPU with pyFFTW (numpy backend, and torch backend on CPU): :class:`FFTFloor`, raw
    pyFFTW plans of the 4 inverse + 1 forward full 2D transforms of a step (``planner``, the step's
    threads, input destruction allowed, the 4 inverses as 4 plans or one batched plan, whichever is
    faster at each step, the restoring copies timed apart and excluded; ``copy_ms`` reports them),
    timed in this process beside the step and, with ``own_runtime`` (default), once more in a fresh
    process on pyFFTW's own OpenMP runtime (:func:`own_runtime_floor`); ``floor_ms`` is the faster
    of the two (``floor_in_process_ms``, ``floor_own_runtime_ms``, ``floor_from`` which one).
    Otherwise (CUDA, or no pyFFTW): the same 5 full transforms planned by the backend itself.
    Second, named ratio: ``ratio_to_pruned``, the step over the solver's own *pruned* transforms
    (columns the 2/3 rule zeroes skipped; the 4 inverses as 4 single plans, where the serial numpy
    step batches them into one plan; inputs restored outside the timing).

    Step, floor and pruned floor are timed in the same process, ``repeats`` rounds of ``steps``
    each of the three; ``order="blocks"`` (default): in each round ``steps`` steps back to back,
    then as many floor steps, then as many pruned ones, so that each runs as it would in a loop of
    its own (warm caches: interleaving single steps made each evict the other's data, about 1 ms
    of a 512² step); ``order="steps"``: interleaved step by step. ms figures are the best single
    step of all (best of ``repeats * steps``: on a shared machine the least disturbed one),
    ``spread_*`` the (max - min)/min of the rounds' bests, ``load`` the 1-min load average at the end."""
    _check_order(order)
    be = make_backend(n, backend=backend, dtype=dtype, device=device, threads=threads)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper(stepper, eq, dt=1e-4)
    state = st.init_state(random_field(g, kp=10, seed=0))
    # on CPU the floor is FFTW's whichever backend steps (torch's own CPU FFT is no floor: slower)
    fftw = getattr(be, "device", "cpu") == "cpu" and getattr(be, "_fftw", None) is not None
    pristine = be.copy(state.omega_hat)
    specs = [be.zeros_spectral() for _ in range(4)]
    phys = [be.zeros_physical() for _ in range(4)]
    out = be.zeros_spectral()
    if fftw:
        fl = FFTFloor(n, be.threads, dtype=dtype, init=be.to_numpy(state.omega_hat), planner=planner)
        floor_step, floor_name = fl.floor, fl.describe()
    else:
        for sp in specs:
            sp[...] = pristine
        full = [be.plan_irfft2(sp, ph) for sp, ph in zip(specs, phys)] + [be.plan_rfft2(phys[0], out)]

        def floor_step():
            be.synchronize()
            t0 = time.perf_counter()
            for f in full:
                f()
            be.synchronize()
            return time.perf_counter() - t0, 0.0
        floor_name = f"{_summary(be)}: 4 inverse + 1 forward full 2D transforms"
    # the solver's own transforms, pruned as the step's (columns kx > kmax skipped), one plan each
    keep = g.kmax_dealias + 1
    pruned = [be.plan_irfft2(sp, ph, kx_stop=keep) for sp, ph in zip(specs, phys)]
    pruned_fwd = be.plan_rfft2(phys[0], out, kx_stop=keep)

    def pruned_step():
        t = 0.0
        for sp, f in zip(specs, pruned):
            sp[...] = pristine  # the pruned inverse transforms its input in place: restored, untimed
            be.synchronize()
            t0 = time.perf_counter()
            f()
            be.synchronize()
            t += time.perf_counter() - t0
        t0 = time.perf_counter()
        pruned_fwd()
        be.synchronize()
        return t + time.perf_counter() - t0, 0.0

    def one_step():
        be.synchronize()
        t0 = time.perf_counter()
        st(state)
        be.synchronize()
        return time.perf_counter() - t0

    for _ in range(3):
        st(state)
        floor_step()
        pruned_step()
    # alternated in every round, so that load from other processes hits all three alike; on a
    # shared machine the best single step of each is the figure (the rounds' bests give the spread)
    rounds = {"step": [], "floor": [], "pruned": [], "copy": []}

    def floor_once(r):
        f, c = floor_step()
        r["floor"].append(f)
        r["copy"].append(c)

    for _ in range(repeats):
        r = {k: [] for k in rounds}
        if order == "steps":
            for _ in range(steps):
                r["step"].append(one_step())
                floor_once(r)
                r["pruned"].append(pruned_step()[0])
        else:
            for _ in range(steps):
                r["step"].append(one_step())
            for _ in range(steps):
                floor_once(r)
            for _ in range(steps):
                r["pruned"].append(pruned_step()[0])
        for k in rounds:
            rounds[k].append(min(r[k]))
    t_step, t_floor, t_pruned, t_copy = rounds["step"], rounds["floor"], rounds["pruned"], rounds["copy"]
    best, floor, floor_pruned = min(t_step), min(t_floor), min(t_pruned)
    floors = _floors(floor, own_runtime_floor(n, be.threads, dtype=dtype, steps=steps, repeats=repeats,
                                              planner=planner) if fftw and own_runtime else None)
    floor = floors["floor_ms"] / 1e3
    if fftw:
        floor_name = fl.describe()  # with the count of which way of the floor won
    return {"n": n, "backend": _summary(be), "kernels": _kernels(eq).name, "threads": getattr(be, "threads", 0),
            "ms_per_step": best * 1e3, **floors, "ratio": best / floor,
            "mpoints_steps_per_s": n * n / best / 1e6, "floor": floor_name,
            "copy_ms": min(t_copy) * 1e3, "pruned_floor_ms": floor_pruned * 1e3,
            "ratio_to_pruned": best / floor_pruned, "spread_step": _spread(t_step),
            "spread_floor": _spread(t_floor), "repeats": repeats, "steps": steps, "order": order,
            "load": _load()}


def measure_batched_vs_floor(n: int = 128, members: int = 6, steps: int = 20, threads: int = 0,
                             repeats: int = 5, planner: str = FLOOR_PLANNER, order: str = "blocks",
                             own_runtime: bool = True) -> dict:
    """The batched-member path (the ``small`` preset's ensembles: ``members`` of one system in
    lockstep on one numpy backend, :class:`solver.ensemble.Ensemble`) against the batched floor
    (:class:`FFTFloor` over ``members``: one batched plan per transform). Interleaved rounds as in
    :func:`measure_step_vs_floor` (``order`` and ``own_runtime`` too); figures in members*steps/s and
    the ratio of times."""
    _check_order(order)
    threads = threads or make_backend(16).threads
    system = SimpleNamespace(re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                             kf=4.0, eps=0.0, kp=10.0, init_energy=0.5, init="random")
    run = Ensemble(None, n=n, members=members, system=system, dt=1e-4, backend="numpy",
                   dtype="float64", threads=threads, check_every=10**9)
    run.start().advance(3)
    omega = np.asarray(run.backend.to_numpy(run.state.omega_hat))
    fl = FFTFloor(n, run.backend.threads, batch=(members,), init=omega, planner=planner)
    for _ in range(3):
        fl.floor()
    t_step, t_floor = [], []

    def step():
        t0 = time.perf_counter()
        run.advance(1)
        return time.perf_counter() - t0

    for _ in range(repeats):
        if order == "steps":
            ts, tf = zip(*[(step(), fl.floor()[0]) for _ in range(steps)])
        else:
            ts = [step() for _ in range(steps)]
            tf = [fl.floor()[0] for _ in range(steps)]
        t_step.append(min(ts))
        t_floor.append(min(tf))
    best, floor = min(t_step), min(t_floor)
    floors = _floors(floor, own_runtime_floor(n, run.backend.threads, batch=(members,), steps=steps,
                                              repeats=repeats, planner=planner) if own_runtime else None)
    floor = floors["floor_ms"] / 1e3
    return {"n": n, "members": members, "threads": run.backend.threads, "backend": _summary(run.backend),
            "members_steps_per_s": members / best, "floor_members_steps_per_s": members / floor,
            "ms_per_step": best * 1e3, **floors, "ratio": best / floor,
            "floor": fl.describe(), "spread_step": _spread(t_step), "spread_floor": _spread(t_floor),
            "order": order, "load": _load()}


def _alternate(runs: dict, steps: int, repeats: int) -> dict:
    """Best single-step seconds of each run (an ``Ensemble``), the runs alternated in blocks of
    ``steps`` steps for ``repeats`` rounds."""
    best = {k: math.inf for k in runs}
    for _ in range(repeats):
        for way, run in runs.items():
            for _ in range(steps):
                t0 = time.perf_counter()
                run.advance(1)
                best[way] = min(best[way], time.perf_counter() - t0)
    return best


def measure_kernel_threading(n: int = 512, members: int = 1, steps: int = 20, repeats: int = 5,
                             threads: int = 2, separate_runtimes: bool = True) -> dict:
    """ms per AB2-CN step (numpy backend, float64, ``threads``) of the ways the hot loop can use
    its threads for the elementwise work, each on its own copy of one case, in one process,
    alternated in blocks of ``steps`` steps for ``repeats`` rounds (best single step of each):

    - ``parallel``: OpenMP-parallel Numba kernels on the team FFTW's transforms use (the default
      where solver/openmp.py could load one runtime for both);
    - ``team``: serial kernels, pieces dealt out to the runner's Python thread team;
    - ``serial``: serial kernels on the calling thread (FFTW still on ``threads`` threads);
    - ``separate_runtimes`` (a fresh process, ``TURBTL_SHARED_OPENMP=0``, parallel kernels
      forced): what the parallel kernels cost beside FFTW's own OpenMP runtime, the pairing
      solver/openmp.py exists to avoid.

    All ways give the same bits (asserted here on the states after the timing)."""
    import os

    from solver import fastpath, kernels
    system = SimpleNamespace(re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                             kf=4.0, eps=0.0, kp=10.0, init_energy=0.5, init="random")
    forced = os.environ.get("TURBTL_FORCE_PARALLEL_KERNELS") == "1"  # set by the subprocess below
    if forced:
        kernels.parallel_available = fastpath.parallel_available = lambda: True
    runs = {}
    for way, fast_threads in ((("separate_runtimes", None),) if forced else
                              (("parallel", None), ("team", threads), ("serial", 1))):
        run = Ensemble(None, n=n, members=members, system=system, dt=1e-4, backend="numpy",
                       dtype="float64", threads=threads, check_every=10**9)
        run.start()
        run.runner.equation.fast.threads = fast_threads
        run.advance(3)
        runs[way] = run
    best = _alternate(runs, steps, repeats)
    states = [np.asarray(r.runner.state.omega_hat) for r in runs.values()]
    if not all(np.array_equal(states[0], s) for s in states[1:]):
        raise AssertionError("the ways of threading the hot loop gave different states")
    out = {f"{k}_ms": v * 1e3 for k, v in best.items()}
    if separate_runtimes and not forced:
        import json
        import subprocess
        from pathlib import Path
        root = str(Path(__file__).resolve().parents[1])
        code = (f"import json, sys; sys.path.insert(0, {root!r}); import bench.solver_harness as h; "
                f"print(json.dumps(h.measure_kernel_threading({n}, {members}, {steps}, {repeats}, {threads})))")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TURBTL_SHARED_OPENMP="0",
                   TURBTL_FORCE_PARALLEL_KERNELS="1")
        p = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env,
                           timeout=900, check=True)
        out["separate_runtimes_ms"] = json.loads(p.stdout.strip().splitlines()[-1])["separate_runtimes_ms"]
    from solver.openmp import describe
    return {"n": n, "members": members, "threads": threads, **out, "openmp": describe(), "load": _load()}


def measure_fused_x(n: int = 512, members: int = 1, steps: int = 20, repeats: int = 5,
                    threads: int = 2) -> dict:
    """ms per AB2-CN step (numpy backend, float64, ``threads``) with and without the fused x pass
    (solver/fftw_rows.py; ``TURBTL_FUSED_X=0`` when the plan is made), on two copies of one case in
    one process, alternated in blocks of ``steps`` steps for ``repeats`` rounds (best single step
    of each), and the largest difference of the two states relative to their largest entry (the
    two use different FFTW algorithms: equal to rounding, not bit for bit; asserted below 1e-12)."""
    import os

    from solver import fftw_rows
    system = SimpleNamespace(re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                             kf=4.0, eps=0.0, kp=10.0, init_energy=0.5, init="random")
    runs, fused = {}, {}
    before = os.environ.get(fftw_rows.FUSED_ENV)
    try:
        for way, env in (("fused", "1"), ("unfused", "0")):
            os.environ[fftw_rows.FUSED_ENV] = env
            run = Ensemble(None, n=n, members=members, system=system, dt=1e-4, backend="numpy",
                           dtype="float64", threads=threads, check_every=10**9)
            run.start().advance(3)  # the plan is made on the first step, under this setting
            eq = run.runner.equation
            fused[way] = eq.fast.plan(tuple(run.runner.state.omega_hat.shape[:-2])).fused_x
            runs[way] = run
    finally:
        if before is None:
            os.environ.pop(fftw_rows.FUSED_ENV, None)
        else:
            os.environ[fftw_rows.FUSED_ENV] = before
    if fused != {"fused": True, "unfused": False}:
        raise RuntimeError(f"the fused x pass is not available here ({fftw_rows.describe()})")
    best = _alternate(runs, steps, repeats)
    a, b = (np.asarray(r.runner.state.omega_hat) for r in runs.values())
    diff = float(np.abs(a - b).max() / np.abs(b).max())
    if not diff <= 1e-12:
        raise AssertionError(f"fused and unfused runs differ by {diff:.2e} of their largest entry")
    return {"n": n, "members": members, "threads": threads, "fused_ms": best["fused"] * 1e3,
            "unfused_ms": best["unfused"] * 1e3, "speedup": best["unfused"] / best["fused"],
            "max_rel_diff": diff, "load": _load()}


def bench_steps(n: int, steps: int, comm=None, *, members: int = 1, ranks_per_member: int | None = None,
                repeats: int = 3, backend: str = "numpy", dtype: str = "float64", device: str = "cpu",
                threads: int = 1) -> dict:
    """Time ``steps`` AB2-CN steps of a forced-turbulence ensemble (Re 2e4, kf 4, 2/3 rule) on
    ``comm`` (best of ``repeats``; no health checks or checkpoints inside the timed loop).

    Returns seconds per step and members*steps/s, Mpoints*steps/s for the whole ensemble."""
    size = 1 if comm is None else comm.Get_size()
    rpm = size if ranks_per_member is None else ranks_per_member
    system = SimpleNamespace(re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                             kf=4.0, eps=0.0, kp=10.0, init_energy=0.5, init="random")
    run = Ensemble(comm, n=n, members=members, system=system, dt=1e-4, ranks_per_member=rpm,
                      backend=backend, dtype=dtype, device=device, threads=threads, check_every=10**9)
    run.start().advance(2)
    best = math.inf
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        run.advance(steps)
        if run.backend is not None:
            run.backend.synchronize()
        if comm is not None:
            comm.Barrier()
        best = min(best, time.perf_counter() - t0)
    per = best / steps
    return {"n": n, "ranks": size, "ranks_per_member": rpm, "members": members, "s_per_step": per,
            "members_steps_per_s": members / per, "mpoints_steps_per_s": members * n * n / per / 1e6,
            "backend": "idle" if run.backend is None else _summary(run.backend)}


def bench_fft_pairs(n: int, steps: int, comm=None, *, members: int = 1, ranks_per_member: int | None = None,
          repeats: int = 3, backend: str = "numpy", threads: int = 1) -> dict:
    """Time ``steps`` planned forward + inverse transform pairs of every member held by this
    group (best of ``repeats``; members over groups as in :class:`Decomposition`).

    Returns the seconds per pair and the throughput in members*pairs/s and Mpoints*pairs/s."""
    size = 1 if comm is None else comm.Get_size()
    rpm = size if ranks_per_member is None else ranks_per_member
    dec = Decomposition(comm, members, rpm)
    be = make_backend(n, backend=backend, threads=threads, comm=dec.group_comm)
    batch = (len(dec.members),) if len(dec.members) != 1 else ()
    u, u_hat = be.empty_physical(batch), be.empty_spectral(batch)
    u[...] = be.asarray(np.random.default_rng(dec.group).standard_normal(u.shape))
    fwd, inv = be.plan_rfft2(u, u_hat), be.plan_irfft2(u_hat, u)
    fwd(), inv()
    best = np.inf
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            fwd()
            inv()
        be.synchronize()
        if comm is not None:
            comm.Barrier()
        best = min(best, time.perf_counter() - t0)
    per = best / steps
    return {"n": n, "ranks": size, "ranks_per_member": rpm, "members": members, "s_per_pair": per,
            "members_pairs_per_s": members / per, "mpoints_pairs_per_s": members * n * n / per / 1e6,
            "backend": _summary(be)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/solver_harness.py", description=__doc__.split("\n")[0])
    p.add_argument("--bench", nargs=2, type=int, metavar=("N", "STEPS"), required=True)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--ranks-per-member", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    p.add_argument("--solver", action="store_true",
                   help="time AB2-CN steps of forced turbulence (bench_steps) instead of FFT pairs")
    a = p.parse_args(argv)
    from mpi4py import MPI  # optional dependency: only the MPI command line needs it
    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        n, steps = a.bench
        if a.solver:
            r = bench_steps(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                            repeats=a.repeats, backend=a.backend)
        else:
            r = bench_fft_pairs(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                      repeats=a.repeats, backend=a.backend)
        if comm.Get_rank() == 0:
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

