"""`turbtl analyze`: Fourier analysis of the whole transfer-learning sweep with Dask.

Reads DIR/models (base and every TL network), DIR/fdns (data) and DIR/sweep (results); writes
DIR/analysis/*.zarr, DIR/figures/*.png and DIR/analysis/summary.json. Finished networks are
skipped on a re-run; --force recomputes everything.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from suite import layout
from suite.errors import DataError, UsageError

from .common import add_config_options, add_resource_options, check_resources, config_from_args, need, run_dir_from_args


def _check_inputs(run_dir: Path, cfg) -> None:
    """Everything the analysis reads must exist before anything is written."""
    from analysis.aggregate import find_networks
    from suite.model import load_model
    for s in [cfg.train.system] + list(cfg.transfer.targets):
        p = layout.fdns_store(run_dir, s)
        if not p.exists():
            raise DataError(f"{p}: FDNS store of system {s!r} not found (run `turbtl dns` first)", field="store")
        from suite.fdns import read_attrs
        read_attrs(p)
    need(layout.base_model_dir(run_dir) / "model.pt", "train", "the base network")
    load_model(layout.base_model_dir(run_dir))  # DataError if damaged
    for t in cfg.transfer.targets:  # nothing to analyze before the sweep has networks
        if not find_networks(run_dir, t):
            raise DataError(f"{run_dir / 'models' / 'tl' / t}: no transfer-learned network of target {t!r}; run "
                            "`turbtl transfer` first", field="run-dir")


def _finished(run_dir: Path, targets) -> bool:
    """A recorded analysis whose sweep stores hold every network of the sweep as it stands now."""
    from analysis.aggregate import find_networks, pending_rows
    from suite.rundir import read_stage
    if read_stage(run_dir, "analyze") is None or not (layout.analysis_dir(run_dir) / "summary.json").is_file():
        return False
    return all(pending_rows(layout.analysis_dir(run_dir) / f"sweep_{t}.zarr", find_networks(run_dir, t)) == []
               for t in targets)


def run(args) -> int:
    from analysis import summary
    from analysis.aggregate import analyze_sweep, find_networks, make_client
    from analysis.plots import plot_all
    from suite.provenance import provenance
    from suite.rundir import record_stage, run_lock, stage_record_path, write_json_atomic

    cfg = config_from_args(args)
    if args.scheduler_address and args.scheduler_file:
        raise UsageError("--scheduler-address and --scheduler-file: give at most one", field="scheduler")
    if args.scheduler_file and not Path(args.scheduler_file).is_file():
        raise UsageError(f"--scheduler-file = {args.scheduler_file!r}: file not found", field="scheduler-file")
    run_dir = run_dir_from_args(args, cfg)
    _check_inputs(run_dir, cfg)
    check_resources(args, cfg, "analyze", run_dir)
    targets = list(cfg.transfer.targets)
    t0 = time.perf_counter()
    with run_lock(run_dir, "analyze", cfg=cfg):
        if not args.force and _finished(run_dir, targets):
            print(f"turbtl analyze: {run_dir / 'analysis'} is complete for every network (use --force to redo)")
            return 0
        # the stage record marks a finished analysis (the report shows the analysis only then)
        stage_record_path(run_dir, "analyze").unlink(missing_ok=True)
        client, cluster = make_client(cfg.analyze.workers, args.scheduler_address, args.scheduler_file)
        try:
            info = analyze_sweep(run_dir, targets, cfg.train.system, client, percentile=cfg.analyze.percentile,
                                 activation_samples=cfg.analyze.activation_samples, force=args.force,
                                 provenance=provenance(cfg.to_dict()))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        plot_all(run_dir, targets, cfg.model.layers)
        s = summary(run_dir)
        write_json_atomic(layout.analysis_dir(run_dir) / "summary.json", s | {"provenance": provenance(cfg.to_dict())})
        best = ", ".join(f"{t}: recommend {v['recommended']} / best {v['measured_best']} "
                         f"(rho {v['spearman_rho']:.2f})" for t, v in s["targets"].items())
        line = (f"analyze: {info['networks']} networks ({info['computed']} computed, "
                f"{info['kernels']} kernels) in {time.perf_counter() - t0:.1f} s; {best}; "
                f"{len(s['figures'])} figures in {run_dir / 'figures'}")
        record_stage(run_dir, "analyze", time.perf_counter() - t0, line, fresh=args.force,
                     networks=info["networks"], computed=info["computed"])
    print(line)
    return 0


def register(sub):
    p = sub.add_parser("analyze", help="kernel/activation/data spectra of the sweep with Dask -> DIR/analysis",
                       description="Spectra of every kernel of the base and every transfer-learned network, "
                       "objective filter classes, change through TL, activation and data spectra, the "
                       "physics-guided layer recommendation vs the measured ranking, and figures. Runs on a "
                       "dask.distributed LocalCluster of analyze.workers processes, or on an existing "
                       "scheduler.")
    add_config_options(p)
    g = p.add_argument_group("dask")
    g.add_argument("--scheduler-address", metavar="ADDR", default=None,
                   help="address of a running dask scheduler (tcp://host:port)")
    g.add_argument("--scheduler-file", metavar="FILE", default=None,
                   help="scheduler file written by `dask scheduler --scheduler-file` or dask-mpi")
    p.add_argument("--force", action="store_true", help="recompute every network")
    add_resource_options(p)
    p.set_defaults(func=run)
