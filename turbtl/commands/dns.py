"""`turbtl dns`: DNS ensembles of every system -> RUN/fdns/<system>.zarr (filtered DNS: ψ̄, ω̄, Π).

Serial:    turbtl dns --preset small
MPI:       mpiexec -n 4 turbtl dns --preset small       (or srun turbtl dns ...)
           ranks form groups of dns.ranks_per_member; members are spread over the groups.

Kill it at any moment and run the same command again: it continues from the last checkpoint
(RUN/fdns/<system>.ckpt/). A finished store is kept unless --force.
"""
from __future__ import annotations

import sys
import time

from suite.errors import SimulationBlowUp, UsageError

from .common import add_config_options, add_resource_options, check_resources, config_from_args, csv_list, run_dir_from_args


def run(args) -> int:
    from suite.dns import check_run, run_dns, world_comm
    from suite.rundir import record_stage, run_lock

    overrides = {"dns": {"systems": csv_list(args.systems)}} if args.systems else None
    if args.systems is not None and not csv_list(args.systems):
        raise UsageError(f"--systems = {args.systems!r}: give one or more system names, comma-separated",
                         field="systems")
    cfg = config_from_args(args, overrides)  # validated (incl. the systems) before anything is written
    run_dir = run_dir_from_args(args, cfg)
    world = world_comm()
    check_run(cfg, world)  # rank layout vs grid and world size, before the run folder is touched
    check_resources(args, cfg, "dns", run_dir, comm=world, save_dns=args.save_dns)  # memory, disk: exit 2
    rank0 = world is None or world.Get_rank() == 0
    t0 = time.perf_counter()
    try:
        with run_lock(run_dir, "dns", comm=world, cfg=cfg):
            results = run_dns(cfg, run_dir, save_dns=args.save_dns, force=args.force, world=world,
                              progress=not args.no_progress)
    except SimulationBlowUp as e:
        if rank0:
            print(f"turbtl dns: error: {e}", file=sys.stderr)
        return 1
    if rank0:
        record_stage(run_dir, "dns", time.perf_counter() - t0, "; ".join(r.summary() for r in results), fresh=args.force,
                     systems=[r.system for r in results], **_rates(run_dir, results, args.force))
    return 0


def _rates(run_dir, results, fresh: bool) -> dict:
    """The per-system rate fields of the stage record. A store this invocation skipped (finished
    earlier) keeps the figures its own run recorded, instead of the skip's zeros."""
    from suite.rundir import read_stage

    prev = {} if fresh else (read_stage(run_dir, "dns") or {})
    fields = {"members_steps_per_s": lambda r: round(r.member_steps_per_s, 1),
              "member_steps": lambda r: r.member_steps,
              "io_fraction": lambda r: round(r.io_fraction, 4)}
    out = {}
    for key, value in fields.items():
        old = prev.get(key) or {}
        out[key] = {r.system: (old[r.system] if r.status == "skipped" and r.system in old else value(r))
                    for r in results}
    return out


def register(sub):
    p = sub.add_parser("dns", help="DNS ensembles of every system -> RUN/fdns/<system>.zarr (MPI: mpiexec -n N)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    add_config_options(p)
    p.add_argument("--systems", metavar="A,B", default=None,
                   help="comma-separated systems to run (default: dns.systems of the configuration)")
    p.add_argument("--save-dns", action="store_true",
                   help="also store the full-resolution vorticity omega_dns (member, time, y_dns, x_dns)")
    p.add_argument("--force", action="store_true", help="redo finished stores (deletes them and their checkpoints)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (summary lines only)")
    add_resource_options(p)
    p.set_defaults(func=run)
