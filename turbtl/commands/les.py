"""`turbtl les`: online (a posteriori) LES with every closure, judged against the filtered DNS.

    turbtl les --preset small
    turbtl les --preset small --closures smag,dsmag,cnn:base,cnn:01000 --systems base,high_re

Closures: none, smag, leith, dsmag, dleith, cnn:base (RUN/models/base), cnn:<mask> (the TL network of
the simulated system, first transfer fraction and seed), cnn:<target>/<mask>,
cnn:<target>/f<fraction>_s<seed>/<mask>. `none` is always run: the skill scores are relative to it.

Writes RUN/les/<system>.zarr (LES snapshots, time series, spectra, PDFs per closure, the FDNS they are
compared with, provenance), RUN/les/<system>_metrics.csv and RUN/figures/les_<system>_*.png.
A finished system is kept unless --force.
"""
from __future__ import annotations

import argparse
import time

from suite import layout
from suite.errors import UsageError

from .common import add_config_options, add_resource_options, check_resources, config_from_args, csv_list, need_complete, run_dir_from_args


def run(args) -> int:
    from suite.les import prepare, run_les
    from suite.rundir import record_stage, run_lock

    overrides = {}
    for opt, key in ((args.systems, "systems"), (args.closures, "closures")):
        if opt is not None:
            if not csv_list(opt):
                raise UsageError(f"--{key} = {opt!r}: give one or more names, comma-separated", field=key)
            overrides[key] = csv_list(opt)
    cfg = config_from_args(args, {"les": overrides} if overrides else None)  # validated
    run_dir = run_dir_from_args(args, cfg)
    prepare(cfg, run_dir)  # closures, networks and stores checked before anything is written
    for s in cfg.les.systems:  # a DNS stopped early has nothing to compare with: exit 2, nothing written
        need_complete(layout.fdns_store(run_dir, s), {"test": 1}, "`turbtl les`")
    check_resources(args, cfg, "les", run_dir)
    t0 = time.perf_counter()
    with run_lock(run_dir, "les", cfg=cfg):
        results = run_les(cfg, run_dir, force=args.force, progress=not args.no_progress)
    record_stage(run_dir, "les", time.perf_counter() - t0, "; ".join(r.summary() for r in results), fresh=args.force,
                 systems=[r.system for r in results])
    return 0


def register(sub):
    p = sub.add_parser("les", help="online LES with physics and CNN closures vs the filtered DNS -> RUN/les/",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p)
    p.add_argument("--systems", metavar="A,B", default=None,
                   help="comma-separated systems (default: les.systems of the configuration)")
    p.add_argument("--closures", metavar="C1,C2", default=None,
                   help="comma-separated closures (default: les.closures), e.g. smag,dsmag,cnn:base,cnn:01000")
    p.add_argument("--force", action="store_true", help="redo systems whose LES store exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_resource_options(p)
    p.set_defaults(func=run)
