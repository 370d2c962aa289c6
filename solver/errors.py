"""The solver's own exceptions: what a caller did wrong, in the solver's own words.

``ParameterError`` names the solver parameter (``name``: ``dt``, ``dealias``, ``n``, ``L``,
``backend`` …, as in the signatures of this package; an environment variable by its name), never
a configuration field of a program built on the solver: such a program maps ``name`` to its own
field (turbtl: :data:`suite.errors.SOLVER_FIELDS`). ``CheckpointError``: a checkpoint file that is
missing, foreign, truncated or tampered with. ``SimulationBlowUp``: a run produced NaN/inf or a CFL number
far above its limit. docs/architecture.md: the solver imports nothing from the packages above it.
"""
from __future__ import annotations


class SolverError(Exception):
    """Bad input to the solver (a parameter, a file, an environment variable): the caller's to fix.

    ``name``: what was bad, in the solver's words (a parameter name, ``"checkpoint"``, an
    environment variable), or None."""

    def __init__(self, message: str, *, name: str | None = None):
        super().__init__(message)
        self.name = name


class ParameterError(SolverError, ValueError):
    """A parameter out of range, of the wrong type, or unknown; the message starts with
    ``<name> = <value>``."""


class CheckpointError(SolverError):
    """A checkpoint file or folder that is missing, foreign, incomplete, truncated or tampered with."""


class SimulationBlowUp(RuntimeError):
    """A simulation produced NaN/inf or a CFL number far above its limit."""
