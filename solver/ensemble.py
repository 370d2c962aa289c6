"""The ensemble driver: DNS members on one or many MPI ranks, built, started or restored, advanced, checked.

Two layers, one job (``turbtl dns``, the benchmarks and the tests all run members through them):

- :class:`MemberRunner`: the solver objects of one member (unbatched arrays) or of a batch of
  consecutive members (batched arrays) on one FFT backend, i.e. one group of ranks: grid,
  equation, seeded forcing, stepper and state. :meth:`~MemberRunner.start` (the seeded initial
  field), :meth:`~MemberRunner.restore` / :meth:`~MemberRunner.save` (one checkpoint file per
  member, :mod:`solver.checkpoint`), :meth:`~MemberRunner.advance_to` (steps to a step number
  with a health check every ``check_every`` steps), :meth:`~MemberRunner.check`
  (:func:`solver.health.check`). Collective over the group only: groups run independently.
- :class:`Ensemble`: the world. :class:`solver.parallel.Decomposition` of the ranks into groups,
  one backend per group (slab-decomposed when the group has several ranks) and either

  * one batched runner of the group's members, advanced in lockstep with the other groups:
    :meth:`Ensemble.advance`, a world-wide health agreement (:meth:`Ensemble.check`,
    :func:`solver.parallel.agree_or_raise`: a blow-up in any member raises
    :class:`solver.errors.SimulationBlowUp` on *every* rank, so none is left waiting),
    :meth:`Ensemble.save` / :meth:`Ensemble.restore` of every member (any rank count); or
  * with ``batch=False``, one unbatched runner per member at a time (:meth:`Ensemble.member`):
    a member's numbers then do not depend on how many members its group holds (``turbtl dns``).

Seeding, the one rule (:data:`SEED_RULE`): member ``m`` starts from the random field of generator
child ``m`` of ``SeedSequence(seed)``; a stochastic forcing draws member ``m``'s kicks from child
``m`` of ``SeedSequence(seed + 1)``. Global member numbers: nothing depends on the rank count or the
batching. (``turbtl dns`` derives ``seed`` from ``dns.seed`` and the system's name.)

Blow-up messages: ``[<label>: ]simulation blew up: <cause> [in member(s) M] at step S, t = T;
last good checkpoint: <path> (step K)`` or ``no checkpoint written yet (...)``, then ``; <advice>``.

    >>> ens = Ensemble(MPI.COMM_WORLD, n=64, members=4, system=cfg.system("base"), dt=0.01,
    ...                ranks_per_member=2, checkpoint_dir="runs/x/checkpoints/base")
    >>> ens.restore() or ens.start()
    >>> ens.advance(200, checkpoint_every=100)

    >>> ens = Ensemble(None, n=64, members=4, system=..., dt=0.01, seed=s, batch=False)
    >>> for m in ens.members:
    ...     run = ens.member(m)
    ...     run.restore(ckdir) or run.start()
    ...     run.advance_to(500)
"""
from __future__ import annotations

import math
from pathlib import Path

from tqdm import tqdm

from . import checkpoint as ck
from . import health
from .backends import make_backend
from .equation import Equation, Parameters
from .errors import CheckpointError, SimulationBlowUp
from .forcing import make_forcing
from .grid import Grid
from .initial import random_field
from .parallel import Decomposition, agree_or_raise, collective, local_device
from .stepping import make_stepper

__all__ = ["SEED_RULE", "MemberRunner", "Ensemble"]

SEED_RULE = ("member m: initial field from child m of SeedSequence(seed); stochastic forcing from child m "
             "of SeedSequence(seed + 1)")
ADVICE = "restart with a smaller dt or a larger cfl_max"


