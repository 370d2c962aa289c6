"""One module per `turbtl` subcommand. Each defines ``register(subparsers)``; the parser it adds
sets ``func(args) -> int``. `turbtl.cli` imports the ones listed in ``COMMANDS`` that exist."""

from suite.stages import PIPELINE

COMMANDS = ["info", "config", *PIPELINE, "run", "jobs", "bench"]
