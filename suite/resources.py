"""What a stage will need before it allocates anything: memory per process, disk, and time.

Every number is a formula of the configuration's array sizes (below), not a trial run, so that
``turbtl config --estimate`` answers at once for any preset and a stage can refuse a run that cannot
fit this machine (exit 2, estimate and limit on one line) before it creates its run folder.

Memory (per process, bytes):
  * every process: :data:`PROCESS_BYTES` (Python, numpy, torch, zarr loaded: measured max RSS
    ~0.39 GB of a DNS process at 512²).
  * DNS: :data:`DNS_BYTES_PER_POINT` × n_dns² / ranks_per_member for the member being stepped
    (n_dns: each system's own grid, ``systems.<name>.n_dns`` or ``grid.n_dns``; a process holds
    one system at a time, so the largest grid sets the memory, and the disk and time add up)
    (measured with tracemalloc: 181-184 B per grid point at 256² and 512², float64, AB2-CN, with
    the FDNS sampler; float32 about half), plus on the group root the gathered checkpoint arrays
    (2 complex spectral fields) and the chunk buffer (chunk_time snapshots of ψ̄, ω̄, Π, and with
    --save-dns of ω on the DNS grid).
  * train / transfer / analyze: the float32 tensors of the splits held in memory (3 fields of
    n_les² per snapshot), activations of one batch (every layer, forward and backward), the
    frozen-prefix cache of a transfer job; Adam's state is 3 × the parameters.
Disk (bytes written): the stores' data uncompressed (an upper bound: zstd gains little on
turbulent fields) plus :data:`FILE_BYTES` per chunk file and per array; one checkpoint per member
(2 spectral fields); model folders (4 bytes per parameter + :data:`MODEL_DIR_BYTES`), ×4 for the
base network's training checkpoint (Adam); analysis stores (per network 2 × layers × width² floats).
Time: a documented per-step cost model, not a measurement of this machine:
  * DNS step on one core (numpy backend, f64): :data:`STEP_S0` + :data:`STEP_C` × n² log2 n
    (calibrated on the development machine, 1 thread: 3.4-4.7 ns × n² log2 n at 128²-512², plus a
    fixed Python cost per step); one FDNS sample: :data:`SAMPLE_S0` + :data:`SAMPLE_C` × n² log2 n.
  * CNN training: 3 × forward FLOPs per sample at :data:`CPU_FLOPS` per core (torch CPU conv).
  Core-hours are those of the CPU model; for a GPU (torch backend, cuda) the time is not modelled
  and the CPU figure is an upper bound. docs/reliability.md compares estimate and measurement.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .errors import UsageError
from .config import epochs_for_layers
from .masks import n_trained, select
from .stages import PIPELINE as STAGES

PROCESS_BYTES = 0.4e9
DNS_BYTES_PER_POINT = 185.0
FILE_BYTES = 6e3
MODEL_DIR_BYTES = 16e3
STEP_S0, STEP_C = 2e-4, 4.5e-9
SAMPLE_S0, SAMPLE_C = 1e-3, 40e-9
CPU_FLOPS = 10e9
LES_STEP_FACTOR = 3.0  # an LES step (closure, dealiasing) costs about 3 DNS steps of the same grid


class ResourceError(UsageError):
    """The estimated memory or disk of a stage exceeds what this machine has."""


@dataclass
class Estimate:
    stage: str
    memory: float        # bytes per process
    processes: int       # processes of the stage on one machine (ranks, workers)
    disk: float          # bytes written by the stage
    core_s: float        # core-seconds (CPU cost model)
    wall_s: float        # wall seconds with ``processes`` cores
    what: str            # what dominates the memory
    basis: str = "cost model"
    gpu_memory: float = 0.0  # bytes per GPU when the stage runs on one (0: CPU)


def fmt_bytes(b: float) -> str:
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= f:
            return f"{b / f:.3g} {unit}"
    return f"{b:.0f} B"


def fmt_time(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


# --------------------------------------------------------------------------------------------
# per stage


def _steps(cfg, interval: float) -> int:
    return int(round(interval / cfg.dns.dt))


def members(cfg) -> int:
    d = cfg.dns
    return d.members_train + d.members_val + d.members_test


def dns_step_s(n: int) -> float:
    return STEP_S0 + STEP_C * n * n * math.log2(n)


def _cnn(cfg):
    """(parameters, forward FLOPs per LES-grid sample) of the configured network."""
    m, n = cfg.model, cfg.grid.n_les
    chans = [2] + [m.width] * (m.layers - 1) + [1]
    k2 = m.kernel * m.kernel
    params = sum(k2 * a * b + b for a, b in zip(chans[:-1], chans[1:]))
    flops = sum(2 * k2 * a * b * n * n for a, b in zip(chans[:-1], chans[1:]))
    return params, float(flops)


def _snap_bytes(cfg) -> float:
    """float32 bytes of one snapshot's (ψ̄, ω̄, Π) in memory."""
    return 3 * 4.0 * cfg.grid.n_les ** 2


