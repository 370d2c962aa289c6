"""Online (a posteriori) LES with physics and CNN closures, judged against the filtered DNS.

For each system, ``run_les`` starts an ensemble of LES members from the first snapshot of the FDNS
store's *test* members (``DIR/fdns/<system>.zarr``) and steps it on the LES grid with the solver
(:class:`solver.equation.Equation` + a stepper) once per closure, the closure Π being the
equation's explicit extra term (:mod:`suite.online`). All members of one closure are stepped
together as one batch. The result is compared with the FDNS of the same members.

The LES equation (the filtered equation of the store, CONTRACTS.md Π sign):

    ∂ω̄/∂t + J(ψ̄, ω̄) = ν∇²ω̄ − μω̄ − βv̄ + F̄ + Π_model,     F̄ = G F

with the store's system parameters and stepper, the exact LES-grid Jacobian J(ψ̄, ω̄) that Π was
formed with (:func:`solver.sgs.les_equation`: every LES mode below Nyquist is evolved, and the
closure's whole Π acts there, whatever the DNS's own dealiasing rule), and the steady forcing filtered by the store's filter G (the FDNS forcing is the filtered one). Stochastically
forced systems are not supported (their filtered forcing is not reproducible on the LES grid).

dt rule. ``dt_les = sample_interval / ceil(sample_interval / (dt_dns · les.dt_factor))``: the
largest step no larger than ``dt_dns × les.dt_factor`` that lands on every FDNS snapshot time, so
LES and FDNS are compared at the same times. As in the solver, the CFL number is watched, not
imposed: a member whose field is not finite or whose CFL number exceeds ``dns.cfl_max`` (checked
every :data:`CHECK_EVERY` steps and at every snapshot) is *blown up*: its time is recorded, it is
dropped from the batch, and the other members go on. A blown-up member is recorded, never fatal.

Closures (``les.closures`` or ``--closures``): ``none``, ``smag``, ``leith``, ``dsmag``, ``dleith``,
``cnn:base`` (``DIR/models/base``), ``cnn:<mask>`` (the TL network of the simulated system,
``DIR/models/tl/<system>/f<fraction>_s<seed>/<mask>`` with the first ``transfer.fractions`` and
``transfer.seeds``), ``cnn:<target>/<mask>`` (another target's TL network) and
``cnn:<target>/f<fraction>_s<seed>/<mask>`` (fully explicit). ``none`` is always run (first): the
skill scores are relative to it. A bare ``cnn:<mask>`` is skipped on systems that are not transfer
targets (the base system has no TL network), so one closure list serves every system.

Metrics (one row per closure in ``DIR/les/<system>_metrics.csv``), on the snapshots both the LES
and the FDNS have at times 0 < t ≤ les.duration (at most :data:`MAX_SNAPSHOTS`, evenly strided),
members pooled, blown-up members' snapshots after the blow-up excluded:

- ``e_spec_<band>``, ``z_spec_<band>``: RMS over the shells of the band of log10(S_LES/S_FDNS) of
  the mean energy / enstrophy spectra; bands ``low``, ``mid``, ``high`` split [1, k_c] in three
  equal parts in log k (k_c = n_les/2 − 1, the highest shell the LES evolves whole),
  ``all`` = every shell 1..k_c;
- ``pdf_w1``: 1D Wasserstein distance between the pooled vorticity values, divided by the FDNS
  vorticity standard deviation;
- ``energy_err``, ``enstrophy_err``: relative RMS difference of E(t), Z(t) (LES grid, member by
  member) from the FDNS ones at the common times;
- ``backscatter``, ``backscatter_fdns``: mean fraction of points with T = Π∇²ω̄ < 0 (model Π on
  the LES field; true Π on the FDNS);
- ``stable_members``, ``t_blowup_min`` (NaN if none blew up), ``steps_per_s`` (ensemble steps);
- ``skill_<d>`` = 1 − d(closure)/d(none) for d in ``e_spec_all``, ``z_spec_all``, ``pdf_w1``,
  ``energy_err`` (> 0: better than no closure).

Benchmarks time :func:`measure_les_step` (steps/s with and without the CNN closure).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from solver.sgs import LES_CONVENTIONS

from ..config import CLOSURES, Config
from ..errors import ConfigError, DataError
from ..provenance import provenance

LES_SCHEMA_VERSION = 2  # 2: exact LES Jacobian, every mode below Nyquist evolved (1: 2/3 rule)
CHECK_EVERY = 20
MAX_SNAPSHOTS = 40
BANDS = ("low", "mid", "high")
SKILL_OF = ("e_spec_all", "z_spec_all", "pdf_w1", "energy_err")
PDF_BINS = 81


# --------------------------------------------------------------------------------------------
# closures and where their networks live


@dataclass(frozen=True)
class ClosureSpec:
    """One closure of a run: ``label`` as given, ``kind`` (none|physics|cnn), ``name`` (the
    physics model or the CNN's mask/"base"), ``model_dir`` (CNN only)."""

    label: str
    kind: str
    name: str
    model_dir: Path | None = None


def _accepted(layers: int) -> str:
    return (f"{', '.join(CLOSURES)}, cnn:base, cnn:<mask>, cnn:<target>/<mask> or "
            f"cnn:<target>/f<fraction>_s<seed>/<mask> (mask: {layers} characters 0/1, layer 1 first)")


def parse_closure(label: str, cfg: Config, system: str, run_dir) -> ClosureSpec:
    """Resolve one closure name to a :class:`ClosureSpec` (ConfigError if unknown or malformed;
    the model folder is not checked here, see :func:`check_models`)."""
    from ..transfer import Job, model_dir

    label = str(label).strip()
    layers = cfg.model.layers
    if label in CLOSURES:
        return ClosureSpec(label, "none" if label == "none" else "physics", label)
    if not label.startswith("cnn:"):
        raise ConfigError(f"les.closures contains {label!r}: accepted are {_accepted(layers)}", field="les.closures")
    parts = label[4:].split("/")
    if parts == ["base"]:
        return ClosureSpec(label, "cnn", "base", Path(run_dir) / "models" / "base")
    target, group = system, None
    if len(parts) == 2:
        target = parts[0]
    elif len(parts) == 3:
        target, group = parts[0], parts[1]
    elif len(parts) != 1:
        raise ConfigError(f"les.closures contains {label!r}: accepted are {_accepted(layers)}", field="les.closures")
    mask = parts[-1]
    if len(mask) != layers or set(mask) - {"0", "1"} or "1" not in mask:
        raise ConfigError(f"les.closures contains {label!r}: the mask {mask!r} must be {layers} characters 0/1 "
                          f"with at least one 1 (model.layers = {layers}); accepted are {_accepted(layers)}",
                          field="les.closures")
    cfg.system(target)  # ConfigError naming the accepted systems
    if group is None:
        job = Job(target, float(cfg.transfer.fractions[0]), int(cfg.transfer.seeds[0]), "tl", mask)
        folder = model_dir(run_dir, job)
    else:
        if not (group.startswith("f") and "_s" in group):
            raise ConfigError(f"les.closures contains {label!r}: {group!r} must be f<fraction>_s<seed> "
                              "(e.g. f0.1_s0)", field="les.closures")
        folder = Path(run_dir) / "models" / "tl" / target / group / mask
    return ClosureSpec(label, "cnn", mask, folder)


def resolve_closures(labels, cfg: Config, system: str, run_dir) -> list[ClosureSpec]:
    """Every closure of a run, ``none`` first (added if absent), duplicates dropped.

    A bare ``cnn:<mask>`` names the TL network of the simulated system: it is skipped (not an
    error) for a system that is not one of ``transfer.targets`` (e.g. the base system)."""
    out, seen = [parse_closure("none", cfg, system, run_dir)], {"none"}
    for lab in labels:
        spec = parse_closure(lab, cfg, system, run_dir)
        bare_tl = spec.kind == "cnn" and spec.name != "base" and "/" not in spec.label
        if bare_tl and system not in cfg.transfer.targets:
            continue
        if spec.label not in seen:
            seen.add(spec.label)
            out.append(spec)
    return out


def check_models(specs: list[ClosureSpec]) -> None:
    """ConfigError naming the path and the command to run first for every missing network."""
    for s in specs:
        if s.kind == "cnn" and not (s.model_dir / "model.pt").is_file():
            what = ("`turbtl train` (the base network)" if s.name == "base" else
                    "`turbtl transfer` for that target, fraction and seed (the TL network)")
            raise ConfigError(f"les.closures contains {s.label!r}: no network at {s.model_dir / 'model.pt'}; "
                              f"run {what} first", field="les.closures")


# --------------------------------------------------------------------------------------------
# the LES set-up of a store


@dataclass(frozen=True)
class LESSetup:
    """Everything an LES of a store's system needs besides the closure.

    ``filter`` None means an unfiltered forcing (e.g. an "LES" on the DNS grid)."""

    n: int
    L: float
    re: float
    mu: float
    beta: float
    hyperviscosity: float
    hyper_order: int
    forcing: str
    kf: float
    dt: float
    stepper: str
    filter: str | None
    delta: float
    sample_interval: float
    cfl_max: float = 2.0
    dt_dns: float = 0.0
    dt_factor: float = 1.0

    @property
    def steps_per_sample(self) -> int:
        return int(round(self.sample_interval / self.dt))

    @classmethod
    def from_store(cls, attrs: dict, dt_factor: float = 1.0, cfl_max: float = 2.0) -> "LESSetup":
        """From an FDNS store's attributes (the dt rule of the module docstring)."""
        need = ("re", "mu", "beta", "kf", "forcing", "L", "n_les", "dt", "filter", "filter_width", "sample_interval")
        missing = [k for k in need if k not in attrs]
        if missing:
            raise DataError(f"FDNS store attributes {missing} are missing (re-create it with `turbtl dns --force`)",
                            field="store")
        if attrs["forcing"] == "stochastic":
            raise ConfigError("online LES of a stochastically forced system is not supported (its filtered "
                              "forcing cannot be reproduced on the LES grid)", field="les.systems")
        si, dt_dns = float(attrs["sample_interval"]), float(attrs["dt"])
        per = max(1, math.ceil(si / (dt_dns * dt_factor) - 1e-9))
        return cls(n=int(attrs["n_les"]), L=float(attrs["L"]), re=float(attrs["re"]), mu=float(attrs["mu"]),
                   beta=float(attrs["beta"]), hyperviscosity=float(attrs.get("hyperviscosity", 0.0)),
                   hyper_order=int(attrs.get("hyper_order", 2)), forcing=str(attrs["forcing"]),
                   kf=float(attrs["kf"]), dt=si / per, stepper=str(attrs.get("stepper", "ab2cn")),
                   filter=str(attrs["filter"]), delta=float(attrs["filter_width"]), sample_interval=si,
                   cfl_max=float(cfl_max), dt_dns=dt_dns, dt_factor=float(dt_factor))

    def describe(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["dt_rule"] = "dt = sample_interval / ceil(sample_interval / (dt_dns * dt_factor))"
        return d


class FilteredForcing:
    """The steady forcing the filtered equation sees: G(k) F̂ (``hat``) of a steady forcing."""

    stochastic = False

    def __init__(self, forcing, transfer: np.ndarray, filter_name: str):
        self.base, self.filter_name = forcing, filter_name
        self.hat = forcing.hat * transfer

    def describe(self) -> dict:
        return self.base.describe() | {"filtered": self.filter_name}


def build_les(setup: LESSetup, backend, closure_term_factory=None):
    """(grid, equation, stepper, term) of an LES on ``backend`` (n = setup.n).

    ``closure_term_factory(grid)`` returns the online closure term (:mod:`suite.online`)
    or None (no closure)."""
    from solver import Grid, Parameters, make_forcing, make_stepper
    from solver.filters import make_filter
    from solver.sgs import les_equation

    grid = Grid(setup.n, setup.L, backend=backend)
    params = Parameters(re=setup.re, mu=setup.mu, beta=setup.beta, hyperviscosity=setup.hyperviscosity,
                        hyper_order=setup.hyper_order)
    forcing = make_forcing(grid, setup.forcing, kf=setup.kf) if setup.forcing != "none" else None
    if forcing is not None and setup.filter is not None:
        G = make_filter(setup.filter, setup.delta).transfer(grid.np["kx"], grid.np["ky"])
        forcing = FilteredForcing(forcing, G, setup.filter)
    term = closure_term_factory(grid) if closure_term_factory is not None else None
    eq = les_equation(grid, params, forcing=forcing, extra=term)
    return grid, eq, make_stepper(setup.stepper, eq, dt=setup.dt), term


# --------------------------------------------------------------------------------------------
# the ensemble loop


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


def run_ensemble(grid, equation, stepper, omega_hat0, n_steps: int, snap_steps, series_every: int = 1,
                 cfl_max: float = 2.0, check_every: int = CHECK_EVERY, term=None, progress: bool = False,
                 desc: str = "les") -> Trajectory:
    """Step a batch of members ``omega_hat0`` (M, n, n//2+1) for ``n_steps`` steps, recording the
    physical vorticity at the step numbers ``snap_steps`` and E, Z every ``series_every`` steps.

    A member that is non-finite or has CFL > ``cfl_max`` (checked every ``check_every`` steps and
    at every snapshot) is recorded as blown up at that time and dropped from the batch."""
    from solver import diagnostics

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
    state = stepper.init_state(omega_hat0)
    alive = np.arange(M)
    lap = be.asarray(-grid.np["k2"])

    def check():
        nonlocal alive, state
        z = np.atleast_1d(diagnostics.enstrophy(grid, state.omega_hat))
        c = np.atleast_1d(diagnostics.cfl(grid, state.omega_hat, stepper.dt))
        bad = ~(np.isfinite(z) & np.isfinite(c) & (c <= cfl_max))
        if bad.any():
            traj.blowup_time[alive[bad]] = state.t
            keep = np.flatnonzero(~bad)
            alive = alive[keep]
            if len(alive):
                state.omega_hat = _take(be, state.omega_hat, keep)
                state.history = {k: _take(be, v, keep) for k, v in state.history.items()}

    def record(step):
        w = state.omega_hat
        if step % series_every == 0:
            i = step // series_every
            traj.energy[alive, i] = diagnostics.energy(grid, w)
            traj.enstrophy[alive, i] = diagnostics.enstrophy(grid, w)
        if step in snap_pos:
            j = snap_pos[step]
            omega = be.irfft2(w)
            traj.omega[alive, j] = be.to_numpy(omega)
            if term is None:
                traj.backscatter[alive, j] = 0.0
            else:
                T = term.pi(w) * be.irfft2(w * lap)
                traj.backscatter[alive, j] = be.to_numpy((T < 0).double() if be.is_torch else (T < 0)).mean(axis=(-2, -1))

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n_steps, desc=desc, unit="step", leave=False)
    check()
    if len(alive):
        record(0)
    wall = 0.0
    step = 0
    try:
        while step < n_steps and len(alive):
            t0 = time.perf_counter()
            stepper(state)
            be.synchronize()
            if step > 0:  # the first step builds plans and workspaces: not counted in the rate
                wall += time.perf_counter() - t0
            step += 1
            if step % check_every == 0 or step in snap_pos or step == n_steps:
                check()
            if len(alive):
                record(step)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    traj.steps, traj.wall_s = step, wall
    traj.timed_steps = max(0, step - 1)
    return traj


# --------------------------------------------------------------------------------------------
# metrics (pure functions on numpy arrays)


def spectral_bands(kmax: int) -> dict[str, tuple[float, float]]:
    """low/mid/high: [1, k_c] split in three equal parts in log k (inclusive upper edges); all."""
    e1, e2 = kmax ** (1 / 3), kmax ** (2 / 3)
    return {"low": (1.0, e1), "mid": (e1, e2), "high": (e2, float(kmax)), "all": (1.0, float(kmax))}


def log_spectrum_error(k, s_model, s_true, band: tuple[float, float]) -> float:
    """RMS over the shells k in (lo, hi] (lo included when lo = 1) of log10(s_model / s_true).

    Shells where the truth is zero are skipped; a zero or non-finite model value gives inf/NaN."""
    k, sm, st = (np.asarray(a, dtype=float) for a in (k, s_model, s_true))
    lo, hi = band
    sel = ((k > lo) | ((lo <= 1.0) & (k >= lo))) & (k <= hi + 1e-9) & (st > 0)
    if not sel.any():
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log10(sm[sel] / st[sel])
    return float(np.sqrt(np.mean(r ** 2)))


def wasserstein1(a, b) -> float:
    """1D Wasserstein (earth mover's) distance between the empirical distributions of ``a`` and ``b``
    (non-finite values dropped): ∫ |F_a(x) − F_b(x)| dx."""
    from scipy.stats import wasserstein_distance
    a, b = np.ravel(a), np.ravel(b)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def relative_rms(model, true) -> float:
    """sqrt(mean (m − t)²) / sqrt(mean t²) over the entries where both are finite."""
    m, t = np.asarray(model, float), np.asarray(true, float)
    ok = np.isfinite(m) & np.isfinite(t)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((m[ok] - t[ok]) ** 2) / np.mean(t[ok] ** 2)))


