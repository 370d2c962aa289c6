"""DNS ensembles of every system into filtered-DNS stores (the first stage of the study).

For each system, ``run_dns`` runs ``members_train + members_val + members_test`` independent DNS
members, discards ``spinup_time``, then every ``sample_interval`` filters and coarse-grains the
state on the fly (:class:`solver.sgs.FDNSSampler`) and stores ψ̄, ω̄, Π on the LES grid with the
DNS energy, enstrophy and energy spectrum into ``DIR/fdns/<system>.zarr`` (:mod:`suite.fdns`).

The members are run by the solver's ensemble driver (:class:`solver.ensemble.Ensemble` with
``batch=False``, :func:`dns_ensemble`: build, restore, advance to a step, health checks, checkpoints);
this module creates the store, samples and writes its chunks, shows progress and sums up.

Parallelism (``mpiexec -n N`` / ``srun``): ranks form groups of ``dns.ranks_per_member``
(:class:`solver.parallel.Decomposition`); each group holds a contiguous block of members and
runs them one after the other, each slab-decomposed over the group. Rank 0 creates the store
(metadata, coordinates, attributes) before anybody writes; the root of each group writes whole
zarr chunks (1 member x ``chunk_time`` snapshots) of its own members, so no two writers share a
chunk. Members are stepped one at a time (not batched), so a member's numbers do not depend on
how many members its group holds: results do not depend on the number of groups.

Seeds: the driver's rule (:data:`solver.ensemble.SEED_RULE`) with ``seed = system_seed``: member
``m`` of system ``s`` starts from child ``m`` of ``SeedSequence(system_seed)`` with
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
from tqdm import tqdm

from solver import diagnostics
from solver.ensemble import Ensemble
from solver.filters import make_filter
from solver.parallel import abort_on_error, check_slab_grid
from solver.sgs import FDNSSampler

from . import layout
from .config import Config
from .errors import ConfigError, DataError, UsageError, solver_fields
from .fdns import SCHEMA_VERSION, Layout, Writer, completed, create_store, is_finished, read_attrs, split_labels
from .provenance import provenance
from .resources import fmt_time

_PROGRESS_TAG = 7301
CHECK_EVERY = 50  # steps between a member's health checks (solver.health): they change no number
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
    return layout.fdns_store(run_dir, system)


def checkpoint_dir(run_dir, system: str) -> Path:
    return layout.fdns_checkpoint(run_dir, system)


def n_members(cfg: Config) -> int:
    d = cfg.dns
    return d.members_train + d.members_val + d.members_test


def steps_per(cfg: Config, interval: float) -> int:
    return max(1, int(round(interval / cfg.dns.dt)))


def fingerprint(cfg: Config, system: str, save_dns: bool) -> str:
    """A hash of everything that determines a store's numbers (not ranks, threads, intervals of
    checkpoints): a store or checkpoint is resumed only by a run with the same fingerprint. The grid
    is the system's own (its ``n_dns`` stands as ``grid.n_dns``, so a system on the default grid
    hashes as before per-system grids existed)."""
    d = cfg.dns.to_dict()
    for k in ("systems", "threads", "ranks_per_member", "checkpoint_interval", "cfl_max"):
        d.pop(k, None)
    sysd = cfg.system(system).to_dict()
    n_dns = sysd.pop("n_dns")
    doc = {"grid": cfg.grid.to_dict() | {"n_dns": n_dns}, "dns": d, "system": sysd, "save_dns": save_dns,
           "schema": SCHEMA_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_attrs(cfg: Config, system: str, save_dns: bool, ranks: int) -> dict:
    """The store's attributes: the system's parameters, grids, numerics, seeds and provenance."""
    s, d, g = cfg.system(system), cfg.dns, cfg.grid
    return {
        "system": system, "re": s.re, "nu": s.nu, "mu": s.mu, "beta": s.beta, "kf": s.kf, "forcing": s.forcing,
        "eps": s.eps, "init": s.init, "kp": s.kp, "init_energy": s.init_energy,
        "hyperviscosity": s.hyperviscosity, "hyper_order": s.hyper_order,
        "L": g.L, "n_dns": s.n_dns, "n_les": g.n_les, "dt": d.dt, "stepper": d.stepper, "dealias": d.dealias,
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


def store_layout(cfg: Config, save_dns: bool, system: str) -> Layout:
    """The store's shape: the LES grid ``grid.n_les`` and the system's own DNS grid."""
    d, g = cfg.dns, cfg.grid
    return Layout(members=n_members(cfg), snapshots=d.snapshots, chunk_time=d.chunk_time, n_les=g.n_les,
                  n_dns=cfg.system(system).n_dns, L=g.L, sample_interval=d.sample_interval,
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
    create_store(path, store_layout(cfg, save_dns, system), store_attrs(cfg, system, save_dns, ranks))
    return "create"


def _bcast_outcome(world, fn):
    """Run ``fn`` on rank 0 and give its result (or its UsageError) to every rank."""
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


def dns_ensemble(cfg: Config, system: str, world=None) -> Ensemble:
    """The system's ensemble driver (:class:`solver.ensemble.Ensemble`, members one at a time) on the
    system's DNS grid, seeded with :func:`system_seed`. Collective over ``world``."""
    d, g = cfg.dns, cfg.grid
    return Ensemble(world, n=cfg.system(system).n_dns, members=n_members(cfg), system=cfg.system(system), dt=d.dt, L=g.L,
                    ranks_per_member=d.ranks_per_member, stepper=d.stepper, dealias=d.dealias,
                    jacobian=d.jacobian, backend=d.backend, dtype=d.dtype, device=d.device, threads=d.threads,
                    seed=system_seed(d.seed, system), cfl_max=d.cfl_max, check_every=CHECK_EVERY, batch=False)


