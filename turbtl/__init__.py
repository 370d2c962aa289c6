"""turbtl — the application on top: the `turbtl` command line (``turbtl/cli.py``), one module per
subcommand (``turbtl/commands/``), the HTML report (``turbtl/report.py``, ``turbtl/browser.py``).

It is the only package that may import every other one (``suite``, ``analysis``, ``jobs``,
``solver``); none of them imports it (docs/architecture.md, tests/test_architecture.py)."""

from suite import __version__

__all__ = ["__version__"]