class MemberRunner:
    """One member (``members`` an int: unbatched arrays) or a batch of consecutive members
    (``members`` a range of global numbers: arrays with the batch as leading dimension) on
    ``backend``.

    ``system``: an object with the attributes re, mu, beta, hyperviscosity, hyper_order, forcing,
    kf, eps, kp, init_energy (and optionally init = "random" | "zero"), e.g.
    ``suite.config.System``. ``label`` starts blow-up messages (e.g. "base member 3"); ``advice``
    ends them. A batched runner's messages name the members; an unbatched one's leave that to
    ``label``."""

    def __init__(self, backend, members, *, system, dt: float, L: float = 2 * math.pi, stepper: str = "ab2cn",
                 dealias: str = "2/3", jacobian: str = "advective", seed: int = 0, cfl_max: float = 2.0,
                 check_every: int = 10, label: str | None = None, advice: str = ADVICE):
        self.batched = isinstance(members, range)
        self.members = members if self.batched else range(int(members), int(members) + 1)
        self.backend, self.system, self.seed = backend, system, int(seed)
        self.cfl_max, self.check_every = float(cfl_max), int(check_every)
        self.label, self.advice = label, advice
        nm = len(self.members) if self.batched else None
        self.grid = Grid(backend.n, L, backend=backend)
        forcing = make_forcing(self.grid, system.forcing, kf=system.kf, eps=getattr(system, "eps", 0.0),
                               seed=self.seed + 1, members=nm, member_offset=self.members.start)
        self.equation = Equation(self.grid, Parameters.from_system(system), forcing=forcing, dealias=dealias,
                                 jacobian=jacobian)
        self.stepper = make_stepper(stepper, self.equation, dt)
        self.state = None
        self.last_checkpoint: tuple[Path, int] | None = None  # (file, or folder when batched; step)

    # -- state --------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.state.step

    @property
    def t(self) -> float:
        return self.state.t

    def start(self, omega_hat=None) -> "MemberRunner":
        """Start from the seeded random initial field (``system.kp``, ``system.init_energy``;
        :data:`SEED_RULE`), from rest (``system.init == "zero"``) or from ``omega_hat`` (local block)."""
        if omega_hat is None:
            if getattr(self.system, "init", "random") == "zero":
                omega_hat = self.backend.zeros_spectral((len(self.members),) if self.batched else ())
            else:
                omega_hat = random_field(self.grid, kp=self.system.kp, energy=self.system.init_energy,
                                         seed=self.seed, members=len(self.members) if self.batched else None,
                                         member_offset=self.members.start)
        self.state = self.stepper.init_state(omega_hat)
        self.last_checkpoint = None
        return self

    # -- checkpoints --------------------------------------------------------------------------
    def _path(self, directory) -> Path:
        return Path(directory) if self.batched else ck.member_path(directory, self.members.start)

    def save(self, directory, meta: dict | None = None) -> Path:
        """Write every member's checkpoint into ``directory`` (the stepper's state, its step, time
        and dt, plus ``meta``). Collective over the group; returns the file (folder when batched)."""
        arrays, scalars = self.state.export(self.backend)
        if not self.batched:
            arrays = {k: v[None] for k, v in arrays.items()}
        ck.save_members(directory, self.backend, self.members, arrays, dict(meta or {}, **scalars))
        self.last_checkpoint = (self._path(directory), self.state.step)
        return self.last_checkpoint[0]

    def restore(self, directory, *, require: dict | None = None) -> dict | None:
        """Continue from the members' checkpoints in ``directory``: returns the (first) member's
        meta, or None (nothing changed) when a member has no file or its meta differs from
        ``require`` (e.g. ``{"fingerprint": ...}``). A damaged file, or members at different steps,
        raises CheckpointError on every rank of the group. Collective over the group."""
        usable = self._peek(directory, require) if self.backend.is_root else None
        comm = self.backend.comm
        if comm is not None and comm.Get_size() > 1:
            usable = comm.bcast(usable, root=0)
        if isinstance(usable, CheckpointError):
            raise usable
        if not usable:
            return None
        arrays, metas = ck.load_members(directory, self.backend, self.members)
        steps = {(m["step"], m["t"]) for m in metas}
        if len(steps) != 1:
            raise CheckpointError(f"checkpoints in {directory} are at different steps {sorted(steps)}: "
                                  "restart from a complete checkpoint folder", name="checkpoint")
        if not self.batched:
            arrays = {k: v[0] for k, v in arrays.items()}
        self.state = self.stepper.restore(arrays, metas[0])
        self.last_checkpoint = (self._path(directory), self.state.step)
        return metas[0]

    def _peek(self, directory, require):
        """True when every member has a checkpoint whose meta matches ``require``; False when not;
        the CheckpointError of a damaged file."""
        try:
            for m in self.members:
                meta = ck.peek_meta(ck.member_path(directory, m))
                if meta is None or any(meta.get(k) != v for k, v in (require or {}).items()):
                    return False
        except CheckpointError as e:
            return e
        return True

    # -- health and stepping ------------------------------------------------------------------
    def check(self) -> health.Health:
        """The members' :class:`solver.health.Health` now. Collective over the group."""
        st = self.state
        return health.check(self.grid, st.omega_hat, self.stepper.dt, cfl_max=self.cfl_max, step=st.step,
                            t=st.t, names=self.members if self.batched else None)

    def problem(self) -> str | None:
        """The blow-up message (label, cause, members, step, time, last good checkpoint, advice),
        or None when every member is healthy. Collective over the group."""
        msg = self.check().message()
        if msg is None:
            return None
        return f"{self.label + ': ' if self.label else ''}{msg}; {self.last_good()}; {self.advice}"

    def last_good(self) -> str:
        if self.last_checkpoint is None:
            return ("no checkpoint written yet (the members start from their initial conditions)" if self.batched
                    else "no checkpoint written yet (the member starts from its initial condition)")
        path, step = self.last_checkpoint
        return f"last good checkpoint: {path} (step {step})"

    def advance_to(self, step: int) -> "MemberRunner":
        """Step until the step number is ``step``, checking the health whenever the step number is
        a multiple of ``check_every``: SimulationBlowUp (:meth:`problem`) on every rank of the group."""
        if self.state.step > step:
            raise RuntimeError(f"{self.label or 'ensemble'}: state at step {self.state.step} is past step {step} "
                               "(inconsistent checkpoint)")
        while self.state.step < step:
            self.stepper(self.state)
            if self.state.step % self.check_every == 0:
                problem = self.problem()
                if problem:
                    raise SimulationBlowUp(problem)
        return self


