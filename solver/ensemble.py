"""An MPI ensemble of DNS members: decomposition, stepping, collective health checks, checkpoints.

:class:`EnsembleRun` puts the pieces together for the members that this rank's group holds
(:class:`solver.parallel.Decomposition`): one FFT backend over the group (slab-decomposed when
the group has several ranks), one grid/equation/stepper for the batch of members, initial fields
and stochastic forcing seeded per *global* member (so nothing depends on the rank count), and

- :meth:`EnsembleRun.check`: every ``check_every`` steps, one world-wide agreement
  (:func:`solver.parallel.agree_or_raise`) on NaN/inf and the CFL number: a blow-up in any member
  raises :class:`solver.errors.SimulationBlowUp` on *every* rank with the member, step, time and
  the last good checkpoint, so no rank is left waiting in a collective;
- :meth:`EnsembleRun.save` / :meth:`EnsembleRun.restore`: one checkpoint file per member in the
  serial layout (:mod:`solver.checkpoint`), written after a passed health check; a run restarts
  on any rank count.

    >>> run = EnsembleRun(MPI.COMM_WORLD, n=64, members=4, system=cfg.system("base"), dt=0.01,
    ...                   ranks_per_member=2, checkpoint_dir="runs/x/checkpoints/base")
    >>> run.restore() or run.start()
    >>> run.advance(200)
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import CheckpointError, SimulationBlowUp

from . import checkpoint as ck
from . import diagnostics
from .equation import Equation, Parameters
from .backends import make_backend
from .forcing import make_forcing
from .grid import Grid
from .initial import random_field
from .parallel import Decomposition, agree_or_raise, collective
from .stepping import make_stepper


class EnsembleRun:
    """The ensemble members of this rank's group, advanced together as one batch.

    ``system``: an object with the attributes of :class:`suite.config.System` (re, mu, beta,
    hyperviscosity, hyper_order, forcing, kf, eps, kp, init_energy). Numerics as in the ``[dns]``
    config section. Idle groups (more groups than members) hold nothing and only join the
    world-wide checks.
    """

    def __init__(self, comm, *, n: int, members: int, system, dt: float, L: float = 2 * math.pi,
                 ranks_per_member: int = 1, stepper: str = "ab2cn", dealias: str = "2/3",
                 jacobian: str = "advective", backend: str = "numpy", dtype: str = "float64",
                 device: str = "cpu", threads: int = 0, seed: int = 0, cfl_max: float = 2.0,
                 check_every: int = 10, checkpoint_dir=None, meta: dict | None = None):
        self.world = comm
        self.decomp = Decomposition(comm, members, ranks_per_member)
        self.decomp.check_grid(n)
        self.members = self.decomp.members
        self.n, self.dt, self.cfl_max, self.check_every = n, float(dt), float(cfl_max), int(check_every)
        self.system, self.seed = system, int(seed)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.last_checkpoint: tuple[Path, int] | None = None
        self.meta = dict(meta or {})
        self.state = None
        self.grid = self.equation = self.stepper = None
        if self.decomp.idle:
            return
        nm, first = len(self.members), self.members.start
        be = make_backend(n, backend=backend, dtype=dtype, device=device, threads=threads,
                          comm=self.decomp.group_comm)
        self.grid = Grid(n, L, backend=be)
        forcing = make_forcing(self.grid, system.forcing, kf=system.kf, eps=getattr(system, "eps", 0.0),
                               seed=self.seed, members=nm, member_offset=first)
        self.equation = Equation(self.grid, Parameters.from_system(system), forcing=forcing,
                                 dealias=dealias, jacobian=jacobian)
        self.stepper = make_stepper(stepper, self.equation, dt)

    # -- state --------------------------------------------------------------------------------
    @property
    def backend(self):
        return None if self.grid is None else self.grid.backend

    @property
    def step(self) -> int:
        return self._agreed("step")

    @property
    def t(self) -> float:
        return self._agreed("t")

    def _agreed(self, name):
        local = None if self.state is None else getattr(self.state, name)
        if self.world is None:
            return local
        vals = {v for v in self.world.allgather(local) if v is not None}
        if len(vals) != 1:
            raise RuntimeError(f"ranks disagree on {name}: {sorted(vals)}")
        return vals.pop()

    def start(self, omega_hat=None) -> "EnsembleRun":
        """Start from the seeded random initial field (``system.kp``, ``system.init_energy``;
        member m uses generator child m of ``seed``) or from ``omega_hat`` (local block, batched)."""
        if self.decomp.idle:
            return self
        if omega_hat is None:
            if getattr(self.system, "init", "random") == "zero":
                omega_hat = self.backend.zeros_spectral((len(self.members),))
            else:
                omega_hat = random_field(self.grid, kp=self.system.kp, energy=self.system.init_energy,
                                         seed=self.seed, members=len(self.members),
                                         member_offset=self.members.start)
        self.state = self.stepper.init_state(omega_hat)
        return self

    def gather_omega_hat(self):
        """The members' global spectral vorticity (numpy, (members_local, n, n//2+1)) on the group
        root; None on the other ranks and on idle groups. Collective over the group."""
        if self.decomp.idle:
            return None
        return self.backend.gather_spectral(self.state.omega_hat)

    # -- health -------------------------------------------------------------------------------
    def check(self) -> None:
        """World-collective: raise SimulationBlowUp on every rank if any member has a non-finite
        vorticity or a CFL number above ``cfl_max``."""
        problem = None
        if not self.decomp.idle:
            st, be = self.state, self.backend
            peak = be.allmax(np.asarray(be.to_numpy(be.xp.abs(st.omega_hat)).max(axis=(-2, -1)), dtype=float))
            bad = [m for m, p in zip(self.members, np.atleast_1d(peak)) if not np.isfinite(p)]
            if bad:
                problem = (f"simulation blew up: non-finite vorticity in member{'s' if len(bad) > 1 else ''} "
                           f"{', '.join(map(str, bad))} at step {st.step}, t = {st.t:.6g}")
            else:
                c = np.atleast_1d(diagnostics.cfl(self.grid, st.omega_hat, self.stepper.dt))
                worst = int(np.argmax(c))
                if not c[worst] <= self.cfl_max:
                    problem = (f"simulation blew up: CFL = {c[worst]:.3g} > cfl_max = {self.cfl_max:g} "
                               f"in member {self.members[worst]} at step {st.step}, t = {st.t:.6g} "
                               f"(dt = {self.stepper.dt:g})")
            if problem:
                problem += "; " + self._last_good()
        agree_or_raise(self.world, problem, exc=SimulationBlowUp)

    def _last_good(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint written yet: restart from the beginning with a smaller dt"
        path, step = self.last_checkpoint
        return (f"last good checkpoint: {path} (step {step}); restart from it with a smaller dt")

    # -- stepping -----------------------------------------------------------------------------
    def advance(self, steps: int, checkpoint_every: int = 0, progress: bool = False) -> "EnsembleRun":
        """``steps`` steps of every member; a health check every ``check_every`` steps and, with
        ``checkpoint_every`` > 0, a checkpoint every so many steps (after its check)."""
        bar = None
        root = self.world is None or self.world.Get_rank() == 0
        if progress and root:
            bar = tqdm(total=steps, unit="step", leave=False)
        try:
            for _ in range(steps):
                if not self.decomp.idle:
                    self.stepper(self.state)
                self._count = getattr(self, "_count", 0) + 1
                step = self._count if self.state is None else self.state.step
                ck_now = checkpoint_every and step % checkpoint_every == 0
                if step % self.check_every == 0 or ck_now:
                    self.check()
                if ck_now:
                    self.save()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, directory=None) -> Path:
        """Write every member's checkpoint (collective over the world); returns the folder."""
        directory = Path(directory or self.checkpoint_dir)
        step = None
        if not self.decomp.idle:
            arrays, scalars = self.state.export(self.backend)
            meta = dict(self.meta, **scalars, system=_system_dict(self.system), seed=self.seed,
                        dtype=self.backend.dtype_name)
            ck.save_members(directory, self.backend, self.members, arrays, meta)
            step = self.state.step
        if self.world is not None:  # every member's file is in place before anyone reports it
            step = max(s for s in self.world.allgather(step) if s is not None)
        self.last_checkpoint = (directory, step)
        return directory

    def restore(self, directory=None) -> bool:
        """Continue from the checkpoints in ``directory`` (default: ``checkpoint_dir``) if every
        member has one; returns False (nothing changed) when none exist. A damaged or foreign file
        raises CheckpointError on every rank. Collective over the world."""
        directory = Path(directory or self.checkpoint_dir)
        present = [m for m in range(self.decomp.n_members) if ck.member_path(directory, m).is_file()]
        if self.world is not None:
            present = self.world.bcast(present, root=0)
        if not present:
            return False
        if len(present) < self.decomp.n_members:
            missing = sorted(set(range(self.decomp.n_members)) - set(present))
            raise collective(CheckpointError(f"checkpoint folder {directory} is incomplete: no file for member(s) "
                            f"{', '.join(map(str, missing[:10]))}: restore the missing files, or delete the "
                            "folder to start the run afresh", name="checkpoint"))
        error = None
        if not self.decomp.idle:
            try:
                arrays, metas = ck.load_members(directory, self.backend, self.members)
                steps = {(m["step"], m["t"]) for m in metas}
                if len(steps) != 1:
                    raise CheckpointError(f"checkpoints in {directory} are at different steps {sorted(steps)}: "
                                       "restart from a complete checkpoint folder", name="checkpoint")
                self.state = self.stepper.restore(arrays, metas[0])
            except CheckpointError as e:
                error = e
        if self.world is not None:
            errors = [e for e in self.world.allgather(error) if e is not None]
            error = errors[0] if errors else None
        if error is not None:
            raise collective(error)
        self.last_checkpoint = (directory, self.step)
        self._count = self.step
        return True


def _system_dict(system) -> dict:
    if hasattr(system, "to_dict"):
        return system.to_dict()
    return {k: v for k, v in vars(system).items() if not k.startswith("_")}
