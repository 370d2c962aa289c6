"""The LES set-up of an FDNS store: parameters, the dt rule, the filtered forcing, and the solver
objects (grid, equation, stepper) of an LES on a backend."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from solver import Grid, Parameters, make_forcing, make_stepper
from solver.backends import make_backend
from solver.filters import make_filter
from solver.sgs import LES_JACOBIAN, les_equation

from ..config import Config
from ..errors import ConfigError, DataError


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
        """From an FDNS store's attributes (the dt rule of :mod:`suite.les`)."""
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
    grid = Grid(setup.n, setup.L, backend=backend)
    params = Parameters.from_system(setup)  # LESSetup has the System's parameter attributes
    forcing = (make_forcing(grid, setup.forcing, kf=setup.kf, dealias=LES_JACOBIAN["dealias"])
               if setup.forcing != "none" else None)
    if forcing is not None and setup.filter is not None:
        G = make_filter(setup.filter, setup.delta).transfer(grid.host.kx, grid.host.ky)
        forcing = FilteredForcing(forcing, G, setup.filter)
    term = closure_term_factory(grid) if closure_term_factory is not None else None
    eq = les_equation(grid, params, forcing=forcing, extra=term)
    return grid, eq, make_stepper(setup.stepper, eq, dt=setup.dt), term


def make_les_backend(cfg: Config, n: int):
    """The LES backend: dns.backend / dns.device / dns.dtype of the configuration, serial."""
    d = cfg.dns
    return make_backend(n, backend=d.backend, dtype=d.dtype, device=d.device if d.backend == "torch" else "cpu",
                        threads=d.threads)
