"""Options and helpers shared by the stage subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config, available_presets, load_config


def add_config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration")
    g.add_argument("--preset", choices=available_presets(), default=None,
                   help="named preset (default: small, or the one a --config file extends)")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file; may start from a preset with `extends = \"small\"` and override any field")
    g.add_argument("--run-dir", metavar="DIR", default=None, help="run folder (default: runs/<preset>)")


def config_from_args(args, overrides: dict | None = None) -> Config:
    return load_config(preset=args.preset, config_file=args.config, overrides=overrides)


def run_dir_from_args(args, cfg: Config) -> Path:
    return Path(args.run_dir) if args.run_dir else Path("runs") / cfg.preset


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
