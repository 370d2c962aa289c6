"""Render the SLURM job scripts of a run: ``DIR/jobs/<stage>.sbatch`` and ``DIR/jobs/plan.json``.

One script per stage (``jobs.profiles.STAGES``), from ``jobs/templates/<stage>.sbatch`` with the
shared ``prologue.sh``. The ``#SBATCH`` header comes from the cluster profile; the commands call
the documented CLI of each stage with the run's configuration (``--preset P`` or a copy of the
``--config`` file in ``DIR/jobs/config.toml``) and ``--run-dir DIR``:

=========  ==================================================================================
dns        ``srun --mpi=<mpi> turbtl dns`` on ``ntasks`` MPI ranks
train      DDP: ``srun torchrun ... turbtl train`` (or one srun task per process)
transfer   job array, task i runs ``turbtl transfer --slice i/N``, throttled with ``%``
analyze    Dask scheduler + workers with srun inside the job, ``turbtl analyze --scheduler-file``
les        ``turbtl les`` (online LES of every closure)
report     ``turbtl report``
bench      ``make bench`` (asv)
=========  ==================================================================================

``plan.json`` records the stages, their scripts, the dependencies (``AFTER``) and the array sizes;
``jobs.submit`` reads it. Templates use ``@@{name}`` placeholders (``string.Template`` with the
delimiter ``@@``, so bash's own ``$VAR`` stays untouched); a missing value is an error.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import string
import sys
from pathlib import Path

from solver.atomic import write_bytes_atomic
from suite.config import Config
from suite.errors import ConfigError, DataError
from suite.layout import jobs_dir as run_jobs_dir
from suite.provenance import provenance
from suite.stages import PIPELINE, previous

from .profiles import STAGES, Profile, check_fit, ddp_procs_per_node

TEMPLATE_DIR = Path(__file__).with_name("templates")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: direct upstream stages: each pipeline stage waits for the one before it (suite.stages: every
#: stage locks the run folder, so two never run at once), bench for none; submitting a subset
#: depends on the nearest submitted ancestors. ``PIPELINE`` (suite.stages) is what `turbtl jobs
#: submit` submits by default, chained with --dependency=afterok.
AFTER = {stage: previous(stage) for stage in STAGES}


class _Template(string.Template):
    delimiter = "@@"


def fill(template_name: str, **values) -> str:
    """Substitute ``@@{name}`` placeholders of ``templates/<template_name>``; all must be given."""
    text = (TEMPLATE_DIR / template_name).read_text()
    try:
        return _Template(text).substitute(values)
    except KeyError as e:  # a template bug, not user input
        raise RuntimeError(f"template {template_name}: no value for @@{{{e.args[0]}}}") from None


def ancestors(stage: str) -> list[str]:
    """Every stage that ``stage`` needs before it, nearest first."""
    out, todo = [], list(AFTER[stage])
    while todo:
        s = todo.pop(0)
        if s not in out:
            out.append(s)
            todo += AFTER[s]
    return out


def sbatch_header(stage: str, res: dict, *, ntasks: int, cpus_per_task: int, ntasks_per_node: int,
                  log_dir: Path, array: str | None = None) -> list[str]:
    """The ``#SBATCH`` lines of one stage from its resolved profile resources."""
    opts = [f"--job-name=turbtl-{stage}"]
    for key in ("partition", "account", "qos", "constraint"):
        if res[key]:
            opts.append(f"--{key}={res[key]}")
    opts += [f"--time={res['time']}", f"--nodes={res['nodes']}"]
    if ntasks_per_node:
        opts.append(f"--ntasks-per-node={ntasks_per_node}")
    else:
        opts.append(f"--ntasks={ntasks}")
    opts.append(f"--cpus-per-task={cpus_per_task}")
    if res["mem"]:
        opts.append(f"--mem={res['mem']}")
    if res["gres"]:
        opts.append(f"--gres={res['gres']}")
    elif res["gpus_per_node"]:
        opts.append(f"--gpus-per-node={res['gpus_per_node']}")
    if res["exclusive"]:
        opts.append("--exclusive")
    if array:
        opts.append(f"--array={array}")
    out = log_dir / ("%x-%A_%a.out" if array else "%x-%j.out")
    opts += [f"--output={out}", "--open-mode=append"]
    opts += list(res["extra"])
    for o in opts:
        if any(c in o for c in "\n\r"):
            raise ConfigError(f"stages.{stage}: sbatch option {o!r} contains a line break", field=f"stages.{stage}")
    return ["#!/bin/bash"] + [f"#SBATCH {o}" for o in opts]


