"""`turbtl jobs`: SLURM job scripts for every stage; submit them chained, follow them, resubmit failures.

    turbtl jobs render   [--preset P | --config FILE] [--profile NAME|FILE] [--run-dir DIR]
    turbtl jobs submit   [--run-dir DIR] [--stages dns,train,...] [--after JOBID]
    turbtl jobs status   [--run-dir DIR] [--wait] [--timeout S] [--json]
    turbtl jobs resubmit [--run-dir DIR]
    turbtl jobs profiles
"""
from __future__ import annotations

import json
from pathlib import Path

from suite import layout
from suite.errors import UsageError

from .common import add_config_options, config_from_args, csv_list, run_dir_from_args


def _run_dir(args) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    return run_dir_from_args(args, config_from_args(args))


def cmd_render(args) -> int:
    from jobs.profiles import load_profile
    from jobs.render import render

    cfg = config_from_args(args)  # validated before anything is written
    profile = load_profile(args.profile)
    run_dir = run_dir_from_args(args, cfg)
    plan = render(cfg, profile, run_dir, config_file=args.config, preset=args.preset)
    jobs_dir = layout.jobs_dir(plan["run_dir"])
    for stage, info in plan["stages"].items():
        arr = f"  (array of {info['array']['tasks']}, at most {info['array']['throttle'] or 'all'} at once)" \
            if info["array"] else ""
        print(f"{stage:<9} {jobs_dir / info['script']}{arr}")
    print(f"rendered {len(plan['stages'])} job scripts for profile {profile.name} into {jobs_dir}; "
          f"`turbtl jobs submit --run-dir {plan['run_dir']}` submits {' -> '.join(plan['pipeline'])}")
    return 0


def cmd_submit(args) -> int:
    from jobs.submit import submit

    sub = submit(_run_dir(args), stages=csv_list(args.stages) if args.stages else None,
                 after=csv_list(args.after) if args.after else None)
    for rec in sub["jobs"]:
        dep = f"  after {rec['dependency']}" if rec["dependency"] else ""
        tasks = f"  tasks {rec['tasks'][0]}-{rec['tasks'][-1]}" if rec["tasks"] else ""
        print(f"{rec['stage']:<9} job {rec['job_id']}{tasks}{dep}")
    print(f"submitted {len(sub['jobs'])} jobs; recorded in {Path(sub['run_dir']) / 'jobs' / 'submitted.json'}")
    return 0


def cmd_status(args) -> int:
    from jobs.submit import failed, format_states, states, wait

    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be > 0 seconds", field="timeout")
    run_dir = _run_dir(args)
    try:
        rows = wait(run_dir, timeout=args.timeout) if args.wait else states(run_dir)
        timed_out = False
    except TimeoutError as e:
        rows, timed_out = states(run_dir), str(e)
    if args.json:
        print(json.dumps([{"stage": r.stage, "task": r.task, "job": r.key, "state": r.state.state,
                           "exit_code": r.state.exit_code, "reason": r.state.reason, "source": r.state.source,
                           "attempt": r.record["attempt"]} for r in rows], indent=2))
    else:
        print(format_states(rows))
    if timed_out:
        print(f"timed out: {timed_out}")
        return 124
    if failed(rows) or any(r.state.stuck for r in rows):
        return 1
    if args.wait and not all(r.state.ok for r in rows):
        return 1
    return 0


def cmd_resubmit(args) -> int:
    from jobs.submit import resubmit

    recs = resubmit(_run_dir(args))
    if not recs:
        print("nothing failed: nothing resubmitted")
    for rec in recs:
        tasks = f" tasks {','.join(map(str, rec['tasks']))}" if rec["tasks"] else ""
        print(f"{rec['stage']:<9} resubmitted{tasks} as job {rec['job_id']} (try {rec['attempt']}, "
              f"replaces {rec['replaces']})")
    return 0


def cmd_profiles(args) -> int:
    from jobs.profiles import describe_profiles
    print(describe_profiles())
    return 0


def register(sub):
    p = sub.add_parser("jobs", help="SLURM job scripts for every stage: render, submit, status, resubmit",
                       description="Render SLURM job scripts for every stage from a cluster profile, submit "
                       "them chained with --dependency=afterok, follow them, and resubmit failed jobs or "
                       "array tasks alone. Scripts and records live in RUN/jobs/.")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", parser_class=type(p))

    r = jsub.add_parser("render", help="write RUN/jobs/<stage>.sbatch and plan.json")
    add_config_options(r)
    r.add_argument("--profile", default="local",
                   help="cluster profile: a name in jobs/profiles/ (local, gpu-example) or a .toml path "
                   "(default: local)")
    r.set_defaults(func=cmd_render)

    s = jsub.add_parser("submit", help="submit the rendered stages chained with afterok; record job IDs")
    add_config_options(s)
    s.add_argument("--stages", default=None,
                   help="comma-separated stages (default: dns,train,transfer,analyze,report; bench on request)")
    s.add_argument("--after", default=None, metavar="JOBID[,JOBID]", help="also wait for these jobs")
    s.set_defaults(func=cmd_submit)

    t = jsub.add_parser("status", help="state of every job and array task (squeue, sacct or exit files)")
    add_config_options(t)
    t.add_argument("--wait", action="store_true", help="block until nothing is queued; exit 0 only if all completed")
    t.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most (default 3600)")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_status)

    u = jsub.add_parser("resubmit", help="resubmit failed jobs / array tasks alone, re-chain their dependents")
    add_config_options(u)
    u.set_defaults(func=cmd_resubmit)

    v = jsub.add_parser("profiles", help="the fields of a cluster profile and the shipped profiles")
    v.set_defaults(func=cmd_profiles)

    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])
