"""DNS ensembles of every system into filtered-DNS stores (the first stage of the study).

For each system, ``run_dns`` runs ``members_train + members_val + members_test`` independent DNS
members, discards ``spinup_time``, then every ``sample_interval`` filters and coarse-grains the
state on the fly (:class:`solver.sgs.FDNSSampler`) and stores ψ̄, ω̄, Π on the LES grid with the
DNS energy, enstrophy and energy spectrum into ``DIR/fdns/<system>.zarr`` (:mod:`suite.fdns`).

Parallelism (``mpiexec -n N`` / ``srun``): ranks form groups of ``dns.ranks_per_member``
(:class:`solver.parallel.Decomposition`); each group holds a contiguous block of members and
runs them one after the other, each slab-decomposed over the group. Rank 0 creates the store
(metadata, coordinates, attributes) before anybody writes; the root of each group writes whole
zarr chunks (1 member x ``chunk_time`` snapshots) of its own members, so no two writers share a
chunk. Members are stepped one at a time (not batched), so a member's numbers do not depend on
how many members its group holds: results do not depend on the number of groups.

Seeds: member ``m`` of system ``s`` starts from child ``m`` of ``SeedSequence(system_seed)`` with
``system_seed = SeedSequence([dns.seed, crc32(s)])`` (:func:`system_seed`); a stochastic forcing
uses ``system_seed + 1``. Independent of the rank count.

Resumable: after each chunk is written (and marked complete) the member's state is checkpointed
(:mod:`solver.checkpoint`, ``DIR/fdns/<system>.ckpt/member-<m>.npz``: spectral state, AB2
history, step, time). A killed run, started again with the same command, continues every member
from its last checkpoint and rewrites the chunks after it; with the same rank count the final
store equals an uninterrupted run's bit for bit on CPU. For that, FFTW plans are measured once per
host and shared through the wisdom cache (:mod:`solver.wisdom`), so every process uses the same
algorithms (``TURBTL_FFTW_PLANNER`` overrides the planner, e.g. ``FFTW_ESTIMATE``). A finished
store is skipped unless ``force``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .errors import DataError, SimulationBlowUp, solver_fields
from .fdns import SCHEMA_VERSION, Layout, Writer, completed, create_store, is_finished, read_attrs, split_labels
from .provenance import provenance

_PROGRESS_TAG = 7301
_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_PROCID")


# --------------------------------------------------------------------------------------------
# small pieces


def world_comm():
    """MPI.COMM_WORLD when launched by mpiexec/srun with more than one rank, else None."""
    if not any(k in os.environ for k in _MPI_ENV):
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def system_seed(seed: int, system: str) -> int:
    """The seed of a system's ensemble, derived from ``dns.seed`` and the system's name."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(system.encode())])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def store_path(run_dir, system: str) -> Path:
    return Path(run_dir) / "fdns" / f"{system}.zarr"


def checkpoint_dir(run_dir, system: str) -> Path:
    return Path(run_dir) / "fdns" / f"{system}.ckpt"


def n_members(cfg: Config) -> int:
    d = cfg.dns
    return d.members_train + d.members_val + d.members_test


def steps_per(cfg: Config, interval: float) -> int:
    return max(1, int(round(interval / cfg.dns.dt)))