def _bash_value(text: str) -> str:
    """A profile string for ``export X=...``: double-quoted so that ``$HOME`` expands at run time."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def _stage_layout(stage: str, res: dict, cfg: Config, profile: Profile) -> dict:
    """Tasks, CPUs and the stage-specific template values of one stage."""
    where = f"profile {profile.name}: stages.{stage}"
    lay = {"ntasks": 1, "cpus_per_task": res["cpus_per_task"], "ntasks_per_node": 0,
           "threads": res["cpus_per_task"], "array": None, "values": {}}
    if stage == "dns":
        lay["ntasks"], lay["ntasks_per_node"] = res["ntasks"], res["ntasks_per_node"]
        lay["values"] = {"ntasks": res["ntasks_per_node"] * res["nodes"] if res["ntasks_per_node"] else res["ntasks"],
                         "mpi": profile.cluster["mpi"]}
    elif stage == "train":
        procs = ddp_procs_per_node(res)
        launcher = profile.cluster["ddp_launcher"]
        if launcher == "torchrun":  # one torchrun task per node holding every process's CPUs
            lay["ntasks_per_node"], lay["cpus_per_task"] = 1, procs * res["cpus_per_task"]
        else:
            lay["ntasks_per_node"] = procs
        lay["values"] = {"procs": procs, "launcher": launcher}
    elif stage == "transfer":
        n, thr = res["array_tasks"], res["throttle"]
        lay["array"] = f"0-{n - 1}" + (f"%{thr}" if thr else "")
        lay["values"] = {"array_tasks": n}
    elif stage == "analyze":
        workers = res["workers"] or cfg.analyze.workers
        per_node = -(-workers // res["nodes"])
        check_fit(where, profile.cluster, per_node, res["threads_per_worker"])
        lay["ntasks"], lay["cpus_per_task"] = workers, res["threads_per_worker"]
        lay["threads"] = res["threads_per_worker"]
        lay["values"] = {"workers": workers, "threads_per_worker": res["threads_per_worker"]}
    return lay


def config_args(preset: str | None, config_file: str | Path | None, run_dir: Path) -> list[str]:
    """The options every stage command gets: the same configuration and run folder as here.

    With a ``--config`` file the jobs read its copy ``run_dir/jobs/config.toml`` (and ``--preset``
    too when it was given, since it replaces the file's ``extends``)."""
    args = ["--preset", preset] if preset else []
    if config_file is not None:
        args += ["--config", str(run_jobs_dir(run_dir) / "config.toml")]
    return args + ["--run-dir", str(run_dir)]


def render(cfg: Config, profile: Profile, run_dir: str | Path, config_file: str | Path | None = None,
           preset: str | None = None) -> dict:
    """Write every stage's script and ``plan.json`` into ``run_dir/jobs/``; return the plan.

    ``preset``/``config_file`` are what the user gave (``cfg`` is their validated result);
    ``config_file`` is copied to ``run_dir/jobs/config.toml`` so that the
    jobs read the configuration as it was when rendered. Everything is validated before writing.
    """
    run_dir = Path(run_dir).resolve()
    jobs_dir = run_jobs_dir(run_dir)
    log_dir = jobs_dir / "logs"
    cargs = config_args(preset if config_file is not None else (preset or cfg.preset), config_file, run_dir)
    cl = profile.cluster
    venv = cl["venv"] or sys.prefix
    workdir = cl["workdir"] or str(PROJECT_ROOT)
    env_lines = []
    if cl["modules"]:
        env_lines += ["command -v module > /dev/null || source /etc/profile > /dev/null 2>&1 || true",
                      f"module load {' '.join(shlex.quote(m) for m in cl['modules'])}"]
    env_lines += [cl["activate"], *cl["setup"]]
    scripts, stages = {}, {}
    shell_args = " ".join(shlex.quote(a) for a in cargs)
    for stage in STAGES:  # build all in memory first: a bad profile writes nothing
        res = profile.stage(stage)
        lay = _stage_layout(stage, res, cfg, profile)
        header = sbatch_header(stage, res, ntasks=lay["ntasks"], cpus_per_task=lay["cpus_per_task"],
                               ntasks_per_node=lay["ntasks_per_node"], log_dir=log_dir, array=lay["array"])
        prologue = fill("prologue.sh", stage=stage, run_dir=shlex.quote(str(run_dir)), venv=_bash_value(venv),
                        workdir=_bash_value(workdir), environment="\n".join(l for l in env_lines if l),
                        threads=lay["threads"], config_args=shell_args)
        values = dict(lay["values"], header="\n".join(header), prologue=prologue, config_args=shell_args)
        if stage == "train":
            values["launch"] = fill(f"train_{values['launcher']}.sh", **values)
        scripts[stage] = fill(f"{stage}.sbatch", **values)
        stages[stage] = {"script": f"{stage}.sbatch", "after": AFTER[stage],
                         "array": ({"tasks": res["array_tasks"], "throttle": res["throttle"]}
                                   if lay["array"] else None)}
    plan = {"schema_version": 1, "kind": "turbtl-jobs-plan", "run_dir": str(run_dir),
            "profile": profile.name, "profile_path": str(profile.path), "config_args": cargs,
            "pipeline": list(PIPELINE), "stages": stages,
            "provenance": provenance(cfg.to_dict(), profile=profile.name)}
    log_dir.mkdir(parents=True, exist_ok=True)
    (jobs_dir / "status").mkdir(exist_ok=True)
    if config_file is not None and Path(config_file).resolve() != (jobs_dir / "config.toml").resolve():
        shutil.copyfile(config_file, jobs_dir / "config.toml")
    for stage, text in scripts.items():
        path = jobs_dir / f"{stage}.sbatch"
        path.write_text(text)
        os.chmod(path, 0o755)
    write_bytes_atomic(jobs_dir / "plan.json", json.dumps(plan, indent=2).encode())
    return plan


def load_plan(run_dir: str | Path) -> dict:
    """The plan written by :func:`render`; DataError when the run was never rendered."""
    path = run_jobs_dir(Path(run_dir).resolve()) / "plan.json"
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"no job scripts in {path.parent}: run `turbtl jobs render` for this run first",
                        field="run-dir") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}): render the jobs again", field="run-dir") from None
    if plan.get("kind") != "turbtl-jobs-plan" or plan.get("schema_version") != 1:
        raise DataError(f"{path} is not a turbtl job plan of schema_version 1", field="run-dir")
    return plan