class Ensemble:
    """The members of an ensemble spread over the ranks of ``comm`` (None: serial).

    Numerics as in the ``[dns]`` config section; ``system`` as for :class:`MemberRunner`;
    ``device``: for the torch backend, resolved per rank by :func:`solver.parallel.local_device`.
    ``batch``: True, one batched runner of this group's members (:meth:`start`, :meth:`advance`,
    :meth:`save`, :meth:`restore`, :meth:`check`, all world-collective); False, runners of one
    member at a time from :meth:`member`. Idle groups (more groups than members) hold nothing and
    only join the world-wide checks."""

    def __init__(self, comm, *, n: int, members: int, system, dt: float, L: float = 2 * math.pi,
                 ranks_per_member: int = 1, stepper: str = "ab2cn", dealias: str = "2/3",
                 jacobian: str = "advective", backend: str = "numpy", dtype: str = "float64",
                 device: str = "cpu", threads: int = 0, seed: int = 0, cfl_max: float = 2.0,
                 check_every: int = 10, checkpoint_dir=None, meta: dict | None = None, batch: bool = True):
        self.world = comm
        self.decomp = Decomposition(comm, members, ranks_per_member)
        self.decomp.check_grid(n)
        self.members = self.decomp.members
        self.n, self.check_every = n, int(check_every)
        self.system, self.seed = system, int(seed)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.last_checkpoint: tuple[Path, int] | None = None
        self.meta = dict(meta or {})
        self.options = dict(system=system, dt=float(dt), L=L, stepper=stepper, dealias=dealias, jacobian=jacobian,
                            seed=self.seed, cfl_max=float(cfl_max), check_every=self.check_every)
        self.backend = self.runner = None
        self._count = 0  # steps advanced (idle groups count too)
        if self.decomp.idle:
            return
        device = local_device(comm, device) if backend == "torch" else "cpu"
        self.backend = make_backend(n, backend=backend, dtype=dtype, device=device, threads=threads,
                                    comm=self.decomp.group_comm)
        if batch:
            self.runner = MemberRunner(self.backend, self.members, **self.options)

    def member(self, m: int, **kw) -> MemberRunner:
        """A runner of member ``m`` alone (unbatched) on this group's backend; ``kw`` (label,
        advice, ...) overrides the ensemble's options."""
        return MemberRunner(self.backend, m, **{**self.options, **kw})

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self):
        return None if self.runner is None else self.runner.state

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

    def start(self, omega_hat=None) -> "Ensemble":
        """Start every member (:meth:`MemberRunner.start`; ``omega_hat`` the local batched block)."""
        if self.runner is not None:
            self.runner.start(omega_hat)
        self._count = 0
        return self

    def gather_omega_hat(self):
        """The members' global spectral vorticity (numpy, (members_local, n, n//2+1)) on the group
        root; None on the other ranks and on idle groups. Collective over the group."""
        if self.runner is None:
            return None
        return self.backend.gather_spectral(self.runner.state.omega_hat)

    # -- health and stepping ------------------------------------------------------------------
    def check(self) -> None:
        """World-collective: SimulationBlowUp on every rank if any member has a non-finite
        vorticity or a CFL number above ``cfl_max`` (:meth:`MemberRunner.problem`)."""
        agree_or_raise(self.world, None if self.runner is None else self.runner.problem(), exc=SimulationBlowUp)

    def advance(self, steps: int, checkpoint_every: int = 0, progress: bool = False) -> "Ensemble":
        """``steps`` steps of every member; a world-wide :meth:`check` every ``check_every`` steps
        and, with ``checkpoint_every`` > 0, a checkpoint every so many steps (after its check)."""
        root = self.world is None or self.world.Get_rank() == 0
        bar = tqdm(total=steps, unit="step", leave=False) if progress and root else None
        try:
            for _ in range(steps):
                if self.runner is not None:
                    self.runner.stepper(self.runner.state)
                self._count += 1
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
        if self.runner is not None:
            self.runner.save(directory, dict(self.meta, system=_system_dict(self.system), seed=self.seed,
                                             dtype=self.backend.dtype_name))
            step = self.runner.state.step
        if self.world is not None:  # every member's file is in place before anyone reports it
            step = max(s for s in self.world.allgather(step) if s is not None)
        self.last_checkpoint = (directory, step)
        return directory

    def restore(self, directory=None) -> bool:
        """Continue from the checkpoints in ``directory`` (default: ``checkpoint_dir``) if every
        member has one; returns False (nothing changed) when none exist. A damaged or foreign file,
        or an incomplete folder, raises CheckpointError on every rank. Collective over the world."""
        directory = Path(directory or self.checkpoint_dir)
        present = [m for m in range(self.decomp.n_members) if ck.member_path(directory, m).is_file()]
        if self.world is not None:
            present = self.world.bcast(present, root=0)
        if not present:
            return False
        if len(present) < self.decomp.n_members:
            missing = sorted(set(range(self.decomp.n_members)) - set(present))
            raise collective(CheckpointError(f"checkpoint folder {directory} is incomplete: no file for member(s) "
                                             f"{', '.join(map(str, missing[:10]))}: restore the missing files, or "
                                             "delete the folder to start the run afresh", name="checkpoint"))
        error = None
        if self.runner is not None:
            try:
                self.runner.restore(directory)
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
