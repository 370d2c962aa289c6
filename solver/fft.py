"""Deprecated import path: the FFT backends live in :mod:`solver.backends` (docs/architecture.md).

Re-exports only (no code): kept while ``solver/sgs.py``, ``suite/les.py`` and
``suite/commands/info.py`` still import from here; delete it once they import
``solver.backends``.
"""
from .backends import describe_default_backend, make_backend

__all__ = ["make_backend", "describe_default_backend"]
