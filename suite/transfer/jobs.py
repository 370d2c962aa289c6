"""The jobs of a sweep: one per (target, fraction, seed, kind, mask), their canonical order, the
slices of a SLURM array, and where each job's files are (:mod:`suite.layout`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..errors import UsageError
from ..masks import first_trainable, full, none


@dataclass(frozen=True)
class Job:
    """One row of the results table: a network to train (or the base network to evaluate)."""

    target: str
    fraction: float
    seed: int
    kind: str  # "base" | "scratch" | "oracle" | "tl" | "random" (the capacity-matched control of ``mask``)
    mask: str

    @property
    def first(self) -> int:
        """1-based first trainable layer (0 for base; 1 for random: its elements lie in every layer)."""
        return 1 if self.kind == "random" else first_trainable(self.mask)

    @property
    def group(self) -> str:
        """The job's folder name ``f<fraction:g>_s<seed>`` (:func:`suite.layout.tl_group`)."""
        return layout.tl_group(self.fraction, self.seed)

    @property
    def name(self) -> str:
        return f"{self.target}/{self.group}/{self.kind}-{self.mask}"


def plan(targets, masks, fractions, seeds, references: bool = True, oracle: bool = False,
         random_masks=()) -> list[Job]:
    """Every job of a sweep, in the canonical order that slices partition.

    Order: target, then the oracles (one per seed, ``fraction = 1``: the target's full training
    data), then fraction, seed, the references, the masks as given (a :func:`suite.masks.select`
    list is sorted by first trainable layer, so jobs sharing a prefix are neighbours and a
    contiguous slice keeps them together), and last the random controls of ``random_masks``.
    """
    if not masks:
        raise UsageError("no subsets to train", field="transfer.subsets")
    L = len(masks[0])
    out = []
    for t in targets:
        if oracle:
            out += [Job(t, 1.0, int(s), "oracle", full(L)) for s in seeds]
        for f in fractions:
            for s in seeds:
                if references:
                    out += [Job(t, float(f), int(s), "base", none(L)), Job(t, float(f), int(s), "scratch", full(L))]
                out += [Job(t, float(f), int(s), "tl", m) for m in masks]
                out += [Job(t, float(f), int(s), "random", m) for m in random_masks]
    return out


def parse_slice(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n`` (0-based, like ``$SLURM_ARRAY_TASK_ID`` of the array
    ``0-(n-1)`` that ``turbtl jobs`` renders); None → None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--slice = {text!r}: must be i/n with integers 0 <= i < n (0-based, as "
                         "$SLURM_ARRAY_TASK_ID of an array 0-(n-1))", field="slice") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--slice = {text!r}: must be i/n with 0 <= i < n (0-based, as $SLURM_ARRAY_TASK_ID "
                         f"of an array 0-(n-1)); got i = {i}, n = {n}", field="slice")
    return i, n


def slice_jobs(jobs: list[Job], part: tuple[int, int] | None) -> list[Job]:
    """Slice ``i`` of ``n``: the contiguous block ``jobs[i*N//n : (i+1)*N//n]`` (the slices partition
    the list; contiguous blocks keep jobs that share a prefix together)."""
    if part is None:
        return list(jobs)
    i, n = part
    N = len(jobs)
    return jobs[i * N // n:(i + 1) * N // n]


def row_path(run_dir, job: Job) -> Path:
    """The job's row file ``DIR/sweep/<target>/rows/<group>/<kind>-<mask>.json``."""
    return layout.sweep_row(run_dir, job.target, job.group, job.kind, job.mask)


def model_dir(run_dir, job: Job) -> Path | None:
    """Where the job's network is stored (None for the base reference: it is DIR/models/base)."""
    if job.kind == "base":
        return None
    leaf = {"tl": job.mask, "scratch": layout.SCRATCH, "oracle": "oracle"}.get(job.kind, f"random-{job.mask}")
    return layout.tl_model_dir(run_dir, job.target, job.fraction, job.seed, leaf)


def is_done(run_dir, job: Job) -> bool:
    return row_path(run_dir, job).is_file()