def fingerprint(cfg: Config, system: str, save_dns: bool) -> str:
    """A hash of everything that determines a store's numbers (not ranks, threads, intervals of
    checkpoints): a store or checkpoint is resumed only by a run with the same fingerprint."""
    d = cfg.dns.to_dict()
    for k in ("systems", "threads", "ranks_per_member", "checkpoint_interval", "cfl_max"):
        d.pop(k, None)
    doc = {"grid": cfg.grid.to_dict(), "dns": d, "system": cfg.system(system).to_dict(), "save_dns": save_dns,
           "schema": SCHEMA_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_attrs(cfg: Config, system: str, save_dns: bool, ranks: int) -> dict:
    """The store's attributes: the system's parameters, grids, numerics, seeds and provenance."""
    s, d, g = cfg.system(system), cfg.dns, cfg.grid
    return {
        "system": system, "re": s.re, "nu": s.nu, "mu": s.mu, "beta": s.beta, "kf": s.kf, "forcing": s.forcing,
        "eps": s.eps, "init": s.init, "kp": s.kp, "init_energy": s.init_energy,
        "hyperviscosity": s.hyperviscosity, "hyper_order": s.hyper_order,
        "L": g.L, "n_dns": g.n_dns, "n_les": g.n_les, "dt": d.dt, "stepper": d.stepper, "dealias": d.dealias,
        "jacobian": d.jacobian, "backend": d.backend, "dtype": d.dtype, "filter": d.filter,
        "filter_width": cfg.filter_width, "spinup_time": d.spinup_time, "sample_interval": d.sample_interval,
        "seed": d.seed, "system_seed": system_seed(d.seed, system),
        "seed_rule": "member m: child m of SeedSequence(system_seed); system_seed = "
                     "SeedSequence([seed, crc32(system)]).generate_state(1)[0]",
        "members_train": d.members_train, "members_val": d.members_val, "members_test": d.members_test,
        "save_dns": save_dns, "fingerprint": fingerprint(cfg, system, save_dns),
        "provenance": provenance(cfg.to_dict(), system=system, stage="dns", ranks=ranks,
                                 ranks_per_member=d.ranks_per_member),
    }


def layout(cfg: Config, save_dns: bool) -> Layout:
    d, g = cfg.dns, cfg.grid
    return Layout(members=n_members(cfg), snapshots=d.snapshots, chunk_time=d.chunk_time, n_les=g.n_les,
                  n_dns=g.n_dns, L=g.L, sample_interval=d.sample_interval,
                  split=split_labels(d.members_train, d.members_val, d.members_test), save_dns=save_dns)


# --------------------------------------------------------------------------------------------
# progress over all groups, shown on rank 0


class _Progress:
    """A tqdm bar on rank 0 counting the snapshots of every group (other group roots send counts)."""

    def __init__(self, world, decomp, total: int, initial: int, desc: str, enabled: bool):
        self.world, self.decomp = world, decomp
        self.rank = 0 if world is None else world.Get_rank()
        self.reqs = []
        self.done = 0
        self.bar = None
        if self.rank == 0 and enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="snap", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def _poll(self, block_for_done: int = 0):
        # ``self.done`` counts the groups that said they finished; it must survive between calls,
        # since a group may finish (and its -1 be received here) while rank 0 is still updating.
        from mpi4py import MPI
        status = MPI.Status()
        while self.done < block_for_done or self.world.Iprobe(MPI.ANY_SOURCE, _PROGRESS_TAG, status):
            count = self.world.recv(source=MPI.ANY_SOURCE, tag=_PROGRESS_TAG)
            if count < 0:
                self.done += 1
            elif self.bar is not None:
                self.bar.update(count)

    def update(self, count: int):
        if self.world is None or self.rank == 0:
            if self.bar is not None:
                self.bar.update(count)
            if self.world is not None:
                self._poll()
        elif self.decomp.is_group_root:
            self.reqs.append(self.world.isend(count, dest=0, tag=_PROGRESS_TAG))

    def note(self, text: str):
        """Show ``text`` after the bar (spin-up steps, rate, ETA): the bar never goes quiet."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def close(self):
        if self.world is not None:
            if self.rank == 0:
                self._poll(block_for_done=self.decomp.n_groups - 1)
            elif self.decomp.is_group_root:
                self.reqs.append(self.world.isend(-1, dest=0, tag=_PROGRESS_TAG))
                from mpi4py import MPI
                MPI.Request.Waitall(self.reqs)
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# one member


@dataclass
class _Timers:
    step: float = 0.0
    sample: float = 0.0
    io: float = 0.0
    steps: int = 0
    samples: int = 0
    spin: float = 0.0  # the part of ``step`` spent in the spin-up


class _Member:
    """The solver objects of one member on its group's backend."""

    def __init__(self, cfg: Config, system: str, member: int, backend):
        from solver import Equation, Grid, Parameters, make_forcing, make_stepper
        from solver.filters import make_filter
        from solver.sgs import FDNSSampler

        s, d, g = cfg.system(system), cfg.dns, cfg.grid
        self.cfg, self.member, self.system = cfg, member, s
        self.grid = Grid(g.n_dns, g.L, backend=backend)
        self.seed = system_seed(d.seed, system)
        forcing = make_forcing(self.grid, s.forcing, kf=s.kf, eps=s.eps, seed=self.seed + 1,
                               member_offset=member) if s.forcing != "none" else None
        params = Parameters(re=s.re, mu=s.mu, beta=s.beta, hyperviscosity=s.hyperviscosity,
                            hyper_order=s.hyper_order)
        self.equation = Equation(self.grid, params, forcing=forcing, dealias=d.dealias, jacobian=d.jacobian)
        self.stepper = make_stepper(d.stepper, self.equation, dt=d.dt)
        self.sampler = FDNSSampler(self.equation, g.n_les, make_filter(d.filter, cfg.filter_width))

    def initial_state(self):
        """The member's seeded initial state (random-phase field, or rest for ``init = "zero"``)."""
        from solver import random_field
        if self.system.init == "zero":
            w = self.grid.backend.zeros_spectral()
        else:
            w = random_field(self.grid, kp=self.system.kp, energy=self.system.init_energy, seed=self.seed,
                             member_offset=self.member)
        return self.stepper.init_state(w)


# --------------------------------------------------------------------------------------------
# one system


@dataclass
class SystemResult:
    system: str
    status: str  # "done", "skipped"
    members: int = 0
    snapshots: int = 0
    wall_s: float = 0.0
    member_steps: int = 0
    samples: int = 0
    step_s: float = 0.0
    sample_s: float = 0.0
    io_s: float = 0.0
    busy_s: float = 0.0
    path: str = ""
    spin_s: float = 0.0

    @property
    def member_steps_per_s(self) -> float:
        return self.member_steps / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def io_fraction(self) -> float:
        return self.io_s / self.busy_s if self.busy_s > 0 else 0.0

    def summary(self) -> str:
        if self.status == "skipped":
            return f"dns {self.system}: finished store {self.path} kept (use --force to redo)"
        ms = 1e3 * self.sample_s / self.samples if self.samples else 0.0
        return (f"dns {self.system}: {self.members} members x {self.snapshots} snapshots in {self.wall_s:.1f} s, "
                f"{self.member_steps_per_s:,.0f} members*steps/s, filtering {ms:.2f} ms/sample, "
                f"I/O {100 * self.io_fraction:.1f}% of time ({_time_split(self)}) -> {self.path}")


def _time_split(r) -> str:
    """How the writers' time went: spin-up steps, sampling-phase steps, filtering, I/O, the rest."""
    if r.busy_s <= 0:
        return "no time measured"
    parts = (("spin-up", r.spin_s), ("steps", r.step_s - r.spin_s), ("filtering", r.sample_s), ("I/O", r.io_s))
    rest = max(0.0, r.busy_s - r.step_s - r.sample_s - r.io_s)
    return ", ".join(f"{k} {100 * v / r.busy_s:.0f}%" for k, v in parts + (("other", rest),))


def _prepare_store(cfg, system, run_dir, save_dns, force, ranks) -> str:
    """Rank 0: create, keep (resume) or skip the store. Returns "create", "resume" or "skip"."""
    path, ck = store_path(run_dir, system), checkpoint_dir(run_dir, system)
    fp = fingerprint(cfg, system, save_dns)
    if path.exists() and not force:
        attrs = read_attrs(path)  # DataError for a foreign / other-schema / corrupt store
        if attrs.get("fingerprint") != fp:
            raise DataError(f"{path} was written with another configuration (fingerprint "
                            f"{attrs.get('fingerprint')} != {fp}: grid, dns, system or --save-dns differ); "
                            "use --force to overwrite it or another --run-dir", field="store")
        if is_finished(path):
            return "skip"
        for p in path.rglob("*.partial"):  # temporary chunk files of a killed writer
            p.unlink(missing_ok=True)
        return "resume"
    if path.exists():
        shutil.rmtree(path)
    if ck.exists():
        shutil.rmtree(ck)
    path.parent.mkdir(parents=True, exist_ok=True)
    create_store(path, layout(cfg, save_dns), store_attrs(cfg, system, save_dns, ranks))
    return "create"


def _bcast_outcome(world, fn):
    """Run ``fn`` on rank 0 and give its result (or its UsageError) to every rank."""
    from .errors import UsageError
    out = err = None
    if world is None or world.Get_rank() == 0:
        try:
            out = fn()
        except UsageError as e:
            err = e
    if world is not None:
        out, err = world.bcast((out, err), root=0)
    if err is not None:
        raise err
    return out


def _peek_checkpoint(path: Path):
    """(names of the arrays, meta) of a checkpoint file without loading it, None if absent, or the
    DataError of :func:`solver.checkpoint.read_checkpoint` (path and what to do) for a damaged file:
    a damaged checkpoint is reported, never silently replaced or used."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files), json.loads(z["__meta__"].tobytes().decode())
    except Exception:  # noqa: BLE001 - a damaged file: say which and what to do
        from solver.checkpoint import read_checkpoint
        try:
            with solver_fields():
                read_checkpoint(path)
        except DataError as e:
            return e
        return DataError(f"checkpoint {path} cannot be read: delete it to start the member from its initial "
                         "condition", field="checkpoint")


def run_system(cfg: Config, system: str, run_dir, *, save_dns: bool = False, force: bool = False,
               world=None, progress: bool = True) -> SystemResult:
    """Run (or resume, or skip) the DNS ensemble of one system. Collective over ``world``."""
    from solver import Simulation, diagnostics
    from solver.checkpoint import member_path, save_members
    from solver.fft import make_backend
    from solver.parallel import Decomposition, local_device

    d, lay = cfg.dns, layout(cfg, save_dns)
    path, ckdir = store_path(run_dir, system), checkpoint_dir(run_dir, system)
    ranks = 1 if world is None else world.Get_size()
    t_start = time.perf_counter()
    status = _bcast_outcome(world, lambda: _prepare_store(cfg, system, run_dir, save_dns, force, ranks))
    if status == "skip":
        return SystemResult(system, "skipped", path=str(path))
    if world is not None:
        world.Barrier()  # the store exists before anybody writes

    decomp = Decomposition(world, lay.members, d.ranks_per_member)
    fp = fingerprint(cfg, system, save_dns)
    spin = steps_per(cfg, d.spinup_time) if d.spinup_time > 0 else 0
    every = steps_per(cfg, d.sample_interval)
    ck_steps = steps_per(cfg, d.checkpoint_interval) if d.checkpoint_interval > 0 else every * d.chunk_time
    timers = _Timers()
    backend = None
    if not decomp.idle:
        device = local_device(world, d.device) if d.backend == "torch" else "cpu"
        backend = make_backend(cfg.grid.n_dns, backend=d.backend, dtype=d.dtype, device=device, threads=d.threads,
                               comm=decomp.group_comm)
    is_writer = not decomp.idle and decomp.is_group_root
    writer = Writer(path) if is_writer else None

    # what is already there (rank 0 knows; for the bar only)
    initial = int(completed(path).sum()) if (world is None or world.Get_rank() == 0) else 0
    bar = _Progress(world, decomp, lay.members * lay.snapshots, initial, f"dns {system}", progress)

    def checkpoint(m, sim, next_snapshot):
        t0 = time.perf_counter()
        arrays, scalars = sim.state.export(backend)
        meta = dict(scalars, next_snapshot=next_snapshot, fingerprint=fp, system=system)
        save_members(ckdir, backend, [m], {k: v[None] for k, v in arrays.items()}, meta)
        timers.io += time.perf_counter() - t0

    done_rows = completed(path) if is_writer else None  # this group's members' markers (resume check)
    for member_no, m in enumerate(decomp.members):
        mem = _Member(cfg, system, m, backend)
        # resume from this member's checkpoint, if any (read on the group root, shared in the group)
        peek = _peek_checkpoint(member_path(ckdir, m)) if decomp.is_group_root else None
        if decomp.group_comm is not None and decomp.group_comm.Get_size() > 1:
            peek = decomp.group_comm.bcast(peek, root=0)
        if isinstance(peek, DataError):
            raise peek
        if peek is not None and peek[1].get("fingerprint") == fp:
            from solver.checkpoint import load_members
            arrays, metas = load_members(ckdir, backend, [m])  # DataError: truncated / tampered
            next_snapshot = int(metas[0]["next_snapshot"])
            # the store must hold every snapshot the checkpoint says was written; if markers were lost
            # (a damaged store), the member starts over rather than leave holes behind
            lost = bool(decomp.is_group_root and not done_rows[m, :next_snapshot].all())
            if decomp.group_comm is not None and decomp.group_comm.Get_size() > 1:
                lost = decomp.group_comm.bcast(lost, root=0)
            if lost:
                state, next_snapshot = mem.initial_state(), 0
            else:
                state = mem.stepper.restore({k: v[0] for k, v in arrays.items()}, metas[0])
        else:
            state = mem.initial_state()
            next_snapshot = 0
        sim = Simulation(mem.equation, mem.stepper, state=state, cfl_max=d.cfl_max)
        last_ck = sim.state.step

        def advance(to_step):
            """Step to ``to_step``; during the spin-up, checkpoint every ``ck_steps`` steps."""
            nonlocal last_ck
            if sim.state.step > to_step:
                raise RuntimeError(f"{system} member {m}: state at step {sim.state.step} is past the "
                                   f"sampling step {to_step} (inconsistent checkpoint)")
            while sim.state.step < to_step:
                target = min(to_step, last_ck + ck_steps) if sim.state.step < spin else to_step
                k = max(1, target - sim.state.step)
                rate = timers.steps / timers.step if timers.step > 0 else 0.0
                if sim.state.step < spin:  # ~2 s between progress notes (same steps: same results)
                    k = min(k, max(1, int(2 * rate)) if rate else 10)
                t0 = time.perf_counter()
                try:
                    sim.run(steps=k)
                except SimulationBlowUp as e:
                    good = (f"last good checkpoint: {member_path(ckdir, m)} (step {last_ck})"
                            if member_path(ckdir, m).is_file()
                            else "no checkpoint written yet (the member starts from its initial condition)")
                    raise SimulationBlowUp(f"{system} member {m}: {e}; {good}; lower dns.dt or raise "
                                           "dns.cfl_max/grid.n_dns, then rerun with --force") from None
                timers.step += time.perf_counter() - t0
                timers.steps += k
                if sim.state.step <= spin:
                    timers.spin += time.perf_counter() - t0
                    _spin_note(bar, m, sim.state.step, spin, lay, every, len(decomp.members), member_no, timers)
                if sim.state.step < spin and sim.state.step - last_ck >= ck_steps:
                    checkpoint(m, sim, 0)
                    last_ck = sim.state.step

        if next_snapshot == 0 and sim.state.step < spin:
            advance(spin)
        # next_snapshot is a chunk boundary, or the end (a short last chunk must not be redone)
        first = lay.chunks_per_member if next_snapshot >= lay.snapshots else next_snapshot // lay.chunk_time
        for chunk in range(first, lay.chunks_per_member):
            sl = lay.chunk_slice(chunk)
            buf: dict[str, list] = {}
            for j in range(sl.start, sl.stop):
                advance(spin + j * every)
                t0 = time.perf_counter()
                w = sim.state.omega_hat
                out = mem.sampler(w)
                e, z = diagnostics.energy(mem.grid, w), diagnostics.enstrophy(mem.grid, w)
                spec = diagnostics.energy_spectrum(mem.grid, w)[1][..., :lay.nk]
                full = backend.gather_physical(backend.irfft2(w)) if save_dns else None
                timers.sample += time.perf_counter() - t0
                timers.samples += 1
                if decomp.is_group_root:
                    row = {"psi": out["psi"], "omega": out["omega"], "pi": out["pi"],
                           "backscatter": out["backscatter"], "transfer": out["transfer"],
                           "energy": e, "enstrophy": z, "spectrum_dns": spec}
                    if save_dns:
                        row["omega_dns"] = full
                    for k, v in row.items():
                        buf.setdefault(k, []).append(np.asarray(v))
            if is_writer:
                t0 = time.perf_counter()
                writer.write_chunk(m, chunk, {k: np.stack(v) for k, v in buf.items()})
                timers.io += time.perf_counter() - t0
            last = chunk == lay.chunks_per_member - 1
            if last or d.checkpoint_interval == 0 or sim.state.step - last_ck >= ck_steps:
                checkpoint(m, sim, sl.stop)
                last_ck = sim.state.step
            bar.update(sl.stop - sl.start)
    bar.close()

    wall = time.perf_counter() - t_start
    # timings of the writers (group roots): their steps, samples, and where their time went
    mine = np.array([timers.steps, timers.samples, timers.step, timers.sample, timers.io, wall, timers.spin],
                    dtype=float)
    mine *= 1.0 if is_writer else 0.0
    tot = mine
    if world is not None:
        from mpi4py import MPI
        world.Barrier()
        tot = np.zeros_like(mine)
        world.Reduce(mine, tot, op=MPI.SUM, root=0)
        wall = world.allreduce(wall, op=MPI.MAX)
    return SystemResult(system, "done", members=lay.members, snapshots=lay.snapshots, wall_s=wall,
                        member_steps=int(tot[0]), samples=int(tot[1]), step_s=tot[2], sample_s=tot[3],
                        io_s=tot[4], busy_s=tot[5], path=str(path), spin_s=tot[6])


def _spin_note(bar, m, step, spin, lay, every, n_members, member_no, timers):
    """Spin-up progress of this group's member: steps, rate, ETA of the member and of the group."""
    from .resources import fmt_time
    rate = timers.steps / timers.step if timers.step > 0 else 0.0
    per_member = spin + lay.snapshots * every
    left_all = (n_members - member_no) * per_member - step
    eta = (f", ETA member {fmt_time((per_member - step) / rate)}, all {fmt_time(left_all / rate)}"
           if rate > 0 else "")
    bar.note(f"member {m} spin-up {step:,}/{spin:,} steps, {rate:,.0f} steps/s{eta}")


# --------------------------------------------------------------------------------------------
# every system


def check_run(cfg: Config, world=None, systems: list[str] | None = None) -> None:
    """ConfigError unless ``systems`` exist and the rank layout fits the grid and the world size
    (called by ``turbtl dns`` before anything is written, and by :func:`run_dns`)."""
    from solver.parallel import check_slab_grid

    for s in systems or cfg.dns.systems:
        cfg.system(s)
    with solver_fields():
        check_slab_grid(cfg.grid.n_dns, cfg.dns.ranks_per_member)
    size = 1 if world is None else world.Get_size()
    if size % cfg.dns.ranks_per_member:
        from .errors import ConfigError
        raise ConfigError(f"dns.ranks_per_member = {cfg.dns.ranks_per_member}: must divide the number of "
                          f"MPI ranks ({size})", field="dns.ranks_per_member")


def run_dns(cfg: Config, run_dir, *, systems: list[str] | None = None, save_dns: bool = False,
            force: bool = False, world=None, progress: bool = True, log=print) -> list[SystemResult]:
    """Run the DNS stage for ``systems`` (default ``dns.systems``). Collective over ``world``
    (an mpi4py communicator, or None when serial). Returns one :class:`SystemResult` per system
    (complete on rank 0)."""
    from solver.parallel import abort_on_error

    systems = list(systems or cfg.dns.systems)
    check_run(cfg, world, systems)
    rank0 = world is None or world.Get_rank() == 0
    results = []
    with abort_on_error(world), solver_fields():
        for s in systems:
            r = run_system(cfg, s, run_dir, save_dns=save_dns, force=force, world=world, progress=progress)
            if rank0:
                log(r.summary())
            results.append(r)
    return results


# --------------------------------------------------------------------------------------------
# checks of a finished store: statistically steady? resolved? spectral slope?


def flow_statistics(ds, fit_range: tuple[float, float] | None = None) -> dict:
    """Steadiness, resolution and the energy-spectrum slope of an FDNS store's DNS diagnostics.

    ``ds``: a dataset from :func:`suite.fdns.open_fdns`. Returns

    - ``energy_halves``, ``enstrophy_halves``: ensemble means over the first and second half of
      the sampled window, and ``energy_drift`` = |difference| / mean (a statistically steady
      state has a drift of the order of the sampling noise); ``energy_drift_sigma`` = the
      difference in units of its standard error (members x snapshots treated as independent
      per chunk of ``chunk_time``);
    - ``kmax_eta_z``: k_max η_Z with k_max = (n_dns−1)//3 (2/3 rule) and the Kraichnan scale
      η_Z = (ν³/η)^(1/6), η = 2νP the viscous enstrophy dissipation, P = Σ k⁴ E(k) from the stored
      shell spectra (ensemble and time mean);
    - ``z_decades``: log10 Z(k_f)/Z(k_max) of the mean enstrophy spectrum Z(k) = k² E(k);
    - ``slope``: least-squares slope of log E(k) vs log k over ``fit_range`` (default
      [k_f + 3, k_max / 2]), i.e. the enstrophy range; ``fit_range`` as used.
    """
    a = ds.attrs
    nu, kf, n = float(a["nu"]), float(a["kf"]), int(a["n_dns"])
    scale = 2 * math.pi / float(a["L"])
    E = np.asarray(ds.energy.values, float)
    Z = np.asarray(ds.enstrophy.values, float)
    T = E.shape[1]
    h = T // 2
    e1, e2 = float(E[:, :h].mean()), float(E[:, h:].mean())
    z1, z2 = float(Z[:, :h].mean()), float(Z[:, h:].mean())
    ct = int(a.get("chunk_time", 1)) or 1
    blocks = [E[:, i:i + ct].mean(axis=1) for i in range(0, T, ct)]  # roughly independent block means
    b = np.concatenate(blocks)
    sem = float(np.std(b, ddof=1) / math.sqrt(max(1, len(b) // 2))) if len(b) > 2 else float("nan")
    spec = np.asarray(ds.spectrum_dns.values, float).mean(axis=(0, 1))
    k = np.arange(spec.size) * scale
    P = float(np.sum(k ** 4 * spec))
    eta = 2 * nu * P
    kmax = (n - 1) // 3
    eta_z = (nu ** 3 / eta) ** (1 / 6) if eta > 0 else float("inf")
    zk = k ** 2 * spec
    ikf = int(round(kf / scale)) if kf > 0 else int(np.argmax(zk))
    lo, hi = fit_range if fit_range is not None else (kf + 3, kmax * scale / 2)
    sel = (k >= lo) & (k <= hi) & (spec > 0)
    slope = float(np.polyfit(np.log(k[sel]), np.log(spec[sel]), 1)[0]) if sel.sum() >= 3 else float("nan")
    return {"energy_halves": (e1, e2), "enstrophy_halves": (z1, z2),
            "energy_drift": abs(e2 - e1) / (0.5 * (e1 + e2)), "energy_drift_sigma": abs(e2 - e1) / sem if sem else 0.0,
            "kmax_eta_z": kmax * scale * eta_z, "eta_z": eta_z, "z_decades": float(np.log10(zk[ikf] / zk[kmax])) if zk[kmax] > 0 else float("inf"),
            "slope": slope, "fit_range": (float(lo), float(hi))}
