"""The LES ensemble loop: a batch of members stepped together, snapshots and E, Z recorded, the
members that blow up dropped from the batch (the rule of :mod:`suite.les`)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from solver import diagnostics, health

CHECK_EVERY = 20


@dataclass
class Trajectory:
    """What one LES ensemble run recorded. ``omega``: (member, snapshot, n, n) physical, NaN after a
    member's blow-up; ``energy``/``enstrophy``: (member, series); ``backscatter``: (member,
    snapshot) fraction of points with Π∇²ω̄ < 0; ``blowup_time``: (member,) NaN if stable."""

    snap_steps: list
    times: np.ndarray
    omega: np.ndarray
    backscatter: np.ndarray
    series_times: np.ndarray
    energy: np.ndarray
    enstrophy: np.ndarray
    blowup_time: np.ndarray
    steps: int = 0
    wall_s: float = 0.0
    timed_steps: int = 0

    @property
    def steps_per_s(self) -> float:
        """Ensemble steps per second of the stepping alone (the first step excluded)."""
        return self.timed_steps / self.wall_s if self.wall_s > 0 else float("nan")


def _take(be, a, idx: np.ndarray):
    if be.is_torch:
        return a[be.xp.as_tensor(idx, device=a.device)]
    return np.ascontiguousarray(a[idx])


class _Ensemble:
    """The running batch of one :func:`run_ensemble`: its state, the members still alive, and
    what is recorded into the :class:`Trajectory`."""

    def __init__(self, grid, stepper, omega_hat0, traj: Trajectory, snap_pos: dict, series_every: int,
                 cfl_max: float, term):
        self.grid, self.stepper, self.traj, self.term = grid, stepper, traj, term
        self.be = grid.backend
        self.snap_pos, self.series_every, self.cfl_max = snap_pos, series_every, cfl_max
        self.state = stepper.init_state(omega_hat0)
        self.alive = np.arange(omega_hat0.shape[0])
        self.lap = self.be.asarray(-grid.host.k2)

    def check(self) -> None:
        """Drop the members that are not finite or have CFL > cfl_max, recording their time."""
        state = self.state
        bad = health.check(self.grid, state.omega_hat, self.stepper.dt, cfl_max=self.cfl_max).bad
        if bad.any():
            self.traj.blowup_time[self.alive[bad]] = state.t
            keep = np.flatnonzero(~bad)
            self.alive = self.alive[keep]
            if len(self.alive):
                state.omega_hat = _take(self.be, state.omega_hat, keep)
                state.history = {k: _take(self.be, v, keep) for k, v in state.history.items()}

    def record(self, step: int) -> None:
        """E, Z every ``series_every`` steps; ω and the backscatter fraction at the snapshot steps."""
        be, grid, traj, alive = self.be, self.grid, self.traj, self.alive
        w = self.state.omega_hat
        if step % self.series_every == 0:
            i = step // self.series_every
            traj.energy[alive, i] = diagnostics.energy(grid, w)
            traj.enstrophy[alive, i] = diagnostics.enstrophy(grid, w)
        if step in self.snap_pos:
            j = self.snap_pos[step]
            omega = be.irfft2(w)
            traj.omega[alive, j] = be.to_numpy(omega)
            if self.term is None:
                traj.backscatter[alive, j] = 0.0
            else:
                T = self.term.pi(w) * be.irfft2(w * self.lap)
                traj.backscatter[alive, j] = be.to_numpy((T < 0).double() if be.is_torch else (T < 0)).mean(axis=(-2, -1))


def run_ensemble(grid, equation, stepper, omega_hat0, n_steps: int, snap_steps, series_every: int = 1,
                 cfl_max: float = 2.0, check_every: int = CHECK_EVERY, term=None, progress: bool = False,
                 desc: str = "les") -> Trajectory:
    """Step a batch of members ``omega_hat0`` (M, n, n//2+1) for ``n_steps`` steps, recording the
    physical vorticity at the step numbers ``snap_steps`` and E, Z every ``series_every`` steps.

    A member that is non-finite or has CFL > ``cfl_max`` (checked every ``check_every`` steps and
    at every snapshot) is recorded as blown up at that time and dropped from the batch."""
    be = grid.backend
    n, M = grid.n, omega_hat0.shape[0]
    snap_steps = sorted(int(s) for s in snap_steps)
    snap_pos = {s: j for j, s in enumerate(snap_steps)}
    n_series = n_steps // series_every + 1
    traj = Trajectory(snap_steps=snap_steps, times=np.array(snap_steps) * stepper.dt,
                      omega=np.full((M, len(snap_steps), n, n), np.nan),
                      backscatter=np.full((M, len(snap_steps)), np.nan),
                      series_times=np.arange(n_series) * series_every * stepper.dt,
                      energy=np.full((M, n_series), np.nan), enstrophy=np.full((M, n_series), np.nan),
                      blowup_time=np.full(M, np.nan))
    ens = _Ensemble(grid, stepper, omega_hat0, traj, snap_pos, series_every, cfl_max, term)
    bar = tqdm(total=n_steps, desc=desc, unit="step", leave=False) if progress else None
    ens.check()
    if len(ens.alive):
        ens.record(0)
    wall = 0.0
    step = 0
    try:
        while step < n_steps and len(ens.alive):
            t0 = time.perf_counter()
            stepper(ens.state)
            be.synchronize()
            if step > 0:  # the first step builds plans and workspaces: not counted in the rate
                wall += time.perf_counter() - t0
            step += 1
            if step % check_every == 0 or step in snap_pos or step == n_steps:
                ens.check()
            if len(ens.alive):
                ens.record(step)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    traj.steps, traj.wall_s = step, wall
    traj.timed_steps = max(0, step - 1)
    return traj
