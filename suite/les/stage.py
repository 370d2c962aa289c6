"""The LES stage (``turbtl les``): every closure of every system, validated first, then run,
measured against the FDNS and written (store, metrics table, figures)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from solver import Grid
from solver.backends import make_backend
from solver.initial import from_physical

from .. import layout
from ..config import Config
from ..fdns import read_attrs
from .closures import ClosureSpec, check_models, resolve_closures, term_factory
from .figures import figures, format_table
from .loop import run_ensemble
from .metrics import add_skill, closure_metrics
from .setup import LESSetup, build_les, make_les_backend
from .store import dataset, read_truth, write_csv, write_store


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
    out = layout.les_store(run_dir, system)
    if out.exists() and not force:
        return SystemResult(system, "skipped", path=str(out))
    t_all = time.perf_counter()
    store = layout.fdns_store(run_dir, system)
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
        factory = term_factory(spec, setup.delta, cfg)
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
    ds = dataset(cfg, system, setup, truth, specs, trajs, rows, terms, grid_np, store)
    ds.attrs["backend"] = backend.summary()
    write_store(ds, out)
    write_csv(rows, layout.les_metrics(run_dir, system))
    figures(ds, layout.figures_dir(run_dir), system)
    return SystemResult(system, "done", rows, str(out), time.perf_counter() - t_all)


def prepare(cfg: Config, run_dir, systems=None, closures=None) -> dict[str, list[ClosureSpec]]:
    """Validate everything (systems, closures, networks, stores) before anything is written."""
    systems = list(systems or cfg.les.systems)
    out = {}
    for s in systems:
        cfg.system(s)
        specs = resolve_closures(closures or cfg.les.closures, cfg, s, run_dir)
        check_models(specs)
        attrs = read_attrs(layout.fdns_store(run_dir, s))  # DataError: missing / foreign store
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