def dns_grids(cfg, systems=None) -> dict[int, list[str]]:
    """The DNS grids of ``systems`` (default ``dns.systems``): n_dns -> the systems on it, largest first."""
    out: dict[int, list[str]] = {}
    for s in systems or cfg.dns.systems:
        out.setdefault(cfg.system(s).n_dns, []).append(s)
    return dict(sorted(out.items(), reverse=True))


def grids_text(cfg) -> str:
    """The DNS grids in words, e.g. ``2048² DNS (high_re), 1024² DNS (base, kf25)``."""
    grids = dns_grids(cfg)
    if len(grids) == 1:
        return f"{next(iter(grids))}² DNS"
    return ", ".join(f"{n}² DNS ({', '.join(names)})" for n, names in grids.items())


def grid_fields_text(cfg) -> str:
    """The fields that set the DNS grids of ``dns.systems``, e.g. ``systems.high_re.n_dns = 2048,
    grid.n_dns = 1024`` (``grid.n_dns = 1024`` alone when every system is on the default grid)."""
    own = [f"systems.{s}.n_dns = {cfg.system(s).n_dns}" for s in cfg.dns.systems
           if cfg.system(s).n_dns != cfg.grid.n_dns]
    default = any(cfg.system(s).n_dns == cfg.grid.n_dns for s in cfg.dns.systems)
    return ", ".join(own + ([f"grid.n_dns = {cfg.grid.n_dns}"] if default or not own else []))


