"""`turbtl transfer`: re-train every layer-freezing subset of the base network on each target system.

    turbtl transfer --preset small                              # every subset, local workers
    turbtl transfer --preset small --subsets singles --workers 2
    turbtl transfer --preset paper --slice $SLURM_ARRAY_TASK_ID/64   # one slice of a SLURM array

Reads RUN/models/base/ and RUN/fdns/<target>.zarr. Subsets: singles, pairs, all, prefixes, suffixes
or comma-separated masks (0/1 per layer, layer 1 first). Data fractions are of the base network's
training-set size, drawn from the target's training members. The references `base` (no
re-training) and `scratch` (every layer trained from random weights on the same small data) are
added per target x fraction x seed, the `oracle` (every layer trained on the target's full
training data, from random weights or, with transfer.oracle_init = base, from the base network's) per
target x seed, and the capacity-matched `random` control of each subset
of transfer.random_control. Every run is counted in optimizer steps (transfer.steps; the oracle:
transfer.oracle_steps or the base network's), with early stopping on the target's validation data.

Slices: --slice i/n (0 <= i < n, 0-based like $SLURM_ARRAY_TASK_ID) takes a contiguous block of
the job list; the slices partition it, may run at the same time on one run folder, and fill the
same table. Every finished subset writes its model folder and then its row file; a rerun skips
finished subsets (--force redoes those of this slice). RUN/sweep/<target>/results.csv is rebuilt
from the row files at the end.
"""
from __future__ import annotations

import argparse
import time

from suite import layout
from suite.errors import UsageError

from .common import add_config_options, add_resource_options, check_resources, config_from_args, csv_list, need, run_dir_from_args


def _overrides(args) -> dict:
    t = {}
    if args.targets:
        t["targets"] = csv_list(args.targets)
    if args.subsets:
        t["subsets"] = args.subsets
    for name, conv in (("fractions", float), ("seeds", int)):
        text = getattr(args, name)
        if text:
            try:
                t[name] = [conv(v) for v in csv_list(text)]
            except ValueError:
                raise UsageError(f"--{name} = {text!r}: must be a comma-separated list of "
                                 f"{'numbers in (0, 1]' if conv is float else 'integers >= 0'}",
                                 field=f"transfer.{name}") from None
    if args.epochs is not None:
        t["epochs"] = args.epochs
    if args.steps is not None:
        t["steps"] = args.steps
    if args.workers is not None:
        t["workers"] = args.workers
    if args.no_share_prefix:
        t["share_prefix"] = False
    return {"transfer": t} if t else {}


def run(args) -> int:
    import shutil

    from suite import transfer as T
    from suite.ddp import resolve_device
    from suite.errors import DataError
    from suite.fdns import read_attrs
    from suite.masks import select
    from suite.model import load_model
    from suite.rundir import record_stage, run_lock

    cfg = config_from_args(args, _overrides(args))  # validates every value
    part = T.parse_slice(args.slice)
    run_dir = run_dir_from_args(args, cfg)
    need(layout.base_model_dir(run_dir) / "model.pt", "train", "the base network")
    base = load_model(layout.base_model_dir(run_dir))  # DataError if damaged: nothing written
    layers = base[0].n_layers
    if layers != cfg.model.layers:
        raise DataError(f"the base network in {run_dir / 'models' / 'base'} has {layers} layers, the "
                        f"configuration's model.layers = {cfg.model.layers}: retrain it or fix the config",
                        field="model.layers")
    masks = select(cfg.transfer.subsets, layers)
    t = cfg.transfer
    for target in t.targets:
        read_attrs(layout.fdns_store(run_dir, target))  # missing / foreign store: exit 2
    device = str(resolve_device(args.device))
    spec = T.SweepSpec.from_config(cfg, run_dir, device=device)
    ctx = T.Context(spec, base=base)
    for target in t.targets:  # every target can supply every fraction, before anything is written
        d = ctx.data(target)
        n_avail = len(d.snapshots("train"))
        for f in t.fractions:
            if ctx.sample_count(f) > n_avail:
                raise DataError(f"transfer.fractions contains {f}: {ctx.sample_count(f)} snapshots "
                                f"(of the base training size {ctx.n_base}) but target {target!r} has {n_avail} "
                                f"training snapshots (accepted: fractions <= {n_avail / ctx.n_base:.4g})",
                                field="transfer.fractions")
        d.snapshots("test")  # DataError if the target has no complete test snapshots
    check_resources(args, cfg, "transfer", run_dir)
    randoms = select(t.random_control, layers, field="transfer.random_control") if t.random_control.strip() else []
    every = T.plan(t.targets, masks, t.fractions, t.seeds, references=t.references, oracle=t.oracle,
                   random_masks=randoms)
    jobs = T.slice_jobs(every, part)
    where = f" (slice {part[0]}/{part[1]})" if part else ""
    with run_lock(run_dir, "transfer", shared=True, cfg=cfg):
        if args.force:
            for j in jobs:
                T.row_path(run_dir, j).unlink(missing_ok=True)
                folder = T.model_dir(run_dir, j)
                if folder is not None and folder.exists():
                    shutil.rmtree(folder)
        todo = sum(not T.is_done(run_dir, j) for j in jobs)
        print(f"turbtl transfer{where}: {len(jobs)} jobs ({len(jobs) - todo} already done) over targets "
              f"{', '.join(t.targets)}, {len(masks)} subsets x fractions {t.fractions} x seeds {t.seeds}, "
              f"{t.workers} worker(s), prefix sharing {'on' if t.share_prefix else 'off'}, device {device}",
              flush=True)
        t0 = time.perf_counter()
        T.run_sweep(spec, jobs, workers=t.workers, progress=not args.quiet, base=base)
        wall = time.perf_counter() - t0
        df = T.load_results(run_dir)
        df = df[df.target.isin(t.targets)]
        print(T.summary(df))
        tl = df[df.kind == "tl"]
        best = tl.sort_values("cc", ascending=False).iloc[0] if len(tl) else None
        line = (f"{len(df)} rows over {df.target.nunique()} target(s) in {wall:.1f} s{where}"
                + (f"; best subset {best['target']} {best['mask']} CC {best['cc']:.4f}" if best is not None else "")
                + f" -> {run_dir / 'sweep'}")
        if all(T.is_done(run_dir, j) for j in every):  # the whole sweep (every slice) is finished
            record_stage(run_dir, "transfer", wall, line, fresh=args.force)
        print(f"turbtl transfer: {line}")
    return 0


def register(sub):
    p = sub.add_parser("transfer", help="re-train every layer-freezing subset on each target -> RUN/sweep/<target>/",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(p)
    p.add_argument("--targets", default=None, help="comma-separated target systems (default: transfer.targets)")
    p.add_argument("--subsets", default=None,
                   help="singles, pairs, all, prefixes, suffixes or comma-separated 0/1 masks (layer 1 first)")
    p.add_argument("--fractions", default=None, help="comma-separated data fractions of the base training size")
    p.add_argument("--seeds", default=None, help="comma-separated repeat seeds")
    p.add_argument("--epochs", type=int, default=None, help="unused: budgets are --steps (kept for old scripts)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: transfer.steps)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: transfer.workers)")
    p.add_argument("--slice", default=None, metavar="I/N",
                   help="run slice I of N (0 <= I < N, as $SLURM_ARRAY_TASK_ID of an array 0-(N-1))")
    p.add_argument("--force", action="store_true", help="redo the finished subsets of this slice")
    p.add_argument("--no-share-prefix", action="store_true",
                   help="run every subset through the whole network (no prefix cache; for comparison)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_resource_options(p)
    p.set_defaults(func=run)
