"""DNS solver: ms/step, Mpoints*steps/s and the ratio to the FFT floor; peak memory of a step.

The case is the solver's own benchmark case (``bench/solver_harness.py: measure_step_vs_floor``): forced
turbulence at Re 2e4, kf 4, AB2-CN, 2/3 rule, dt 1e-4, from a random-phase field. The floor (issue
21, docs/benchmarks.md "The solver's FFT floor"): 4 inverse c2r + 1 forward r2c full 2D transforms
as raw pyFFTW ``FFTW`` objects (FFTW_MEASURE, the step's threads, aligned, input destruction
allowed, the restoring copies excluded; the 4 inverses as 4 plans or one batched plan, whichever is
faster), for the torch backend on CPU too; on CUDA the backend's own 5 full transforms (cuFFT).
Step and floor alternate in blocks of back-to-back steps within every round, in the same process
(so load from other processes hits both alike, and each runs with warm caches). The batched-member
path (the ``small`` preset: 6 members at 128²) is tracked against the batched floor.
"""
from __future__ import annotations

from .common import DEVICES, require, require_device

SIZES = [256, 512, 1024]
TRACK_SIZES = [128] + SIZES + [2048]
THREADS = [1, 2]  # numpy float64 on cpu is tracked on 1 and 2 threads; the other cases on 1
BACKENDS = ["numpy", "torch"]
DTYPES = ["float64", "float32"]
# (steps per timing, repeats) of measure_step_vs_floor by grid size: about 1-10 s per case here
_EFFORT = {128: (40, 5), 256: (20, 5), 512: (10, 4), 1024: (4, 4), 2048: (2, 3)}


def _check(backend: str, device: str) -> None:
    if backend == "numpy" and device != "cpu":
        raise NotImplementedError("the numpy backend runs on cpu only")
    require_device(device)


def dns_case(n: int, backend: str = "numpy", dtype: str = "float64", device: str = "cpu"):
    """(backend, stepper, state) of the benchmark case, built from the solver's public pieces."""
    from solver.equation import Equation, Parameters
    from solver.backends import make_backend
    from solver.forcing import make_forcing
    from solver.grid import Grid
    from solver.initial import random_field
    from solver.stepping import make_stepper

    be = make_backend(n, backend=backend, dtype=dtype, device=device)
    g = Grid(n, backend=be)
    eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper("ab2cn", eq, dt=1e-4)
    return be, st, st.init_state(random_field(g, kp=10, seed=0))


class StepTime:
    """Seconds per DNS step (asv's own timing; 2048² is in :class:`StepVsFloor` only)."""

    params = (SIZES, BACKENDS, DTYPES, DEVICES)
    param_names = ["n", "backend", "dtype", "device"]
    number = 1
    repeat = (3, 10, 2.0)
    rounds = 1
    warmup_time = 0
    timeout = 300

    def setup(self, n, backend, dtype, device):
        _check(backend, device)
        self.be, self.step, self.state = dns_case(n, backend, dtype, device)
        for _ in range(3):  # warm-up: plans, caches, the AB2 start-up step
            self.step(self.state)
        self.be.synchronize()

    def time_step(self, n, backend, dtype, device):
        self.step(self.state)
        self.be.synchronize()


def _tracked(n, backend, dtype, device, threads) -> bool:
    """2 threads only for numpy float64 on cpu (the issue's case); 128² only for numpy."""
    if threads != 1 and not (backend == "numpy" and dtype == "float64" and device == "cpu"):
        return False
    return not (n == 128 and backend != "numpy")


def _fresh_process(call: str, threads: int) -> dict:
    """The dict ``bench.solver_harness.<call>`` returns, computed in a fresh Python process with
    OMP_NUM_THREADS=threads (see :func:`_fresh_process_case`)."""
    import json
    import sys
    from pathlib import Path

    from .common import run
    root = str(Path(__file__).resolve().parents[1])
    code = (f"import json, sys; sys.path.insert(0, {root!r}); import bench.solver_harness as h; "
            f"print(json.dumps(h.{call}))")
    out = run([sys.executable, "-P", "-c", code], timeout=1800, threads=threads)
    return json.loads(out.strip().splitlines()[-1])


def _fresh_process_case(n, backend, dtype, device, steps, repeats, threads) -> dict:
    """``measure_step_vs_floor`` of one case in a fresh Python process (OMP_NUM_THREADS=threads).

    Cases share nothing, and each gets its own OMP_NUM_THREADS: under the suite's
    OMP_NUM_THREADS=1 (bench/run.sh) the 2-thread cases ran as on one thread, because FFTW's
    threads here are OpenMP's (thread pools and their settings are process-wide). Before the
    solver made its processes use one OpenMP runtime (solver/openmp.py), a torch CPU step after
    numpy-backend steps in one process also ran up to ten times slower: torch's runtime and
    pyFFTW's each kept spinning threads (bench/scripts/solver_figures.py times that sequence)."""
    return _fresh_process(f"measure_step_vs_floor({n}, backend={backend!r}, dtype={dtype!r}, "
                          f"device={device!r}, steps={steps}, repeats={repeats}, threads={threads})", threads)


