"""`turbtl run`: the whole study, stage by stage, on one machine (default: the `small` preset).

Stages: dns -> train -> transfer -> analyze -> les -> report. Each stage skips what it has already
finished, so running again after an interruption continues where it stopped; --force redoes all.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from suite import layout
from suite.errors import UsageError
from suite.stages import PIPELINE as STAGES

from .common import add_config_options, add_resource_options, config_from_args, run_dir_from_args


def _stage_argv(stage: str, args, run_dir: Path) -> list[str]:
    argv = [stage, "--run-dir", str(run_dir)]
    if args.config:
        argv += ["--config", args.config]
    if args.preset:
        argv += ["--preset", args.preset]
    if args.force and stage != "report":
        argv.append("--force")
    if args.ignore_resources and stage != "report":
        argv.append("--ignore-resources")
    return argv


def run(args) -> int:
    from ..cli import build_parser, main
    from suite.rundir import read_stage

    cfg = config_from_args(args)  # validate everything before any stage writes
    run_dir = run_dir_from_args(args, cfg)
    known = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    skip = set(args.skip.split(",")) if args.skip else set()
    bad = skip - set(STAGES)
    if bad:
        raise UsageError(f"--skip contains {sorted(bad)[0]!r}: accepted are {', '.join(STAGES)}", field="skip")
    stages = [s for s in STAGES if s in known and s not in skip]
    if args.ranks < 1:
        raise UsageError(f"--ranks = {args.ranks}: must be >= 1", field="ranks")
    if not args.ignore_resources:  # every stage's memory and disk, before the first one writes
        from suite.resources import ResourceError, check, local_processes
        for stage in stages:
            try:
                check(cfg, stage, run_dir, processes=local_processes(args.ranks) if stage == "dns" else 1)
            except ResourceError as e:
                raise ResourceError(f"{e} (stage {stage} of `turbtl run`)", field="resources") from None
    t_all = time.perf_counter()
    print(f"turbtl run: preset {cfg.preset}, stages {' -> '.join(stages)}, run folder {run_dir}", flush=True)
    for i, stage in enumerate(stages, 1):
        print(f"\n== [{i}/{len(stages)}] {stage} ==", flush=True)
        t0 = time.perf_counter()
        argv = _stage_argv(stage, args, run_dir)
        if stage == "dns" and args.ranks > 1:
            mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
            env = dict(os.environ, OMP_NUM_THREADS="1")
            rc = subprocess.call([mpiexec, "-n", str(args.ranks), sys.executable, "-m", "turbtl.cli", *argv], env=env)
        else:
            rc = main(argv)
        if rc:
            print(f"turbtl run: stage {stage} failed with exit status {rc}; fix it and run the same "
                  "command again to continue", file=sys.stderr)
            return rc
        rec = read_stage(run_dir, stage)
        line = rec["summary"] if rec else "done"
        print(f"-- {stage}: {line} [{time.perf_counter() - t0:.1f} s]", flush=True)
    print(f"\nturbtl run: all stages done in {time.perf_counter() - t_all:.1f} s")
    print(f"report: {layout.report_path(run_dir).resolve()}")
    return 0


def register(sub):
    p = sub.add_parser("run", help="the whole study end to end (dns, train, transfer, analyze, les, report)",
                       description="Run every stage in order on this machine. Finished stages are "
                       "skipped, so the same command continues an interrupted run. Ends with the path "
                       "of RUN/report.html.")
    add_config_options(p)
    p.add_argument("--force", action="store_true", help="redo every stage from scratch")
    p.add_argument("--ranks", type=int, default=min(2, os.cpu_count() or 1),
                   help="MPI ranks for the DNS stage (mpiexec; default: min(2, CPUs))")
    p.add_argument("--skip", default="", help="comma-separated stages to skip (e.g. les)")
    add_resource_options(p)
    p.set_defaults(func=run)
