"""MPI: strong scaling of one DNS member 1 -> 2 ranks (slab decomposition) and ensemble throughput
(2 members on 2 ranks, one per rank), each run by ``mpiexec`` in a subprocess with one thread per
rank (``python bench/solver_harness.py --bench N STEPS --solver``, best of its repeats)."""
from __future__ import annotations

from .common import mpi_bench, require

N, STEPS, REPEATS = 512, 10, 3


class Scaling:
    """Seconds per step on 1 and 2 ranks, efficiency t1 / (2 t2), ensemble members*steps/s."""

    rounds = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        require("solver.ensemble", "Ensemble")
        args = ["--bench", str(N), str(STEPS), "--solver", "--repeats", str(REPEATS)]
        one = mpi_bench(1, args)
        slab = mpi_bench(2, args)
        ens = mpi_bench(2, args + ["--members", "2", "--ranks-per-member", "1"])
        return {"one": one, "slab": slab, "ensemble": ens}

    def track_s_per_step_1rank(self, r):
        return r["one"]["s_per_step"]
    track_s_per_step_1rank.unit = "s/step"

    def track_s_per_step_2ranks(self, r):
        return r["slab"]["s_per_step"]
    track_s_per_step_2ranks.unit = "s/step"

    def track_strong_scaling_efficiency(self, r):
        return r["one"]["s_per_step"] / (2 * r["slab"]["s_per_step"])
    track_strong_scaling_efficiency.unit = "t1/(2 t2)"

    def track_ensemble_members_steps_per_s(self, r):
        return r["ensemble"]["members_steps_per_s"]
    track_ensemble_members_steps_per_s.unit = "members*steps/s"

    def track_ensemble_efficiency(self, r):
        return r["ensemble"]["members_steps_per_s"] / (2 * r["one"]["members_steps_per_s"])
    track_ensemble_efficiency.unit = "rate/(2 x 1-rank rate)"