class StepVsFloor:
    """ms/step, Mpoints*steps/s, the floor's ms and the ratio step/FFT floor, all sizes incl.
    2048², on 1 and 2 threads (one ``measure_step_vs_floor`` per case, each in a fresh process,
    shared by the tracks);
    also the step over the solver's own pruned transforms (a second, named ratio)."""

    params = (TRACK_SIZES, BACKENDS, DTYPES, DEVICES, THREADS)
    param_names = ["n", "backend", "dtype", "device", "threads"]
    rounds = 1
    repeat = 1
    timeout = 1800

    def setup_cache(self):
        require(f"{__package__}.solver_harness", "measure_step_vs_floor")
        from .common import cuda_available
        out = {}
        for device in DEVICES:
            if device == "cuda" and not cuda_available():
                continue
            for backend in BACKENDS:
                if backend == "numpy" and device != "cpu":
                    continue
                for dtype in DTYPES:
                    for n in TRACK_SIZES:
                        for threads in THREADS:
                            if not _tracked(n, backend, dtype, device, threads):
                                continue
                            steps, repeats = _EFFORT[n] if device == "cpu" else (20, 5)
                            out[(n, backend, dtype, device, threads)] = _fresh_process_case(
                                n, backend, dtype, device, steps, repeats, threads)
        return out

    def setup(self, cache, n, backend, dtype, device, threads):
        _check(backend, device)
        if (n, backend, dtype, device, threads) not in cache:
            raise NotImplementedError("not tracked")
        self.r = cache[(n, backend, dtype, device, threads)]

    def track_ms_per_step(self, cache, n, backend, dtype, device, threads):
        return self.r["ms_per_step"]
    track_ms_per_step.unit = "ms/step"

    def track_floor_ms(self, cache, n, backend, dtype, device, threads):
        """The floor itself (4 c2r + 1 r2c, raw pyFFTW plans; torch: its own full transforms)."""
        return self.r["floor_ms"]
    track_floor_ms.unit = "ms (FFT floor)"

    def track_mpoints_steps_per_s(self, cache, n, backend, dtype, device, threads):
        return self.r["mpoints_steps_per_s"]
    track_mpoints_steps_per_s.unit = "Mpoints*steps/s"

    def track_ratio_to_fft_floor(self, cache, n, backend, dtype, device, threads):
        return self.r["ratio"]
    track_ratio_to_fft_floor.unit = "step/FFT floor"

    def track_ratio_to_pruned_fft_floor(self, cache, n, backend, dtype, device, threads):
        """The step over its own (pruned) transforms: the cost of everything but the FFTs."""
        return self.r["ratio_to_pruned"]
    track_ratio_to_pruned_fft_floor.unit = "step/pruned FFT floor"


class BatchedVsFloor:
    """The ``small`` preset's batched-member path (6 members of 128² in lockstep, numpy float64)
    against the batched floor: members*steps/s of both and the ratio of times."""

    params = (THREADS,)
    param_names = ["threads"]
    rounds = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        require(f"{__package__}.solver_harness", "measure_batched_vs_floor")
        # each thread count in a fresh process with its OMP_NUM_THREADS (see _fresh_process_case)
        return {t: _fresh_process(f"measure_batched_vs_floor(128, members=6, steps=40, repeats=5, threads={t})", t)
                for t in THREADS}

    def track_members_steps_per_s(self, cache, threads):
        return cache[threads]["members_steps_per_s"]
    track_members_steps_per_s.unit = "members*steps/s"

    def track_floor_members_steps_per_s(self, cache, threads):
        return cache[threads]["floor_members_steps_per_s"]
    track_floor_members_steps_per_s.unit = "members*steps/s (batched FFT floor)"

    def track_ratio_to_batched_floor(self, cache, threads):
        return cache[threads]["ratio"]
    track_ratio_to_batched_floor.unit = "step/batched FFT floor"


class KernelThreading:
    """The ways the hot loop can thread its elementwise work (numpy float64, 2 threads, one fresh
    process per size, ``measure_kernel_threading``): OpenMP-parallel Numba kernels on FFTW's team
    (the default), serial kernels with the runner's Python thread team, serial kernels on one
    thread, and parallel kernels beside a second OpenMP runtime (what solver/openmp.py avoids)."""

    params = ([256, 512], ["parallel", "team", "serial", "separate_runtimes"])
    param_names = ["n", "way"]
    rounds = 1
    repeat = 1
    timeout = 900

    def setup_cache(self):
        require(f"{__package__}.solver_harness", "measure_kernel_threading")
        return {n: _fresh_process(f"measure_kernel_threading({n}, steps=20, repeats=5, threads=2)", 2)
                for n in self.params[0]}

    def track_ms_per_step(self, cache, n, way):
        return cache[n][f"{way}_ms"]
    track_ms_per_step.unit = "ms/step"


class FusedX:
    """The fused x pass of the hot loop (solver/fftw_rows.py) against the unfused transforms with
    the physical product between them, on two copies of one case in one fresh process per size
    (numpy float64, 2 threads, ``measure_fused_x``): ms per step each way and the speed-up."""

    params = ([(256, 1), (512, 1), (1024, 1), (128, 6)], ["fused", "unfused"])
    param_names = ["n_members", "way"]
    rounds = 1
    repeat = 1
    timeout = 900

    def setup_cache(self):
        require(f"{__package__}.solver_harness", "measure_fused_x")
        return {nm: _fresh_process(f"measure_fused_x({nm[0]}, {nm[1]}, steps=20, repeats=5, threads=2)", 2)
                for nm in self.params[0]}

    def track_ms_per_step(self, cache, n_members, way):
        return cache[n_members][f"{way}_ms"]
    track_ms_per_step.unit = "ms/step"


class StepMemory:
    """Peak resident memory of building the case and taking one step (numpy, float64)."""

    params = [512, 1024]
    param_names = ["n"]
    timeout = 300

    def peakmem_dns_step(self, n):
        be, step, state = dns_case(n)
        step(state)
        be.synchronize()
