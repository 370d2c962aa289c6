"""`turbtl config`: show a preset or a config file fully resolved, the schema of every field, or the
resources (memory per process, disk, core-hours) every stage will need."""
from __future__ import annotations

import json

from suite.config import describe_schema

from .common import add_config_options, config_from_args


def run(args) -> int:
    if args.schema:
        print(describe_schema())
        return 0
    cfg = config_from_args(args)
    if args.estimate:
        from suite.resources import table
        print(table(cfg, args.run_dir, save_dns=args.save_dns))
        return 0
    print(json.dumps(cfg.to_dict(), indent=2, sort_keys=False))
    return 0


def register(sub):
    p = sub.add_parser("config", help="print the resolved configuration (validated), the schema, or --estimate",
                       description="Validate a preset or --config file and print every field with its "
                       "value; --schema lists the fields, defaults and meanings; --estimate prints the "
                       "memory per process, disk and time (core-hours) of every stage.")
    add_config_options(p)
    p.add_argument("--schema", action="store_true", help="list every field with its default and meaning")
    p.add_argument("--estimate", action="store_true",
                   help="memory per process, disk and core-hours of every stage (suite/resources.py's model)")
    p.add_argument("--save-dns", action="store_true", help="with --estimate: as `turbtl dns --save-dns`")
    p.set_defaults(func=run)
