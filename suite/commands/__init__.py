"""One module per `turbtl` subcommand. Each defines ``register(subparsers)``; the parser it adds
sets ``func(args) -> int``. `suite.cli` imports the ones listed in ``COMMANDS`` that exist."""

COMMANDS = ["info", "config", "dns", "train", "transfer", "analyze", "les", "report", "run", "jobs", "bench"]
