"""Cluster profiles: where and with what resources each stage's SLURM job runs.

A profile is a TOML file, ``jobs/profiles/<name>.toml`` (``--profile NAME``) or any path
(``--profile FILE.toml``), with three parts:

``[cluster]``
    site facts and the environment of every job: default ``partition``/``account``/``qos``, the
    hardware of one node (``cpus_per_node``, ``gpus_per_node``; requests are checked against them
    when given), ``modules`` to load, the project ``venv`` and ``workdir``, the ``activate`` line,
    extra ``setup`` lines, the ``mpi`` plugin for ``srun --mpi`` and the DDP launcher.
``[defaults]``
    resources shared by every stage (``time``, ``mem``, ...).
``[stages.<stage>]``
    resources of one stage, overriding ``[defaults]``; plus the stage's own knobs (DDP processes
    per node, the size and throttle of the transfer array, the Dask workers of the analysis).

Strings in ``modules``/``venv``/``workdir``/``activate``/``setup`` are bash: ``$HOME`` etc. expand
on the compute node. Everything else is validated here; a bad value raises
:class:`suite.errors.ConfigError` naming the profile, the field, the value and the accepted range.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from suite.config import Spec, between, choices, ge, validate_section
from suite.errors import ConfigError
from suite.stages import JOB_STAGES

PROFILE_DIR = Path(__file__).with_name("profiles")

#: every stage that has a job template, in pipeline order (suite.stages owns the order)
STAGES = JOB_STAGES

_TIME_RE = re.compile(r"^(\d+-\d{1,2}(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")


def _time_rule(v: str):
    return None if _TIME_RE.match(v) else "must be a SLURM time limit: MM, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]"


def _mem_rule(v: str):
    return None if (v == "" or re.match(r"^\d+[KMGT]?$", v)) else "must be empty or a size like 4000, 16G"


CLUSTER_SCHEMA: dict[str, Spec] = {
    "partition": Spec(str, "", None, "default partition ('' = the cluster's default)"),
    "account": Spec(str, "", None, "default account ('' = none)"),
    "qos": Spec(str, "", None, "default QOS ('' = none)"),
    "cpus_per_node": Spec(int, 0, between(0, 100000), "CPUs of one node; 0 = unknown (no check)"),
    "gpus_per_node": Spec(int, 0, between(0, 64), "GPUs of one node (for the checks)"),
    "modules": Spec(list, [], None, "environment modules to load (`module load ...`)"),
    "venv": Spec(str, "", None, "virtual environment of turbtl ('' = the one running `turbtl jobs render`)"),
    "workdir": Spec(str, "", None, "directory jobs run in ('' = this project's root)"),
    "activate": Spec(str, 'source "$TURBTL_VENV/bin/activate"', None, "line that activates the environment"),
    "setup": Spec(list, [], None, "extra bash lines run before the stage (exports, ulimits, ...)"),
    "mpi": Spec(str, "pmi2", choices("pmi2", "pmix", "pmix_v3", "pmix_v4", "pmix_v5", "cray_shasta", "none"),
                "srun --mpi plugin of the MPI library the venv uses"),
    "ddp_launcher": Spec(str, "torchrun", choices("torchrun", "srun"),
                         "DDP: one torchrun per node, or one srun task per process (RANK from SLURM)"),
}

RESOURCE_SCHEMA: dict[str, Spec] = {
    "partition": Spec(str, "", None, "partition ('' = [cluster].partition)"),
    "account": Spec(str, "", None, "account ('' = [cluster].account)"),
    "qos": Spec(str, "", None, "QOS ('' = [cluster].qos)"),
    "time": Spec(str, "01:00:00", _time_rule, "time limit"),
    "nodes": Spec(int, 1, between(1, 100000), "nodes"),
    "ntasks_per_node": Spec(int, 0, between(0, 4096), "tasks per node (0 = from ntasks)"),
    "ntasks": Spec(int, 1, between(1, 10**6), "tasks in all (MPI ranks of the DNS)"),
    "cpus_per_task": Spec(int, 1, between(1, 4096), "CPUs per task (OMP/torch threads)"),
    "mem": Spec(str, "", _mem_rule, "memory per node ('' = site default)"),
    "gpus_per_node": Spec(int, 0, between(0, 64), "GPUs per node requested (--gpus-per-node)"),
    "gres": Spec(str, "", None, "generic resources (--gres, e.g. gpu:a100:4); replaces --gpus-per-node"),
    "constraint": Spec(str, "", None, "node features (--constraint)"),
    "exclusive": Spec(bool, False, None, "whole nodes (--exclusive), e.g. for benchmarks"),
    "extra": Spec(list, [], None, "further sbatch options, e.g. ['--reservation=x']"),
}

STAGE_EXTRAS: dict[str, dict[str, Spec]] = {
    "train": {"procs_per_node": Spec(int, 0, between(0, 1024),
                                     "DDP processes per node (0 = gpus_per_node, or 1 without GPUs)")},
    "transfer": {"array_tasks": Spec(int, 4, between(1, 100000), "array tasks: the sweep in that many slices"),
                 "throttle": Spec(int, 0, between(0, 100000), "at most this many tasks at once (0 = no limit)")},
    "analyze": {"workers": Spec(int, 0, between(0, 100000), "Dask workers (0 = config analyze.workers)"),
                "threads_per_worker": Spec(int, 1, between(1, 1024), "threads per Dask worker")},
}


@dataclass(frozen=True)
class Profile:
    """A validated profile: ``cluster`` fields and the resolved resources of every stage."""

    name: str
    path: Path
    description: str
    cluster: dict
    stages: dict  # stage -> dict of RESOURCE_SCHEMA (+ the stage's extras)

    def stage(self, name: str) -> dict:
        return dict(self.stages[name])


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _profile_path(name: str) -> Path:
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    if name not in available_profiles():
        raise ConfigError(f"--profile {name!r} is unknown: accepted are {', '.join(available_profiles())} "
                          "or a path to a .toml file", field="profile")
    return PROFILE_DIR / f"{name}.toml"


def ddp_procs_per_node(res: dict) -> int:
    """DDP processes per node of the train stage: procs_per_node, else one per GPU, else 1."""
    return res["procs_per_node"] or res["gpus_per_node"] or 1


def check_fit(where: str, cluster: dict, tasks_per_node: int, cpus_per_task: int) -> None:
    """Raise ConfigError when tasks_per_node x cpus_per_task exceeds one node of the cluster."""
    cpn = cluster["cpus_per_node"]
    if cpn and tasks_per_node * cpus_per_task > cpn:
        raise ConfigError(f"{where}: {tasks_per_node} tasks per node x {cpus_per_task} CPUs each exceeds "
                          f"cluster.cpus_per_node = {cpn}", field=where)


def _check_stage(where: str, cluster: dict, res: dict) -> None:
    cpn, gpn = cluster["cpus_per_node"], cluster["gpus_per_node"]
    if res["ntasks_per_node"]:
        check_fit(where, cluster, res["ntasks_per_node"], res["cpus_per_task"])
    if cpn and res["cpus_per_task"] > cpn:
        raise ConfigError(f"{where}.cpus_per_task = {res['cpus_per_task']}: must be <= cluster.cpus_per_node = {cpn}",
                          field=f"{where}.cpus_per_task")
    if cpn and res["ntasks"] * res["cpus_per_task"] > cpn * res["nodes"]:
        raise ConfigError(f"{where}: ntasks x cpus_per_task = {res['ntasks']} x {res['cpus_per_task']} exceeds "
                          f"the {res['nodes']} node(s) x cluster.cpus_per_node = {cpn}", field=f"{where}.ntasks")
    if gpn and res["gpus_per_node"] > gpn:
        raise ConfigError(f"{where}.gpus_per_node = {res['gpus_per_node']}: must be <= cluster.gpus_per_node = {gpn}",
                          field=f"{where}.gpus_per_node")
    if "procs_per_node" in res:
        check_fit(where, cluster, ddp_procs_per_node(res), res["cpus_per_task"])
    if "throttle" in res and res["throttle"] > res["array_tasks"]:
        raise ConfigError(f"{where}.throttle = {res['throttle']}: must be <= array_tasks = {res['array_tasks']}",
                          field=f"{where}.throttle")


def load_profile(name: str = "local") -> Profile:
    """Load and validate a profile by name (``jobs/profiles/<name>.toml``) or path."""
    path = _profile_path(name)
    label = f"profile {path.stem}"
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--profile {name!r}: file not found: {path}", field="profile") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--profile {name!r}: {path} is not valid TOML: {e}", field="profile") from None
    try:
        unknown = sorted(set(doc) - {"description", "cluster", "defaults", "stages"})
        if unknown:
            raise ConfigError(f"[{unknown[0]}] is not a known section: accepted are cluster, defaults, stages",
                              field=unknown[0])
        cluster = validate_section("cluster", CLUSTER_SCHEMA, doc.get("cluster", {}))
        defaults = doc.get("defaults", {})
        validate_section("defaults", RESOURCE_SCHEMA, defaults)
        given = doc.get("stages", {})
        if not isinstance(given, dict):
            raise ConfigError("[stages] must be a table of [stages.<stage>] tables", field="stages")
        bad = sorted(set(given) - set(STAGES))
        if bad:
            raise ConfigError(f"stages.{bad[0]} is not a stage: accepted are {', '.join(STAGES)}",
                              field=f"stages.{bad[0]}")
        stages = {}
        for st in STAGES:
            spec = RESOURCE_SCHEMA | STAGE_EXTRAS.get(st, {})
            res = validate_section(f"stages.{st}", spec, {**defaults, **given.get(st, {})})
            for key in ("partition", "account", "qos"):
                res[key] = res[key] or cluster[key]
            _check_stage(f"stages.{st}", cluster, res)
            stages[st] = res
    except ConfigError as e:
        raise ConfigError(f"{label} ({path}): {e}", field=e.field) from None
    return Profile(name=path.stem, path=path.resolve(), description=str(doc.get("description", "")),
                   cluster=cluster, stages=stages)


def describe_profiles() -> str:
    """The fields of a profile with defaults and meaning (``turbtl jobs profiles``)."""
    lines = []
    for title, spec in (("[cluster]", CLUSTER_SCHEMA), ("[defaults] and [stages.<stage>]", RESOURCE_SCHEMA),
                        *((f"[stages.{k}] only", v) for k, v in STAGE_EXTRAS.items())):
        lines.append(title)
        lines += [f"  {k:<18} default {s.default!r:<12} {s.help}" for k, s in spec.items()]
    lines.append("profiles shipped: " + ", ".join(available_profiles()))
    return "\n".join(lines)
