"""One module per `turbtl` subcommand. Each defines ``register(subparsers)``; the parser it adds
sets ``func(args) -> int``. `turbtl.cli` imports the ones listed in ``COMMANDS`` that exist.

A command imports the stage it runs (``suite.dns``, ``suite.train``, ``analysis``, ``jobs`` ...)
inside its ``run()``: building the parser imports every command module, and ``turbtl --help``,
``turbtl config`` or a bad argument must not load torch, Dask or xarray first."""

from suite.stages import PIPELINE

COMMANDS = ["info", "config", *PIPELINE, "run", "jobs", "bench"]
