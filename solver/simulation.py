"""The simulation loop: step, call back, watch for blow-up, optionally adapt dt.

    >>> from solver import Grid, Parameters, Equation, make_forcing, make_stepper, random_field, Simulation
    >>> g = Grid(128)
    >>> eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    >>> sim = Simulation(eq, make_stepper("ab2cn", eq, dt=2e-3), random_field(g, kp=10, seed=0))
    >>> sim.run(t_end=1.0, callbacks=[(100, lambda s: print(s.t, s.energy()))])

Every ``check_every`` steps the loop checks (:func:`solver.health.check`, a few global
reductions) that the field is finite and that the CFL number is below ``cfl_max``; otherwise it
raises :class:`solver.errors.SimulationBlowUp` naming the step and the time.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

from tqdm import tqdm

from .errors import ParameterError, SimulationBlowUp

from . import diagnostics, health
from .stepping import State, Stepper


class Simulation:
    """An equation, a stepper and a state, advanced together.

    ``omega_hat``: the initial spectral field (or pass ``state=`` to continue a restored one).
    ``adaptive``: adjust dt at each check towards ``cfl_target`` (only when the CFL number leaves
    [0.7, 1.2] × target, within [dt_min, dt_max]).
    """

    def __init__(self, equation, stepper: Stepper, omega_hat=None, *, state: State | None = None,
                 t0: float = 0.0, check_every: int = 50, cfl_max: float = 2.0, adaptive: bool = False,
                 cfl_target: float = 0.5, dt_min: float = 0.0, dt_max: float = math.inf):
        if (omega_hat is None) == (state is None):
            raise ValueError("give exactly one of omega_hat and state")
        if not (isinstance(check_every, int) and check_every >= 1):
            raise ParameterError(f"check_every = {check_every!r}: must be an integer >= 1", name="check_every")
        if not cfl_max > 0:
            raise ParameterError(f"cfl_max = {cfl_max!r}: must be > 0", name="cfl_max")
        self.equation, self.stepper, self.grid = equation, stepper, equation.grid
        self.state = state if state is not None else stepper.init_state(omega_hat, t=t0)
        self.check_every, self.cfl_max = check_every, cfl_max
        self.adaptive, self.cfl_target, self.dt_min, self.dt_max = adaptive, cfl_target, dt_min, dt_max
        self.last_cfl = float("nan")

    # convenient views
    @property
    def t(self) -> float:
        return self.state.t

    @property
    def step_count(self) -> int:
        return self.state.step

    @property
    def omega_hat(self):
        return self.state.omega_hat

    def omega(self):
        """Physical vorticity (backend array, local rows)."""
        return self.grid.backend.irfft2(self.state.omega_hat)

    def energy(self):
        return diagnostics.energy(self.grid, self.state.omega_hat)

    def enstrophy(self):
        return diagnostics.enstrophy(self.grid, self.state.omega_hat)

    def cfl(self):
        return diagnostics.cfl(self.grid, self.state.omega_hat, self.stepper.dt)

    def check(self) -> float:
        """Raise SimulationBlowUp on NaN/inf or CFL > cfl_max (:func:`solver.health.check`); adapt dt
        if asked. Returns the CFL number (the largest over the batch)."""
        st = self.state
        h = health.check(self.grid, st.omega_hat, self.stepper.dt, cfl_max=self.cfl_max, step=st.step, t=st.t)
        if not h.finite.all():
            raise SimulationBlowUp(h.message())
        c = h.max_cfl
        self.last_cfl = c
        if not h.ok:
            raise SimulationBlowUp(h.message())
        if self.adaptive and c > 0 and not (0.7 * self.cfl_target <= c <= 1.2 * self.cfl_target):
            dt = min(max(self.stepper.dt * self.cfl_target / c, self.dt_min), self.dt_max)
            self.stepper.set_dt(dt)
        return c

    def run(self, t_end: float | None = None, steps: int | None = None,
            callbacks: Iterable[tuple[int, Callable]] = (), progress: bool = False) -> "Simulation":
        """Advance ``steps`` steps, or until ``t_end`` (the last step is shortened to land on it).

        ``callbacks``: (every, fn) pairs; ``fn(sim)`` is called after every ``every``-th step
        (counted by the state's step number). ``progress``: a tqdm bar (root rank only)."""
        if (t_end is None) == (steps is None):
            raise ValueError("give exactly one of t_end and steps")
        callbacks = list(callbacks)
        bar = None
        if progress and self.grid.backend.is_root:
            bar = tqdm(total=steps if steps is not None else t_end - self.t, unit="step" if steps else "t",
                       leave=False)
        done = 0
        try:
            while True:
                if steps is not None and done >= steps:
                    break
                if t_end is not None:
                    left = t_end - self.t
                    if left <= 1e-12 * max(1.0, abs(t_end)):
                        break
                    if left < self.stepper.dt * (1 - 1e-12):
                        keep = self.stepper.dt
                        self.stepper.set_dt(left)
                        self._one()
                        self.stepper.set_dt(keep)
                        done += 1
                        if bar is not None:
                            bar.update(left)
                        continue
                t_before = self.t
                self._one()
                done += 1
                if bar is not None:
                    bar.update(1 if steps is not None else self.t - t_before)
                for every, fn in callbacks:
                    if self.state.step % every == 0:
                        fn(self)
        finally:
            if bar is not None:
                bar.close()
        return self

    def _one(self):
        self.stepper(self.state)
        if self.state.step % self.check_every == 0:
            self.check()