def _store_bytes(cfg, mem: int, save_dns: bool = False, n_dns: int | None = None) -> float:
    d, g = cfg.dns, cfg.grid
    n_dns = n_dns or g.n_dns
    per_snap = 3 * 8.0 * g.n_les ** 2 + 8.0 * (n_dns // 2 + 1) + 5 * 8.0
    if save_dns:
        per_snap += 8.0 * n_dns ** 2
    chunks = mem * math.ceil(d.snapshots / d.chunk_time)
    return mem * d.snapshots * per_snap + FILE_BYTES * (10 * chunks + 16)


def dns_member_bytes(cfg, n: int) -> float:
    """Bytes of one member's arrays on an n² grid (per rank of its group)."""
    scale = 0.55 if cfg.dns.dtype == "float32" else 1.0
    return DNS_BYTES_PER_POINT * scale * n * n / cfg.dns.ranks_per_member


def estimate_dns(cfg, save_dns: bool = False) -> Estimate:
    """Every system on its own grid: memory of the largest, disk and time summed over the systems."""
    d, g = cfg.dns, cfg.grid
    p = d.ranks_per_member
    scale = 0.55 if d.dtype == "float32" else 1.0
    mem = members(cfg)
    steps = _steps(cfg, d.spinup_time) + d.snapshots * _steps(cfg, d.sample_interval)
    grids = dns_grids(cfg)
    disk = core_s = 0.0
    for n, names in grids.items():
        spec = 16.0 * scale * n * (n // 2 + 1)
        disk += len(names) * (_store_bytes(cfg, mem, save_dns, n) + 2 * spec * mem + FILE_BYTES * mem)
        sample = SAMPLE_S0 + SAMPLE_C * n * n * math.log2(n)
        core_s += len(names) * mem * (steps * dns_step_s(n) + d.snapshots * sample)
    n = max(grids)
    member = dns_member_bytes(cfg, n)
    root = 2 * 16.0 * scale * n * (n // 2 + 1) + d.chunk_time * (3 * 8.0 * g.n_les ** 2
                                                                   + (8.0 * n * n if save_dns else 0.0))
    gpu = d.backend == "torch" and d.device in ("cuda", "auto") and _gpu_count() > 0
    sizes = " + ".join(f"{len(names)} x {n_}²" for n_, names in grids.items())
    return Estimate("dns", PROCESS_BYTES + member + root, p, disk, core_s, core_s / p,
                    f"one member of {n}² on {p} rank(s): {DNS_BYTES_PER_POINT:.0f} B per grid point",
                    f"cost model ({sizes} systems x {mem} members x {steps:,} steps)",
                    gpu_memory=member if gpu else 0.0)


def _train_memory(cfg, n_samples: int, batch: int, n_test: int) -> float:
    m, n = cfg.model, cfg.grid.n_les
    params, _ = _cnn(cfg)
    data = (n_samples + n_test) * _snap_bytes(cfg)
    acts = batch * m.width * n * n * 4.0 * m.layers * 3
    return data + acts + 4 * 4.0 * params


def estimate_train(cfg) -> Estimate:
    """Training samples per epoch: the training snapshots, x4 with train.augment = rot90."""
    d, t = cfg.dns, cfg.train
    n_train = max(1, int(d.members_train * d.snapshots * t.fraction)) * (4 if t.augment == "rot90" else 1)
    n_eval = (d.members_val + d.members_test) * d.snapshots
    params, flops = _cnn(cfg)
    core_s = t.epochs * (n_train * 3 * flops + d.members_val * d.snapshots * flops) / CPU_FLOPS \
        + n_eval * flops / CPU_FLOPS
    mem = _train_memory(cfg, n_train, t.batch_size, n_eval)
    return Estimate("train", PROCESS_BYTES + mem, 1, MODEL_DIR_BYTES + 4 * 4.0 * params, core_s, core_s,
                    f"{n_train + n_eval} snapshots in memory + activations of a batch of {t.batch_size}",
                    f"cost model ({t.epochs} epochs x {n_train} samples x {3 * flops:.3g} FLOP)")


def n_transfer_jobs(cfg) -> int:
    """Networks of the sweep: subsets, references and random controls per target x fraction x seed,
    and one oracle per target x seed (suite.transfer.plan)."""
    t = cfg.transfer
    randoms = len(select(t.random_control, cfg.model.layers)) if t.random_control.strip() else 0
    per = len(select(t.subsets, cfg.model.layers)) + (2 if t.references else 0) + randoms
    return len(t.targets) * len(t.seeds) * (len(t.fractions) * per + (1 if t.oracle else 0))


def _epochs_budget_samples(cfg, n_base: int) -> float:
    """Training samples the sweep's networks process under transfer.epochs_by_layers: every run its
    epochs (by its number of re-trained layers) x its sample, the oracles the base network's steps."""
    t, L, batch = cfg.transfer, cfg.model.layers, cfg.train.batch_size
    layers = [n_trained(mk) for mk in select(t.subsets, L)] + ([L] if t.references else [])
    if t.random_control.strip():
        layers += [n_trained(mk) for mk in select(t.random_control, L)]
    per_seed = 0.0
    for f in t.fractions:
        n = max(1, int(f * n_base))
        per_seed += sum(epochs_for_layers(t.epochs_by_layers, k) for k in layers) * -(-n // batch) * min(batch, n)
    if t.oracle:
        copies = 4 if cfg.train.augment == "rot90" else 1
        per_seed += (t.oracle_steps or cfg.train.epochs * -(-n_base * copies // batch)) * batch
    return len(t.targets) * len(t.seeds) * per_seed


def estimate_transfer(cfg) -> Estimate:
    """Budgets in optimizer steps (transfer.steps), or in epochs by number of re-trained layers
    (transfer.epochs_by_layers); every network is also evaluated on the target's test snapshots."""
    d, t, m, n = cfg.dns, cfg.transfer, cfg.model, cfg.grid.n_les
    n_base = max(1, int(d.members_train * d.snapshots * cfg.train.fraction))
    params, flops = _cnn(cfg)
    jobs = n_transfer_jobs(cfg)
    per_fraction = jobs / max(1, len(t.fractions))
    n_test = d.members_test * d.snapshots
    batch = cfg.train.batch_size  # budgets are optimizer steps of min(batch, sample) samples each
    if t.epochs_by_layers:
        core_s = (_epochs_budget_samples(cfg, n_base) * 3 * flops + jobs * n_test * flops) / CPU_FLOPS
        budget = f"epochs {list(t.epochs_by_layers)} by re-trained layers"
    else:
        core_s = sum(per_fraction * (t.steps * min(batch, max(1, int(f * n_base))) * 3 * flops + n_test * flops)
                     for f in t.fractions) / CPU_FLOPS
        budget = f"{t.steps} steps"
    biggest = max(1, int(max(t.fractions) * n_base))
    cache = biggest * m.width * n * n * 4.0 if t.share_prefix else 0.0
    per_worker = PROCESS_BYTES + _train_memory(cfg, d.members_train * d.snapshots, cfg.train.batch_size, n_test) + cache
    disk = jobs * (MODEL_DIR_BYTES + 4.0 * params + 2e3)
    w = t.workers
    return Estimate("transfer", per_worker, w, disk, core_s, core_s / w,
                    f"target data + prefix cache of {biggest} samples per worker",
                    f"cost model ({jobs:,} jobs x {budget}, without prefix sharing or early stopping: "
                    "an upper bound)")


def estimate_analyze(cfg) -> Estimate:
    m, a, n = cfg.model, cfg.analyze, cfg.grid.n_les
    nets = n_transfer_jobs(cfg)
    per_net = 2 * m.layers * m.width ** 2 * 8.0 + a.activation_samples * m.layers * (n // 2 + 1) * 8.0
    _, flops = _cnn(cfg)
    core_s = nets * (0.05 + a.activation_samples * flops / CPU_FLOPS) + 10.0
    mem = PROCESS_BYTES + a.activation_samples * m.width * n * n * 4.0 * m.layers + 4 * _snap_bytes(cfg)
    return Estimate("analyze", mem, a.workers, nets * per_net + 2e6, core_s, core_s / a.workers,
                    f"activations of {a.activation_samples} samples per worker",
                    f"cost model ({nets:,} networks, 0.05 s each + activations)")


def estimate_les(cfg) -> Estimate:
    d, les, n = cfg.dns, cfg.les, cfg.grid.n_les
    closures = len(les.closures)
    steps = max(1, math.ceil(les.duration / (d.dt * les.dt_factor)))
    _, flops = _cnn(cfg)
    cnn = sum(1 for c in les.closures if c.startswith("cnn:"))
    n_sys = len(les.systems)
    core_s = n_sys * les.members * steps * (closures * LES_STEP_FACTOR * dns_step_s(n) + cnn * flops / CPU_FLOPS)
    snaps = min(d.snapshots, max(1, int(les.duration / d.sample_interval)))
    disk = n_sys * (closures + 1) * les.members * snaps * 2 * 8.0 * n * n + n_sys * 2e5
    truth = les.members * snaps * 3 * 8.0 * n * n  # the FDNS snapshots compared with
    mem = PROCESS_BYTES + closures * les.members * DNS_BYTES_PER_POINT * n * n + 2 * truth
    return Estimate("les", mem, 1, disk, core_s, core_s,
                    f"{closures} closures x {les.members} members of {n}²",
                    f"cost model ({n_sys} systems x {closures} closures x {les.members} members x {steps:,} steps)")


def estimate_report(cfg) -> Estimate:
    return Estimate("report", PROCESS_BYTES + 0.2e9, 1, 5e6, 10.0, 10.0, "figures", "fixed")


ESTIMATORS = {"dns": estimate_dns, "train": estimate_train, "transfer": estimate_transfer,
              "analyze": estimate_analyze, "les": estimate_les, "report": estimate_report}


def estimate(cfg, stage: str, **kw) -> Estimate:
    return ESTIMATORS[stage](cfg, **kw)


# --------------------------------------------------------------------------------------------
# this machine


def _gpu_count() -> int:
    try:  # lazy: torch is heavy, and the resource check runs before any stage that needs it
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPU
        return 0


def memory_available() -> tuple[float, str]:
    """(bytes, what) this process may still allocate: MemAvailable of /proc/meminfo, capped by a
    cgroup memory limit; TURBTL_MEMORY_LIMIT (bytes) overrides both (tests, shared nodes)."""
    env = os.environ.get("TURBTL_MEMORY_LIMIT", "").strip()
    if env:
        return float(env), "TURBTL_MEMORY_LIMIT"
    avail, what = math.inf, "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail, what = float(line.split()[1]) * 1024, "available memory"
    except OSError:
        pass
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(p).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and float(text) < avail:
            avail, what = float(text), "the cgroup memory limit"
    return avail, what


def disk_free(path: str | Path) -> float:
    """Free bytes on the file system that holds ``path`` (or would hold it)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    env = os.environ.get("TURBTL_DISK_LIMIT", "").strip()
    if env:
        return float(env)
    return float(shutil.disk_usage(p).free)


def _du(path: Path) -> float:
    total = 0.0
    if path.is_file():
        return float(path.stat().st_size)
    for q in path.rglob("*") if path.is_dir() else []:
        try:
            if q.is_file():
                total += q.stat().st_size
        except OSError:
            pass
    return total


def local_processes(world_size: int) -> int:
    """Processes of one job on this node: the launcher's local size when it says, else all of them."""
    for var in ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MPI_LOCAL_NRANKS", "LOCAL_WORLD_SIZE"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    nodes = os.environ.get("SLURM_JOB_NUM_NODES", "")
    if nodes.isdigit() and int(nodes) > 1:
        return math.ceil(world_size / int(nodes))
    return world_size


def check(cfg, stage: str, run_dir, *, processes: int = 1, **kw) -> Estimate:
    """Raise :class:`ResourceError` when the stage's memory (× its ``processes`` on this machine) or the
    disk it still has to write exceeds what this machine has. Returns the estimate."""
    e = estimate(cfg, stage, **kw)
    procs = max(processes, e.processes if stage in ("transfer", "analyze") else 1)
    need = e.memory * procs
    have, what = memory_available()
    hint = {"dns": "lower grid.n_dns (or a systems.<name>.n_dns) or raise dns.ranks_per_member (more ranks, "
                   "more nodes)",
            "train": "lower train.batch_size or dns.snapshots", "transfer": "lower transfer.workers",
            "analyze": "lower analyze.workers or analyze.activation_samples",
            "les": "lower les.members"}.get(stage, "use a smaller configuration")
    src = f"{grid_fields_text(cfg)}, grid.n_les = {cfg.grid.n_les}"
    if need > have:
        raise ResourceError(f"{stage} needs about {fmt_bytes(need)} of memory ({fmt_bytes(e.memory)} per process x "
                            f"{procs}: {e.what}; {src}) but this machine has {fmt_bytes(have)} ({what}): {hint}, "
                            "or pass --ignore-resources", field="resources")
    if e.gpu_memory:
        try:  # lazy, as in _gpu_count
            import torch
            total = torch.cuda.get_device_properties(0).total_memory
        except Exception:  # noqa: BLE001
            total = math.inf
        if e.gpu_memory > total:
            raise ResourceError(f"{stage} needs about {fmt_bytes(e.gpu_memory)} per GPU ({e.what}; {src}) but the GPU "
                                f"has {fmt_bytes(total)}: {hint}, or pass --ignore-resources", field="resources")
    run_dir = Path(run_dir)
    done = sum(_du(p) for p in layout.stage_outputs(run_dir, stage))
    disk = max(0.0, e.disk - done)
    free = disk_free(run_dir)
    if disk > free:
        raise ResourceError(f"{stage} needs about {fmt_bytes(disk)} of disk under {run_dir} ({fmt_bytes(e.disk)} in "
                            f"all, {fmt_bytes(done)} already there; {src}) but only {fmt_bytes(free)} is free: free "
                            "space, use a --run-dir on a larger file system, or pass --ignore-resources",
                            field="resources")
    return e


def table(cfg, run_dir=None, save_dns: bool = False) -> str:
    """The estimate of every stage as a text table (``turbtl config --estimate``)."""
    rows = [estimate_dns(cfg, save_dns=save_dns)] + [ESTIMATORS[s](cfg) for s in STAGES[1:]]
    head = f"{'stage':<9} {'memory/process':>14} {'procs':>5} {'disk':>10} {'wall':>9} {'core-hours':>11}  basis"
    lines = [f"resource estimate: preset {cfg.preset} ({cfg.source}); grid {grids_text(cfg)}, "
             f"{cfg.grid.n_les}² LES", head]
    for e in rows:
        lines.append(f"{e.stage:<9} {fmt_bytes(e.memory):>14} {e.processes:>5} {fmt_bytes(e.disk):>10} "
                     f"{fmt_time(e.wall_s):>9} {e.core_s / 3600:>11.3g}  {e.basis}")
    disk = sum(e.disk for e in rows)
    lines.append(f"{'total':<9} {'':>14} {'':>5} {fmt_bytes(disk):>10} {fmt_time(sum(e.wall_s for e in rows)):>9} "
                 f"{sum(e.core_s for e in rows) / 3600:>11.3g}")
    dns = rows[0]
    if dns.gpu_memory or cfg.dns.backend == "torch":
        lines.append(f"dns runs on the torch backend ({cfg.dns.device}): {fmt_bytes(dns_member_bytes(cfg, max(dns_grids(cfg))))} "
                     "per GPU for the member's arrays (largest grid); its time is not modelled (the CPU core-hours "
                     "are an upper bound)")
    have, what = memory_available()
    where = Path(run_dir) if run_dir else Path("runs") / cfg.preset
    lines.append(f"this machine: {fmt_bytes(have)} of memory ({what}), {fmt_bytes(disk_free(where))} free on the "
                 f"file system of {where}; time: per-step cost model of suite/resources.py (1 core per process)")
    return "\n".join(lines)