class _SystemRun:
    """This rank's part of one system's DNS: the driver's members, sampled into the store's chunks,
    with checkpoints after chunks (and during the spin-up), progress and timers."""

    def __init__(self, cfg: Config, system: str, run_dir, save_dns: bool, world, progress: bool):
        d = cfg.dns
        self.cfg, self.system, self.save_dns = cfg, system, save_dns
        self.lay = store_layout(cfg, save_dns, system)
        self.path, self.ckdir = store_path(run_dir, system), checkpoint_dir(run_dir, system)
        self.fp = fingerprint(cfg, system, save_dns)
        self.spin = steps_per(cfg, d.spinup_time) if d.spinup_time > 0 else 0
        self.every = steps_per(cfg, d.sample_interval)
        self.ck_steps = steps_per(cfg, d.checkpoint_interval) if d.checkpoint_interval > 0 \
            else self.every * d.chunk_time
        self.timers = _Timers()
        self.ens = dns_ensemble(cfg, system, world)
        self.decomp = self.ens.decomp
        self.is_writer = not self.decomp.idle and self.decomp.is_group_root
        self.writer = Writer(self.path) if self.is_writer else None
        initial = int(completed(self.path).sum()) if (world is None or world.Get_rank() == 0) else 0
        self.bar = _Progress(world, self.decomp, self.lay.members * self.lay.snapshots, initial, f"dns {system}",
                             progress)
        self.done_rows = completed(self.path) if self.is_writer else None  # markers of this group's members

    def run(self) -> None:
        for member_no, m in enumerate(self.ens.members):
            self.run_member(member_no, m)
        self.bar.close()

    def run_member(self, member_no: int, m: int) -> None:
        """Restore or start member ``m``, spin it up, then sample, write and checkpoint its chunks."""
        d, lay = self.cfg.dns, self.lay
        run = self.ens.member(m, label=f"{self.system} member {m}",
                              advice=f"lower dns.dt or raise dns.cfl_max/{grid_field(self.cfg, self.system)}, "
                                     "then rerun with --force")
        sampler = FDNSSampler(run.equation, self.cfg.grid.n_les, make_filter(d.filter, self.cfg.filter_width))
        next_snapshot = self._start(run, m)
        if next_snapshot == 0 and run.step < self.spin:
            self._advance(run, self.spin, member_no)
        # next_snapshot is a chunk boundary, or the end (a short last chunk must not be redone)
        first = lay.chunks_per_member if next_snapshot >= lay.snapshots else next_snapshot // lay.chunk_time
        for chunk in range(first, lay.chunks_per_member):
            sl = lay.chunk_slice(chunk)
            buf: dict[str, list] = {}
            for j in range(sl.start, sl.stop):
                self._advance(run, self.spin + j * self.every, member_no)
                row = self._sample(run, sampler)
                for k, v in (row or {}).items():
                    buf.setdefault(k, []).append(np.asarray(v))
            if self.is_writer:
                t0 = time.perf_counter()
                self.writer.write_chunk(m, chunk, {k: np.stack(v) for k, v in buf.items()})
                self.timers.io += time.perf_counter() - t0
            last = chunk == lay.chunks_per_member - 1
            if last or d.checkpoint_interval == 0 or run.step - _last_saved(run) >= self.ck_steps:
                self._checkpoint(run, sl.stop)
            self.bar.update(sl.stop - sl.start)

    def _start(self, run, m: int) -> int:
        """Continue member ``m`` from its checkpoint of this configuration, or start it afresh; the
        next snapshot to sample. The store must hold every snapshot the checkpoint says was written:
        if markers were lost (a damaged store), the member starts over rather than leave holes."""
        meta = run.restore(self.ckdir, require={"fingerprint": self.fp})  # CheckpointError: damaged
        if meta is None:
            run.start()
            return 0
        next_snapshot = int(meta["next_snapshot"])
        lost = bool(self.decomp.is_group_root and not self.done_rows[m, :next_snapshot].all())
        gc = self.decomp.group_comm
        if gc is not None and gc.Get_size() > 1:
            lost = gc.bcast(lost, root=0)
        if lost:
            run.start()
            return 0
        return next_snapshot

    def _advance(self, run, to_step: int, member_no: int) -> None:
        """Step to ``to_step``; during the spin-up, a checkpoint every ``ck_steps`` steps and a
        progress note about every 2 s (the same steps either way: the same results)."""
        tm, spin = self.timers, self.spin
        while run.step < to_step:
            target = min(to_step, _last_saved(run) + self.ck_steps) if run.step < spin else to_step
            k = max(1, target - run.step)
            rate = tm.steps / tm.step if tm.step > 0 else 0.0
            if run.step < spin:
                k = min(k, max(1, int(2 * rate)) if rate else 10)
            t0 = time.perf_counter()
            run.advance_to(run.step + k)  # SimulationBlowUp naming member, step, time, checkpoint
            tm.step += time.perf_counter() - t0
            tm.steps += k
            if run.step <= spin:
                tm.spin += time.perf_counter() - t0
                _spin_note(self.bar, run.members.start, run.step, spin, self.lay, self.every,
                           len(self.decomp.members), member_no, tm)
            if run.step < spin and run.step - _last_saved(run) >= self.ck_steps:
                self._checkpoint(run, 0)

    def _sample(self, run, sampler) -> dict | None:
        """The store's row of the member's current state (on the group root; None elsewhere)."""
        t0 = time.perf_counter()
        w, grid, be = run.state.omega_hat, run.grid, run.backend
        out = sampler(w)
        e, z = diagnostics.energy(grid, w), diagnostics.enstrophy(grid, w)
        spec = diagnostics.energy_spectrum(grid, w)[1][..., :self.lay.nk]
        full = be.gather_physical(be.irfft2(w)) if self.save_dns else None
        self.timers.sample += time.perf_counter() - t0
        self.timers.samples += 1
        if not self.decomp.is_group_root:
            return None
        row = {"psi": out["psi"], "omega": out["omega"], "pi": out["pi"], "backscatter": out["backscatter"],
               "transfer": out["transfer"], "energy": e, "enstrophy": z, "spectrum_dns": spec}
        if self.save_dns:
            row["omega_dns"] = full
        return row

    def _checkpoint(self, run, next_snapshot: int) -> None:
        t0 = time.perf_counter()
        run.save(self.ckdir, {"next_snapshot": next_snapshot, "fingerprint": self.fp, "system": self.system})
        self.timers.io += time.perf_counter() - t0

    def result(self, world, t_start: float) -> SystemResult:
        """The timings of the writers (group roots), summed over the world (complete on rank 0)."""
        tm, wall = self.timers, time.perf_counter() - t_start
        mine = np.array([tm.steps, tm.samples, tm.step, tm.sample, tm.io, wall, tm.spin], dtype=float)
        mine *= 1.0 if self.is_writer else 0.0
        tot = mine
        if world is not None:
            from mpi4py import MPI  # optional dependency: only under mpiexec
            world.Barrier()
            tot = np.zeros_like(mine)
            world.Reduce(mine, tot, op=MPI.SUM, root=0)
            wall = world.allreduce(wall, op=MPI.MAX)
        return SystemResult(self.system, "done", members=self.lay.members, snapshots=self.lay.snapshots,
                            wall_s=wall, member_steps=int(tot[0]), samples=int(tot[1]), step_s=tot[2],
                            sample_s=tot[3], io_s=tot[4], busy_s=tot[5], path=str(self.path), spin_s=tot[6])


