"""The one blow-up check of every driver: which members are non-finite or too fast, at what step.

:func:`check` looks at a (batch of) spectral vorticity field(s) and returns a :class:`Health`:
per member, whether every mode is finite and the CFL number ``(max|u| + max|v|) dt / dx``; a
member *blew up* when it is not finite or its CFL number is not below ``cfl_max`` (NaN counts as
blown up). Used by :class:`solver.simulation.Simulation`, the ensemble driver
(:mod:`solver.ensemble`) and the LES loop, which drops the members that blew up and goes on.

    >>> h = check(grid, state.omega_hat, stepper.dt, cfl_max=2.0, step=state.step, t=state.t)
    >>> if not h.ok:
    ...     raise SimulationBlowUp(h.message())

Collective over the ranks of ``grid.backend`` (two or three global reductions: one for the
finiteness, two inside the CFL number), so every rank of a slab-decomposed member gets the same
verdict; a driver running several groups agrees on it over the world
(:func:`solver.parallel.agree_or_raise`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import diagnostics

__all__ = ["Health", "check"]


@dataclass(frozen=True)
class Health:
    """The verdict of one :func:`check` on a batch of members (an unbatched field: one member).

    ``finite``, ``cfl``: numpy arrays, one entry per member (batch order); ``names``: the members'
    global numbers for the message, or None when the message names no member (a single field)."""

    step: int
    t: float
    dt: float
    cfl_max: float
    finite: np.ndarray
    cfl: np.ndarray
    names: tuple | None = None

    @property
    def bad(self) -> np.ndarray:
        """Boolean per member: non-finite, or a CFL number not <= ``cfl_max``."""
        with np.errstate(invalid="ignore"):
            return ~(self.finite & (self.cfl <= self.cfl_max))

    @property
    def ok(self) -> bool:
        return not bool(self.bad.any())

    @property
    def blown_up(self) -> list[int]:
        """The members that blew up: global numbers when ``names`` is given, else batch positions."""
        idx = np.flatnonzero(self.bad)
        return [int(self.names[i]) for i in idx] if self.names is not None else [int(i) for i in idx]

    @property
    def max_cfl(self) -> float:
        return float(np.max(self.cfl))

    def message(self) -> str | None:
        """``simulation blew up: ...`` naming the cause, the member(s) (with ``names``), the step
        and the time; None when every member is fine. Non-finite members take precedence."""
        if self.ok:
            return None
        where = f"at step {self.step}, t = {self.t:.6g}"
        if not self.finite.all():
            bad = [i for i in range(len(self.finite)) if not self.finite[i]]
            who = ""
            if self.names is not None:
                who = (f" in member{'s' if len(bad) > 1 else ''} "
                       f"{', '.join(str(self.names[i]) for i in bad)}")
            return f"simulation blew up: non-finite vorticity{who} {where}"
        worst = int(np.argmax(self.cfl))
        who = "" if self.names is None else f" in member {self.names[worst]}"
        return (f"simulation blew up: CFL = {self.cfl[worst]:.3g} > cfl_max = {self.cfl_max:g}{who} "
                f"{where} (dt = {self.dt:g})")


def check(grid, omega_hat, dt: float, *, cfl_max: float, step: int = 0, t: float = 0.0,
          names=None) -> Health:
    """The :class:`Health` of ``omega_hat`` (local spectral block, batch dimensions leading) on
    ``grid`` with time step ``dt``. Collective over ``grid.backend``'s ranks. ``names``: the
    members' global numbers, for the message (None: the message names no member)."""
    be = grid.backend
    fin = be.xp.isfinite(omega_hat)
    fin = fin.reshape(tuple(fin.shape[:-2]) + (-1,)).all(-1)
    not_finite = np.asarray(be.to_numpy(fin), dtype=float)
    not_finite = 1.0 - not_finite
    finite = np.atleast_1d(np.asarray(be.allmax(not_finite)) == 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        cfl = np.atleast_1d(np.asarray(diagnostics.cfl(grid, omega_hat, dt), dtype=float))
    return Health(step=int(step), t=float(t), dt=float(dt), cfl_max=float(cfl_max), finite=finite, cfl=cfl,
                  names=None if names is None else tuple(int(m) for m in names))
