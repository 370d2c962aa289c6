"""Options and helpers shared by the stage subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from suite.config import Config, available_presets, load_config
from suite.errors import DataError
from suite.resources import ResourceError, check, local_processes
from suite.rundir import check_run_dir, is_busy


def add_config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--preset", choices=available_presets(), default=None,
                   help="named preset (default: small, or the one a --config file extends)")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file; may start from a preset with `extends = \"small\"` and override any field")
    g.add_argument("--run-dir", metavar="DIR", default=None, help="run folder (default: runs/<preset>)")


def add_resource_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ignore-resources", action="store_true",
                   help="run even when the estimated memory or disk exceeds what this machine has "
                   "(see `turbtl config --estimate`)")


def config_from_args(args, overrides: dict | None = None) -> Config:
    return load_config(preset=args.preset, config_file=args.config, overrides=overrides)


def run_dir_from_args(args, cfg: Config, *, create: bool = True) -> Path:
    """The run folder of a stage, checked (a file, not writable, another configuration's: exit 2)."""
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.preset
    return check_run_dir(run_dir, cfg, create=create)


def check_resources(args, cfg: Config, stage: str, run_dir: Path, comm=None, **kw) -> None:
    """Refuse (exit 2) a stage whose estimated memory or disk exceeds this machine, unless
    --ignore-resources. Under MPI rank 0 decides and every rank raises the same error."""
    if getattr(args, "ignore_resources", False):
        return
    size = comm.Get_size() if comm is not None else 1
    err = None
    if comm is None or comm.Get_rank() == 0:
        try:
            check(cfg, stage, run_dir, processes=local_processes(size), **kw)
        except ResourceError as e:
            err = e
    if comm is not None and size > 1:
        err = comm.bcast(err, root=0)
    if err is not None:
        raise err


def need(path: Path, stage: str, what: str) -> None:
    """DataError (exit 2) unless ``path`` exists: ``what`` is missing, run ``stage`` first."""
    if not path.exists():
        raise DataError(f"{path}: {what} not found; run `turbtl {stage}` first", field="run-dir")


def need_complete(store: Path, splits: dict[str, int], then: str) -> None:
    """DataError (exit 2) unless the FDNS store exists and each split has at least the given number of
    members with a complete snapshot (a DNS that was stopped early): run `turbtl dns` first."""
    need(store, "dns", "FDNS store")
    if is_busy(store.parent.parent):  # a DNS still writing it: the lock says so (exit 2), not "stopped early"
        return
    from suite.fdns import completed, stored_splits  # lazy: suite.fdns imports xarray, dask and zarr
    done = completed(store)
    labels = stored_splits(store)
    for split, n in splits.items():
        have = int(done[labels == split].any(axis=1).sum())
        if have < n:
            raise DataError(f"{store}: the {split!r} split has {have} member(s) with complete snapshots, {then} "
                            f"needs {n}: the DNS stopped early; run `turbtl dns` first (it continues)",
                            field="store")


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