def _last_saved(run) -> int:
    """The step of the member's last checkpoint (its start step when none was written since)."""
    return run.last_checkpoint[1] if run.last_checkpoint is not None else 0


def run_system(cfg: Config, system: str, run_dir, *, save_dns: bool = False, force: bool = False,
               world=None, progress: bool = True) -> SystemResult:
    """Run (or resume, or skip) the DNS ensemble of one system. Collective over ``world``."""
    path = store_path(run_dir, system)
    ranks = 1 if world is None else world.Get_size()
    t_start = time.perf_counter()
    status = _bcast_outcome(world, lambda: _prepare_store(cfg, system, run_dir, save_dns, force, ranks))
    if status == "skip":
        return SystemResult(system, "skipped", path=str(path))
    if world is not None:
        world.Barrier()  # the store exists before anybody writes
    job = _SystemRun(cfg, system, run_dir, save_dns, world, progress)
    job.run()
    return job.result(world, t_start)


def _spin_note(bar, m, step, spin, lay, every, n_members, member_no, timers):
    """Spin-up progress of this group's member: steps, rate, ETA of the member and of the group."""
    rate = timers.steps / timers.step if timers.step > 0 else 0.0
    per_member = spin + lay.snapshots * every
    left_all = (n_members - member_no) * per_member - step
    eta = (f", ETA member {fmt_time((per_member - step) / rate)}, all {fmt_time(left_all / rate)}"
           if rate > 0 else "")
    bar.note(f"member {m} spin-up {step:,}/{spin:,} steps, {rate:,.0f} steps/s{eta}")


