"""`turbtl config`: show a preset or a config file fully resolved, or the schema of every field."""
from __future__ import annotations

import json

from ..config import describe_schema
from .common import add_config_options, config_from_args


def run(args) -> int:
    if args.schema:
        print(describe_schema())
        return 0
    cfg = config_from_args(args)
    print(json.dumps(cfg.to_dict(), indent=2, sort_keys=False))
    return 0


def register(sub):
    p = sub.add_parser("config", help="print the resolved configuration (validated) or the schema",
                       description="Validate a preset or --config file and print every field with its "
                       "value; --schema lists the fields, defaults and meanings.")
    add_config_options(p)
    p.add_argument("--schema", action="store_true", help="list every field with its default and meaning")
    p.set_defaults(func=run)