def skill(d_model: float, d_none: float) -> float:
    """1 − d(model, truth) / d(none, truth): 0 for no closure, 1 for a perfect one, < 0 if worse."""
    if not (np.isfinite(d_none) and d_none > 0):
        return float("nan")
    return float(1.0 - d_model / d_none)


def mean_spectra(grid, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, mean E(k), mean Z(k)) over the finite snapshots of ``omega`` (..., n, n) on a numpy grid."""
    from solver import diagnostics

    w = omega.reshape(-1, grid.n, grid.n)
    w = w[np.isfinite(w).all(axis=(-2, -1))]
    if len(w) == 0:
        k, _ = diagnostics.energy_spectrum(grid, np.zeros(grid.backend.spectral_shape, complex))
        return k / grid.kscale, np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    wh = np.fft.rfft2(w)
    k, e = diagnostics.energy_spectrum(grid, wh)
    _, z = diagnostics.enstrophy_spectrum(grid, wh)
    return k / grid.kscale, e.mean(axis=0), z.mean(axis=0)


def series_of(grid, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E and Z of physical snapshots (..., n, n) on a numpy grid (NaN where not finite)."""
    from solver import diagnostics

    shape = omega.shape[:-2]
    w = omega.reshape(-1, grid.n, grid.n)
    ok = np.isfinite(w).all(axis=(-2, -1))
    e = np.full(len(w), np.nan)
    z = np.full(len(w), np.nan)
    if ok.any():
        wh = np.fft.rfft2(w[ok])
        e[ok] = np.atleast_1d(diagnostics.energy(grid, wh))
        z[ok] = np.atleast_1d(diagnostics.enstrophy(grid, wh))
    return e.reshape(shape), z.reshape(shape)