# --------------------------------------------------------------------------------------------
# every system


def grid_field(cfg: Config, system: str) -> str:
    """The configuration field that sets the system's DNS grid (for messages)."""
    return f"systems.{system}.n_dns" if cfg.system(system).n_dns != cfg.grid.n_dns else "grid.n_dns"


def check_run(cfg: Config, world=None, systems: list[str] | None = None) -> None:
    """ConfigError unless ``systems`` exist and the rank layout fits every system's grid and the world
    size (called by ``turbtl dns`` before anything is written, and by :func:`run_dns`)."""
    for s in systems or cfg.dns.systems:
        cfg.system(s)
        with solver_fields(n=grid_field(cfg, s)):
            check_slab_grid(cfg.system(s).n_dns, cfg.dns.ranks_per_member)
    size = 1 if world is None else world.Get_size()
    if size % cfg.dns.ranks_per_member:
        raise ConfigError(f"dns.ranks_per_member = {cfg.dns.ranks_per_member}: must divide the number of "
                          f"MPI ranks ({size})", field="dns.ranks_per_member")


def run_dns(cfg: Config, run_dir, *, systems: list[str] | None = None, save_dns: bool = False,
            force: bool = False, world=None, progress: bool = True, log=print) -> list[SystemResult]:
    """Run the DNS stage for ``systems`` (default ``dns.systems``). Collective over ``world``
    (an mpi4py communicator, or None when serial). Returns one :class:`SystemResult` per system
    (complete on rank 0)."""
    systems = list(systems or cfg.dns.systems)
    check_run(cfg, world, systems)
    rank0 = world is None or world.Get_rank() == 0
    results = []
    with abort_on_error(world):
        for s in systems:
            with solver_fields(n=grid_field(cfg, s)):
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
    - ``kmax_over_kd``: k_max / k_d, k_d = (η_t^(1/3)/ν_p)^(1/(2p)) the dissipation wavenumber of the
      operator that removes the enstrophy: ν_p = the store's ``hyperviscosity`` with p its
      ``hyper_order`` when hyperviscosity > 0, else ν with p = 1; η_t = 2νΣk⁴E + 2ν_pΣk^(2p+2)E the
      whole (viscous + hyperviscous) enstrophy dissipation. Without hyperviscosity it equals
      ``kmax_eta_z``; with it, ``kmax_eta_z`` (viscous only) says nothing. Resolved: ≥ 1;
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
    hyper, order = float(a.get("hyperviscosity", 0) or 0), int(a.get("hyper_order", 2) or 2)
    eta_t = eta + (2 * hyper * float(np.sum(k ** (2 * order + 2) * spec)) if hyper > 0 else 0.0)
    nu_p, p = (hyper, order) if hyper > 0 else (nu, 1)
    k_d = (eta_t ** (1 / 3) / nu_p) ** (1 / (2 * p)) if eta_t > 0 else 0.0
    zk = k ** 2 * spec
    ikf = int(round(kf / scale)) if kf > 0 else int(np.argmax(zk))
    lo, hi = fit_range if fit_range is not None else (kf + 3, kmax * scale / 2)
    sel = (k >= lo) & (k <= hi) & (spec > 0)
    slope = float(np.polyfit(np.log(k[sel]), np.log(spec[sel]), 1)[0]) if sel.sum() >= 3 else float("nan")
    return {"energy_halves": (e1, e2), "enstrophy_halves": (z1, z2),
            "energy_drift": abs(e2 - e1) / (0.5 * (e1 + e2)), "energy_drift_sigma": abs(e2 - e1) / sem if sem else 0.0,
            "kmax_eta_z": kmax * scale * eta_z, "eta_z": eta_z,
            "kmax_over_kd": kmax * scale / k_d if k_d > 0 else float("inf"), "z_decades": float(np.log10(zk[ikf] / zk[kmax])) if zk[kmax] > 0 else float("inf"),
            "slope": slope, "fit_range": (float(lo), float(hi))}
