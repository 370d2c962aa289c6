"""The application's errors, built on the solver's (:mod:`solver.errors`).

One error type for bad user input: the CLI turns it into one clear line and exit status 2. The
solver names its own parameters (``dt``, ``dealias``, ``n`` …); where the application calls the
solver with configuration values it maps those names to the configuration fields
(:data:`SOLVER_FIELDS`, :func:`solver_fields`), so a message names what the user wrote.
"""
from __future__ import annotations

import contextlib

from solver.errors import CheckpointError, ParameterError, SimulationBlowUp, SolverError

__all__ = ["UsageError", "ConfigError", "DataError", "SimulationBlowUp", "SOLVER_FIELDS", "from_solver",
           "solver_fields"]

#: Solver parameter name -> the configuration field the application passes to it. Names not
#: listed (``kf``, ``re``, ``seed``, environment variables …) read the same in both.
SOLVER_FIELDS = {
    "n": "grid.n_dns", "L": "grid.L",
    "dt": "dns.dt", "stepper": "dns.stepper", "dealias": "dns.dealias", "jacobian": "dns.jacobian",
    "backend": "dns.backend", "dtype": "dns.dtype", "device": "dns.device", "threads": "dns.threads",
    "members": "dns.members", "ranks_per_member": "dns.ranks_per_member", "cfl_max": "dns.cfl_max",
}


class UsageError(Exception):
    """Bad input from the user (config, CLI option, foreign or corrupt store).

    The message names the field, the value given and what is accepted. Raised *before* anything is
    written; `turbtl` prints ``error: <message>`` and exits with status 2.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class ConfigError(UsageError):
    """A configuration value out of range, of the wrong type, or unknown."""


class DataError(UsageError):
    """A store or checkpoint that is missing, foreign, of another schema, incomplete or corrupt."""


def from_solver(e: SolverError, fields: dict[str, str] | None = None) -> UsageError:
    """The application's error for a solver error: a ConfigError naming the configuration field
    (``fields`` over :data:`SOLVER_FIELDS`) for a ParameterError, a DataError for a
    CheckpointError. The message is the solver's, its leading parameter name replaced by the field;
    an MPI-collective error stays collective."""
    table = {**SOLVER_FIELDS, **(fields or {})}
    name, message = e.name, str(e)
    if isinstance(e, CheckpointError):
        out = DataError(message, field=name)
    else:
        field = table.get(name, name)
        if name and field != name and message.startswith(f"{name} "):
            message = field + message[len(name):]
        out = ConfigError(message, field=field)
    if getattr(e, "collective", False):
        out.collective = True
    return out


@contextlib.contextmanager
def solver_fields(**fields: str):
    """Run a block that calls the solver with configuration values: a solver ParameterError or
    CheckpointError leaves it as the application's ConfigError/DataError (:func:`from_solver`;
    keyword arguments override :data:`SOLVER_FIELDS`, e.g. ``n="grid.n_les"``)."""
    try:
        yield
    except (ParameterError, CheckpointError) as e:
        raise from_solver(e, fields) from e