def pdf(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.ravel(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.full(len(edges) - 1, np.nan)
    return np.histogram(v, bins=edges, density=True)[0]


def closure_metrics(grid, omega: np.ndarray, omega_true: np.ndarray, backscatter: np.ndarray,
                    backscatter_true: np.ndarray) -> dict:
    """Distances of one closure's LES snapshots ``omega`` (member, time, n, n) from the FDNS ones at
    the same members and times (t > 0 only), as in the module docstring (no skill: see :func:`add_skill`)."""
    kmax = grid.n // 2 - 1  # every LES mode below Nyquist is evolved
    k, e, z = mean_spectra(grid, omega)
    _, et, zt = mean_spectra(grid, omega_true)
    out = {}
    for name, band in spectral_bands(kmax).items():
        out[f"e_spec_{name}"] = log_spectrum_error(k, e, et, band)
        out[f"z_spec_{name}"] = log_spectrum_error(k, z, zt, band)
    sd = float(np.nanstd(omega_true))
    out["pdf_w1"] = wasserstein1(omega, omega_true) / sd if sd > 0 else float("nan")
    el, zl = series_of(grid, omega)
    ef, zf = series_of(grid, omega_true)
    out["energy_err"] = relative_rms(el, ef)
    out["enstrophy_err"] = relative_rms(zl, zf)
    out["backscatter"] = float(np.nanmean(backscatter)) if np.isfinite(backscatter).any() else float("nan")
    out["backscatter_fdns"] = float(np.nanmean(backscatter_true))
    return out


def add_skill(rows: list[dict]) -> list[dict]:
    """Add ``skill_<d>`` = 1 − d/d(none) to every row (the ``none`` row is the reference)."""
    ref = next(r for r in rows if r["closure"] == "none")
    for r in rows:
        for d in SKILL_OF:
            r[f"skill_{d}"] = skill(r[d], ref[d])
    return rows


# --------------------------------------------------------------------------------------------
# one system


def les_path(run_dir, system: str) -> Path:
    return Path(run_dir) / "les" / f"{system}.zarr"


def metrics_path(run_dir, system: str) -> Path:
    return Path(run_dir) / "les" / f"{system}_metrics.csv"


@dataclass
class Truth:
    """The FDNS of the LES members: IC and the compared snapshots."""

    members: np.ndarray
    store_times: np.ndarray  # every stored time
    omega0: np.ndarray  # (M, n, n) at the first snapshot
    snap_index: np.ndarray  # time indices compared (t > 0, <= duration)
    omega: np.ndarray  # (M, T, n, n)
    backscatter: np.ndarray  # (M, T)


def read_truth(store, n_members: int, duration: float, sample_interval: float) -> Truth:
    """The first ``n_members`` test members of the store and their snapshots at 0 < t ≤ duration
    (at most :data:`MAX_SNAPSHOTS`, evenly strided)."""
    from solver.sgs import backscatter_fraction, enstrophy_transfer

    from ..fdns import open_fdns, reading

    ds = open_fdns(store)
    split = np.asarray(ds["split"].values).astype(str)
    test = np.flatnonzero(split == "test")
    if len(test) < n_members:
        raise ConfigError(f"les.members = {n_members}: the store {store} has {len(test)} complete test member(s); "
                          f"accepted range [1, {max(1, len(test))}]", field="les.members")
    pos = test[:n_members]
    times = np.asarray(ds["time"].values, float)
    complete = np.asarray(ds["complete"].values, bool)[pos]
    if not complete[:, 0].all() or abs(times[0]) > 1e-9:
        raise DataError(f"{store}: the first snapshot (t = 0) of the test members is not complete; "
                        "finish `turbtl dns` first", field="store")
    if duration < sample_interval * (1 - 1e-9):
        raise ConfigError(f"les.duration = {duration}: must be >= the store's sample_interval = {sample_interval} "
                          "so that LES and FDNS share snapshots", field="les.duration")
    idx = np.flatnonzero((times > 1e-9) & (times <= duration + 1e-9) & complete.all(axis=0))
    if len(idx) == 0:
        raise DataError(f"{store}: no complete test snapshots in (0, {duration}]", field="store")
    stride = math.ceil(len(idx) / MAX_SNAPSHOTS)
    idx = idx[stride - 1::stride]
    sub = ds[["omega", "pi"]].isel(member=pos)
    with reading(store):
        omega0 = sub["omega"].isel(time=0).values
        om = sub["omega"].isel(time=idx).values
        pi = sub["pi"].isel(time=idx).values
    L = float(ds.attrs.get("L", 2 * math.pi))
    bs = backscatter_fraction(enstrophy_transfer(pi, om, L))
    return Truth(members=np.asarray(ds["member"].values)[pos], store_times=times, omega0=omega0,
                 snap_index=idx, omega=om, backscatter=np.asarray(bs).reshape(om.shape[:2]))


def _load_term_factory(spec: ClosureSpec, setup: LESSetup, cfg: Config):
    from ..online import make_closure

    if spec.kind == "none":
        return None
    if spec.kind == "physics":
        return lambda grid: make_closure(spec.name, grid, delta=setup.delta, cs=cfg.les.cs, cl=cfg.les.cl)
    from ..model import load_model
    model, norm, _ = load_model(spec.model_dir)
    return lambda grid: make_closure("cnn", grid, model=model, norm=norm, label=spec.label)


def make_les_backend(cfg: Config, n: int):
    """The LES backend: dns.backend / dns.device / dns.dtype of the configuration, serial."""
    from solver.fft import make_backend
    d = cfg.dns
    return make_backend(n, backend=d.backend, dtype=d.dtype, device=d.device if d.backend == "torch" else "cpu",
                        threads=d.threads)


@dataclass
class SystemResult:
    system: str
    status: str
    rows: list = field(default_factory=list)
    path: str = ""
    wall_s: float = 0.0

    def summary(self) -> str:
        if self.status == "skipped":
            return f"les {self.system}: {self.path} kept (use --force to redo)"
        parts = []
        for r in self.rows:
            stab = f"{r['stable_members']}/{r['members']}"
            parts.append(f"{r['closure']} stable {stab} skill(E spec) {r['skill_e_spec_all']:.2f}")
        return f"les {self.system}: " + "; ".join(parts) + f" in {self.wall_s:.1f} s -> {self.path}"


def run_system(cfg: Config, system: str, run_dir, specs: list[ClosureSpec], *, force: bool = False,
               progress: bool = True) -> SystemResult:
    """Run every closure's LES ensemble of one system, write the zarr, the CSV and the figures."""
    from solver import Grid
    from solver.fft import make_backend
    from solver.initial import from_physical

    from ..dns import store_path
    from ..fdns import read_attrs

    out = les_path(run_dir, system)
    if out.exists() and not force:
        return SystemResult(system, "skipped", path=str(out))
    t_all = time.perf_counter()
    store = store_path(run_dir, system)
    attrs = read_attrs(store)
    setup = LESSetup.from_store(attrs, cfg.les.dt_factor, cfg.dns.cfl_max)
    truth = read_truth(store, cfg.les.members, cfg.les.duration, setup.sample_interval)
    n_steps = max(1, math.ceil(cfg.les.duration / setup.dt - 1e-9))
    snap_steps = [0] + [int(i) * setup.steps_per_sample for i in truth.snap_index]
    snap_steps = [s for s in snap_steps if s <= n_steps]
    series_every = max(1, setup.steps_per_sample // 10)
    grid_np = Grid(setup.n, setup.L, backend=make_backend(setup.n, threads=1))

    trajs, rows, terms = {}, [], {}
    for spec in specs:
        backend = make_les_backend(cfg, setup.n)
        factory = _load_term_factory(spec, setup, cfg)
        grid, eq, stepper, term = build_les(setup, backend, factory)
        terms[spec.label] = {} if term is None else {k: v for k, v in term.describe().items() if k != "norm"}
        w0 = from_physical(grid, truth.omega0)
        tr = run_ensemble(grid, eq, stepper, w0, n_steps, snap_steps, series_every, setup.cfl_max, term=term,
                          progress=progress, desc=f"les {system} {spec.label}")
        trajs[spec.label] = tr
        m = closure_metrics(grid_np, tr.omega[:, 1:], truth.omega, tr.backscatter[:, 1:], truth.backscatter)
        stable = int(np.isnan(tr.blowup_time).sum())
        rows.append({"system": system, "closure": spec.label,
                     "model": "" if spec.model_dir is None else str(spec.model_dir),
                     "members": len(tr.blowup_time), "stable_members": stable,
                     "t_blowup_min": float(np.nanmin(tr.blowup_time)) if stable < len(tr.blowup_time) else float("nan"),
                     **m, "steps_per_s": tr.steps_per_s})
    add_skill(rows)
    ds = _dataset(cfg, system, setup, truth, specs, trajs, rows, terms, grid_np, store)
    ds.attrs["backend"] = backend.describe()
    _write(ds, out, force)
    _write_csv(rows, metrics_path(run_dir, system))
    figures(ds, Path(run_dir) / "figures", system)
    return SystemResult(system, "done", rows, str(out), time.perf_counter() - t_all)


def _dataset(cfg, system, setup, truth, specs, trajs, rows, terms, grid_np, store):
    import xarray as xr

    labels = [s.label for s in specs]
    any_tr = trajs[labels[0]]
    k, _, _ = mean_spectra(grid_np, truth.omega)
    spec_e, spec_z, pdfs = [], [], []
    sd = float(np.nanstd(truth.omega))
    edges = np.linspace(-5 * sd, 5 * sd, PDF_BINS + 1) + float(np.nanmean(truth.omega))
    for lab in labels:
        _, e, z = mean_spectra(grid_np, trajs[lab].omega[:, 1:])
        spec_e.append(e)
        spec_z.append(z)
        pdfs.append(pdf(trajs[lab].omega[:, 1:], edges))
    _, et, zt = mean_spectra(grid_np, truth.omega)
    ef, zf = series_of(grid_np, truth.omega)
    h = setup.L / setup.n
    st = lambda name: np.stack([getattr(trajs[lab], name) for lab in labels])  # noqa: E731
    ds = xr.Dataset(
        {"omega": (("closure", "member", "time", "y", "x"), st("omega")),
         "backscatter": (("closure", "member", "time"), st("backscatter")),
         "energy": (("closure", "member", "t_series"), st("energy")),
         "enstrophy": (("closure", "member", "t_series"), st("enstrophy")),
         "blowup_time": (("closure", "member"), st("blowup_time")),
         "spectrum_energy": (("closure", "k"), np.stack(spec_e)),
         "spectrum_enstrophy": (("closure", "k"), np.stack(spec_z)),
         "pdf": (("closure", "omega_bin"), np.stack(pdfs)),
         "fdns_omega": (("member", "time_fdns", "y", "x"), truth.omega),
         "fdns_backscatter": (("member", "time_fdns"), truth.backscatter),
         "fdns_energy": (("member", "time_fdns"), ef),
         "fdns_enstrophy": (("member", "time_fdns"), zf),
         "fdns_spectrum_energy": (("k",), et), "fdns_spectrum_enstrophy": (("k",), zt),
         "fdns_pdf": (("omega_bin",), pdf(truth.omega, edges))},
        coords={"closure": labels, "member": truth.members, "time": any_tr.times,
                "time_fdns": truth.store_times[truth.snap_index], "t_series": any_tr.series_times,
                "k": k, "omega_bin": 0.5 * (edges[1:] + edges[:-1]),
                "y": np.arange(setup.n) * h, "x": np.arange(setup.n) * h})
    ds["steps_per_s"] = ("closure", np.array([r["steps_per_s"] for r in rows]))
    ds.attrs = {"kind": "turbtl-les", "schema_version": LES_SCHEMA_VERSION, "system": system, "store": str(store),
                **LES_CONVENTIONS,
                "setup": json.dumps(setup.describe()), "closures": json.dumps(terms, default=str),
                "metrics": json.dumps(rows, default=float),
                "comparison": "snapshots at 0 < t <= les.duration shared by LES and FDNS (time index 0 is the IC)",
                "provenance": json.dumps(provenance(cfg.to_dict(), system=system, stage="les"), default=str)}
    return ds


def _write(ds, out: Path, force: bool) -> None:
    """Write the zarr store to a temporary folder, then move it into place."""
    import warnings
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=False)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _write_csv(rows: list[dict], path: Path) -> None:
    import pandas as pd
    from ..rundir import write_bytes_atomic
    write_bytes_atomic(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g").encode())


def open_les(path):
    """The LES result store as an xarray Dataset (DataError if missing or foreign)."""
    import xarray as xr
    path = Path(path)
    if not path.exists():
        raise DataError(f"LES store {path}: not found (run `turbtl les` first)", field="store")
    ds = xr.open_zarr(str(path), consolidated=False)
    if ds.attrs.get("kind") != "turbtl-les":
        raise DataError(f"{path}: not an LES store written by turbtl les", field="store")
    return ds


# --------------------------------------------------------------------------------------------
# figures and the table


def figures(ds, folder: Path, system: str) -> list[Path]:
    """``les_<system>_spectra.png`` (E(k), Z(k) per closure vs FDNS) and ``les_<system>_pdf.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    k = ds["k"].values
    kc = (int(ds.sizes["x"]) - 1) // 3
    sel = (k >= 1) & (k <= kc)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, var, lab in ((axes[0], "spectrum_energy", "E(k)"), (axes[1], "spectrum_enstrophy", "Z(k)")):
        ax.loglog(k[sel], ds[f"fdns_{var}"].values[sel], "k-", lw=2.5, label="FDNS")
        for c in ds["closure"].values:
            ax.loglog(k[sel], ds[var].sel(closure=c).values[sel], "-", lw=1.2, label=str(c))
        ax.set_xlabel("k")
        ax.set_ylabel(lab)
        ax.set_title(f"{system}: {lab}, LES vs FDNS")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    p1 = folder / f"les_{system}_spectra.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    b = ds["omega_bin"].values
    ax.semilogy(b, ds["fdns_pdf"].values, "k-", lw=2.5, label="FDNS")
    for c in ds["closure"].values:
        ax.semilogy(b, ds["pdf"].sel(closure=c).values, "-", lw=1.2, label=str(c))
    ax.set_xlabel("vorticity")
    ax.set_ylabel("PDF")
    ax.set_title(f"{system}: vorticity PDF")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = folder / f"les_{system}_pdf.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return [p1, p2]


TABLE_COLUMNS = ("closure", "stable_members", "t_blowup_min", "e_spec_low", "e_spec_mid", "e_spec_high",
                 "pdf_w1", "energy_err", "backscatter", "skill_e_spec_all", "skill_pdf_w1", "steps_per_s")


def format_table(rows: list[dict]) -> str:
    """The metrics as a fixed-width text table (a subset of the CSV's columns)."""
    head = " ".join(f"{c:>16}" for c in TABLE_COLUMNS)
    lines = [head]
    for r in rows:
        cells = []
        for c in TABLE_COLUMNS:
            v = r[c]
            cells.append(f"{v:>16}" if isinstance(v, (str, int)) else f"{v:>16.4g}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# every system


def prepare(cfg: Config, run_dir, systems=None, closures=None) -> dict[str, list[ClosureSpec]]:
    """Validate everything (systems, closures, networks, stores) before anything is written."""
    from ..dns import store_path
    from ..fdns import read_attrs

    systems = list(systems or cfg.les.systems)
    out = {}
    for s in systems:
        cfg.system(s)
        specs = resolve_closures(closures or cfg.les.closures, cfg, s, run_dir)
        check_models(specs)
        attrs = read_attrs(store_path(run_dir, s))  # DataError: missing / foreign store
        LESSetup.from_store(attrs, cfg.les.dt_factor, cfg.dns.cfl_max)
        out[s] = specs
    return out


def run_les(cfg: Config, run_dir, *, systems=None, closures=None, force: bool = False, progress: bool = True,
            log=print) -> list[SystemResult]:
    """The LES stage for ``systems`` (default ``les.systems``) and ``closures`` (default
    ``les.closures``). Returns one :class:`SystemResult` per system."""
    plan = prepare(cfg, run_dir, systems, closures)
    results = []
    for s, specs in plan.items():
        r = run_system(cfg, s, run_dir, specs, force=force, progress=progress)
        if r.status == "done":
            log(format_table(r.rows))
        log(r.summary())
        results.append(r)
    return results


# --------------------------------------------------------------------------------------------
# performance


def measure_les_step(n: int = 128, members: int = 4, model=None, steps: int = 20, repeats: int = 3,
                     backend: str = "numpy", device: str = "cpu", dtype: str = "float64", seed: int = 0) -> dict:
    """LES steps/s without a closure and with a CNN closure (the closure's overhead), same set-up.

    A forced LES (Re 2e4, k_f 4, μ 0.1, Gaussian-filtered forcing, AB2-CN, 2/3 rule) of ``members``
    members on an ``n``² grid from a random field; ``model`` a ClosureCNN (default: the paper's
    network with random weights, float32). Best of ``repeats`` runs of ``steps`` steps each,
    interleaved. Returns steps/s and member-steps/s for both and the overhead ratio."""
    import torch

    from solver.fft import make_backend
    from solver.initial import random_field

    from ..model import paper_model
    from ..online import make_closure

    torch.manual_seed(seed)
    model = model if model is not None else paper_model()
    norm = {"mean": {"psi": 0.0, "omega": 0.0, "pi": 0.0}, "std": {"psi": 1.0, "omega": 10.0, "pi": 1.0}}
    L = 2 * math.pi
    setup = LESSetup(n=n, L=L, re=2e4, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                     kf=4.0, dt=1e-3, stepper="ab2cn", filter="gaussian",
                     delta=2 * L / n, sample_interval=1e-3)
    runs = {}
    for name in ("none", "cnn"):
        be = make_backend(n, backend=backend, dtype=dtype, device=device)
        fac = None if name == "none" else (lambda g: make_closure("cnn", g, model=model, norm=norm))
        grid, eq, stepper, _ = build_les(setup, be, fac)
        state = stepper.init_state(random_field(grid, kp=10, seed=seed, members=members))
        for _ in range(2):
            stepper(state)
        runs[name] = (be, stepper, state)

    def timed(name):
        be, stepper, state = runs[name]
        be.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            stepper(state)
        be.synchronize()
        return (time.perf_counter() - t0) / steps

    best = {"none": math.inf, "cnn": math.inf}
    for _ in range(repeats):
        for name in best:
            best[name] = min(best[name], timed(name))
    return {"n": n, "members": members, "backend": runs["none"][0].describe(),
            "steps_per_s_none": 1 / best["none"], "steps_per_s_cnn": 1 / best["cnn"],
            "member_steps_per_s_none": members / best["none"], "member_steps_per_s_cnn": members / best["cnn"],
            "ms_per_step_none": 1e3 * best["none"], "ms_per_step_cnn": 1e3 * best["cnn"],
            "overhead": best["cnn"] / best["none"],
            "cnn_gflop_per_step": model.flops_per_sample(n, n) * members / 1e9}
