"""`turbtl train`: the base CNN closure on RUN/fdns/<system>.zarr -> RUN/models/base/.

Single process:   turbtl train --preset small
DDP, 2 processes: turbtl train --preset small --nproc 2
                  (re-launches itself as `python -m torch.distributed.run --standalone
                  --nproc_per_node 2 -m turbtl.cli train ...`; equivalent to calling torchrun yourself)
SLURM / MPI:      srun turbtl train ...  or  mpiexec -n N turbtl train ...  (rank and world size
                  from the environment; set MASTER_ADDR/MASTER_PORT across nodes)

The global batch (train.batch_size) is the same for any number of processes. A checkpoint is
written after every epoch; after a kill, `--resume` continues it. A finished base model is kept
unless --force.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from suite import layout
from suite.errors import UsageError

from .common import add_config_options, add_resource_options, check_resources, config_from_args, need_complete, run_dir_from_args


def _relaunch(args) -> int:
    out = ["train", "--device", args.device]
    for opt in ("preset", "config", "run_dir", "system"):
        if getattr(args, opt):
            out += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    out += [f"--{flag.replace('_', '-')}" for flag in ("resume", "force", "ignore_resources") if getattr(args, flag)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
           "-m", "turbtl.cli"] + out
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    return subprocess.call(cmd, env=env)


def run(args) -> int:
    from suite import ddp as D
    from suite.rundir import record_stage, run_lock
    from suite.train import base_paths, train_base

    cfg = config_from_args(args)  # validate before anything else
    system = args.system or cfg.train.system
    cfg.system(system)
    if args.nproc < 1:
        raise UsageError(f"--nproc = {args.nproc}: must be >= 1", field="nproc")
    if args.nproc > 1 and D.detect()[1] == 1:
        return _relaunch(args)
    run_dir = run_dir_from_args(args, cfg)
    store = layout.fdns_store(run_dir, system)
    from suite.fdns import read_attrs
    read_attrs(store)  # missing / foreign store: exit 2 before anything is written
    # a DNS stopped early: every split must have a complete member (exit 2, nothing written)
    need_complete(store, {"train": 1, "test": 1}, "`turbtl train`")
    check_resources(args, cfg, "train", run_dir)
    paths = base_paths(run_dir)
    env = D.setup(args.device)
    try:
        with run_lock(run_dir, "train", comm=D.TorchComm(env), cfg=cfg):
            if paths["model"].exists() and not args.force:
                from suite.model import load_model
                load_model(paths["dir"])  # a damaged model.pt is reported (DataError), not kept as done
                if env.is_root:
                    print(f"turbtl train: {paths['model']} exists (use --force to retrain)")
                return 0
            if paths["checkpoint"].exists() and not (args.resume or args.force):
                raise UsageError(f"an interrupted training left {paths['checkpoint']}: pass --resume to "
                                 "continue it or --force to start over", field="resume")
            t0 = time.perf_counter()
            # --force: the old model stays until the new one replaces it (bad data: nothing lost)
            out = train_base(cfg, run_dir, system, env=env, resume=args.resume and not args.force,
                             fresh=args.force)
            if env.is_root:
                cnn = out["models"]["cnn"]
                summary = (f"base CNN on {system}: test CC {cnn['cc']:.3f} (backscatter {cnn['cc_backscatter']:.3f}, "
                           f"diffusion {cnn['cc_diffusion']:.3f}), {out['performance']['samples_per_s']:.1f} "
                           f"samples/s on {env.world} process(es) -> {paths['dir']}")
                record_stage(run_dir, "train", time.perf_counter() - t0, summary, fresh=args.force)
                print(summary)
    finally:
        D.teardown(env)
    return 0


def register(sub):
    p = sub.add_parser("train", help="train the base CNN closure (DDP) and evaluate it against physics closures",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    add_config_options(p)
    p.add_argument("--system", default=None, help="system to train on (default: train.system of the config)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from its checkpoint")
    p.add_argument("--force", action="store_true", help="retrain even if RUN/models/base/ exists")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--nproc", type=int, default=1, help="DDP processes to launch on this machine (torchrun)")
    add_resource_options(p)
    p.set_defaults(func=run)
