"""One module per `turbtl` subcommand. Each defines ``register(subparsers)``; the parser it adds
sets ``func(args) -> int``. `suite.cli` imports the ones listed in ``COMMANDS`` that exist."""

from ..stages import PIPELINE

COMMANDS = ["info", "config", *PIPELINE, "run", "jobs", "bench"]
