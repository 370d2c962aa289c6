"""The run folder's layout: every path of ``DIR`` is built here (CONTRACTS.md
"FDNS store", "Models", "Sweep results" describe what the files hold).

::

    DIR/fdns/<system>.zarr                              FDNS store (turbtl dns)
    DIR/fdns/<system>.ckpt                              its DNS checkpoint while it runs
    DIR/models/base/                                    the base network (turbtl train)
    DIR/models/tl/<target>/f<fraction:g>_s<seed>/<leaf> TL networks (<leaf>: the mask, or "scratch")
    DIR/sweep/<target>/results.csv                      sweep table (turbtl transfer)
    DIR/sweep/<target>/rows/f<fraction:g>_s<seed>/<kind>-<mask>.json   one row file per finished job
    DIR/analysis/                                       analysis stores (turbtl analyze)
    DIR/les/<system>.zarr, DIR/les/<system>_metrics.csv online LES (turbtl les)
    DIR/figures/                                        every figure
    DIR/report.html                                     turbtl report
    DIR/stages/<stage>.json                             one record per finished stage
    DIR/jobs/                                           rendered SLURM scripts (turbtl jobs)
    DIR/run.json                                        the configuration the folder was made with
    DIR/.turbtl.lock                                    the run folder's lock (suite/rundir.py)

The group folder of a TL network, ``f<fraction:g>_s<seed>`` (e.g. ``f0.1_s0``), is written by
:func:`tl_group` and read back by :func:`parse_tl_group`.
"""
from __future__ import annotations

import re
from pathlib import Path

FDNS = "fdns"
MODELS = "models"
SWEEP = "sweep"
ANALYSIS = "analysis"
LES = "les"
FIGURES = "figures"
STAGES = "stages"
JOBS = "jobs"
REPORT = "report.html"
SCRATCH = "scratch"  # the leaf of the scratch reference network
RUN_RECORD = "run.json"  # the configuration the folder was made with (written by the first stage)
LOCK = ".turbtl.lock"
PARTS = (FDNS, MODELS, SWEEP, ANALYSIS, LES, FIGURES, STAGES, LOCK, RUN_RECORD, REPORT, JOBS)
"""The names a run folder holds at its top (a folder holding none of them is not a run folder)."""

_TL_GROUP = re.compile(r"^f(?P<fraction>[0-9.eE+-]+)_s(?P<seed>\d+)$")


# -- stores of the DNS -----------------------------------------------------------------------------
def fdns_dir(run_dir) -> Path:
    return Path(run_dir) / FDNS


def fdns_store(run_dir, system: str) -> Path:
    """``DIR/fdns/<system>.zarr``."""
    return fdns_dir(run_dir) / f"{system}.zarr"


def fdns_checkpoint(run_dir, system: str) -> Path:
    """``DIR/fdns/<system>.ckpt``."""
    return fdns_dir(run_dir) / f"{system}.ckpt"


# -- networks --------------------------------------------------------------------------------------
def base_model_dir(run_dir) -> Path:
    """``DIR/models/base``."""
    return Path(run_dir) / MODELS / "base"


def tl_root(run_dir) -> Path:
    """``DIR/models/tl``."""
    return Path(run_dir) / MODELS / "tl"


def tl_target_dir(run_dir, target: str) -> Path:
    """``DIR/models/tl/<target>``."""
    return tl_root(run_dir) / target


def tl_group(fraction: float, seed: int) -> str:
    """``f<fraction:g>_s<seed>``, e.g. ``f0.1_s0``."""
    return f"f{fraction:g}_s{seed}"


def parse_tl_group(name: str) -> tuple[float, int] | None:
    """(fraction, seed) of a group folder name written by :func:`tl_group`; None if it is not one."""
    m = _TL_GROUP.match(name)
    return (float(m["fraction"]), int(m["seed"])) if m else None


def tl_group_dir(run_dir, target: str, group: str) -> Path:
    """``DIR/models/tl/<target>/<group>`` (``group`` as :func:`tl_group` writes it)."""
    return tl_target_dir(run_dir, target) / group


def tl_model_dir(run_dir, target: str, fraction: float, seed: int, leaf: str) -> Path:
    """``DIR/models/tl/<target>/f<fraction:g>_s<seed>/<leaf>`` (leaf: the mask or ``scratch``)."""
    return tl_group_dir(run_dir, target, tl_group(fraction, seed)) / leaf


# -- the sweep table -------------------------------------------------------------------------------
def sweep_root(run_dir) -> Path:
    return Path(run_dir) / SWEEP


def sweep_dir(run_dir, target: str) -> Path:
    """``DIR/sweep/<target>``."""
    return sweep_root(run_dir) / target


def sweep_results(run_dir, target: str) -> Path:
    """``DIR/sweep/<target>/results.csv``."""
    return sweep_dir(run_dir, target) / "results.csv"


def sweep_rows_dir(run_dir, target: str) -> Path:
    """``DIR/sweep/<target>/rows``: one folder per group, one JSON file per finished job."""
    return sweep_dir(run_dir, target) / "rows"


def sweep_row(run_dir, target: str, group: str, kind: str, mask: str) -> Path:
    """``DIR/sweep/<target>/rows/<group>/<kind>-<mask>.json``."""
    return sweep_rows_dir(run_dir, target) / group / f"{kind}-{mask}.json"


# -- analysis, LES, figures, report, stage records -------------------------------------------------
def analysis_dir(run_dir) -> Path:
    """``DIR/analysis``."""
    return Path(run_dir) / ANALYSIS


def les_dir(run_dir) -> Path:
    return Path(run_dir) / LES


def les_store(run_dir, system: str) -> Path:
    """``DIR/les/<system>.zarr``."""
    return les_dir(run_dir) / f"{system}.zarr"


def les_metrics(run_dir, system: str) -> Path:
    """``DIR/les/<system>_metrics.csv``."""
    return les_dir(run_dir) / f"{system}_metrics.csv"


def figures_dir(run_dir) -> Path:
    """``DIR/figures``."""
    return Path(run_dir) / FIGURES


def report_path(run_dir) -> Path:
    """``DIR/report.html``."""
    return Path(run_dir) / REPORT


def stages_dir(run_dir) -> Path:
    return Path(run_dir) / STAGES


def stage_record(run_dir, stage: str) -> Path:
    """``DIR/stages/<stage>.json``."""
    return stages_dir(run_dir) / f"{stage}.json"


def jobs_dir(run_dir) -> Path:
    """``DIR/jobs`` (rendered SLURM scripts, plan, logs)."""
    return Path(run_dir) / JOBS


def run_record(run_dir) -> Path:
    """``DIR/run.json``."""
    return Path(run_dir) / RUN_RECORD


def lock_file(run_dir) -> Path:
    """``DIR/.turbtl.lock``."""
    return Path(run_dir) / LOCK


# -- what each stage writes --------------------------------------------------------------------------
def stage_outputs(run_dir, stage: str) -> list[Path]:
    """The paths the stage ``stage`` writes (its disk use is measured there)."""
    return {"dns": [fdns_dir(run_dir)], "train": [base_model_dir(run_dir)],
            "transfer": [tl_root(run_dir), sweep_root(run_dir)],
            "analyze": [analysis_dir(run_dir), figures_dir(run_dir)], "les": [les_dir(run_dir)],
            "report": [report_path(run_dir)]}.get(stage, [])
