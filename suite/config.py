"""Presets, the catalog of systems, and their validation.

A configuration is a TOML document with the sections below. It comes from a preset shipped in
``suite/presets/<name>.toml`` (``--preset``) or from a user's file (``--config FILE``), which may
start from a preset with ``extends = "small"`` and override any field. Every field is checked
against the schema here; a bad value raises :class:`ConfigError` naming the field, the value and
the accepted range, before anything is written.

Systems (``base``, ``high_re``, ``kf25``, ``beta20``, ``decaying``) come from ``suite/systems.toml``;
a configuration may override their parameters or define new ones under ``[systems.<name>]``.

    >>> from suite.config import load_config
    >>> cfg = load_config(preset="ci")
    >>> cfg.grid.n_dns, cfg.system("base").re
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from solver import backends as solver_backends
from solver import closures as solver_closures
from solver import equation as solver_equation
from solver import filters as solver_filters
from solver import forcing as solver_forcing
from solver import grid as solver_grid
from solver import stepping as solver_stepping
from solver.filters import default_width

from .errors import ConfigError
from .masks import select

PRESET_DIR = Path(__file__).with_name("presets")
SYSTEMS_FILE = Path(__file__).with_name("systems.toml")

# --------------------------------------------------------------------------------------------
# rules


@dataclass(frozen=True)
class Spec:
    """One field: its type, default, rule (returns an error text or None) and a help line."""

    kind: type | tuple
    default: Any
    rule: Callable[[Any], str | None] | None = None
    help: str = ""
    item: type | None = None  # lists: the type of every entry (float entries accept integers)


def gt(lo):
    return lambda v: None if v > lo else f"must be > {lo}"


def ge(lo):
    return lambda v: None if v >= lo else f"must be >= {lo}"


def between(lo, hi, lo_open=False):
    def rule(v):
        ok = (v > lo if lo_open else v >= lo) and v <= hi
        return None if ok else f"must be in {'(' if lo_open else '['}{lo}, {hi}]"
    return rule


def choices(*opts):
    return lambda v: None if v in opts else f"must be one of {', '.join(map(str, opts))}"


def even_ge(lo):
    return lambda v: None if (v >= lo and v % 2 == 0) else f"must be an even integer >= {lo}"


def zero_or_even_ge(lo, zero_means: str):
    return lambda v: None if (v == 0 or (v >= lo and v % 2 == 0)) else \
        f"must be 0 ({zero_means}) or an even integer >= {lo}"


def odd_in(lo, hi):
    return lambda v: None if (lo <= v <= hi and v % 2 == 1) else f"must be an odd integer in [{lo}, {hi}]"


def each(rule):
    def r(values):
        for v in values:
            msg = rule(v)
            if msg:
                return f"every entry {msg} (got {v!r})"
        return None
    return r


def nonempty(values):
    return None if len(values) > 0 else "must not be empty"


def _all(*rules):
    def r(v):
        for rr in rules:
            m = rr(v)
            if m:
                return m
        return None
    return r


# The solver's choices come from its registries (one place per fact); the config only adds its own.
STEPPERS = solver_stepping.STEPPERS
DEALIAS = solver_grid.DEALIAS_RULES
JACOBIAN = solver_equation.JACOBIANS
FILTERS = tuple(solver_filters.FILTERS)
FORCINGS = solver_forcing.FORCINGS
INITS = ("random", "zero")  # [systems.*].init: a seeded random field (solver.initial.random_field) or rest
BACKENDS = solver_backends.BACKENDS
DTYPES = solver_backends.DTYPES
SUBSET_KINDS = ("singles", "pairs", "all", "prefixes", "suffixes")
AUGMENTS = ("none", "rot90")  # train.augment: suite.dataset.augment (rot90: also rotated by 90, 180, 270 degrees)
# forcings whose flows are statistically invariant under rotations of the plane by 90 degrees (with beta = 0)
ROTATION_INVARIANT_FORCINGS = ("cos-xy", "none", "stochastic")
CLOSURES = ("none", *solver_closures.MODELS)
MAX_STEPS = 1e12  # time steps per DNS member (the paper's preset: 2.1e6)

# Every section of a configuration. Lists are given as (list, element-rule).
SCHEMA: dict[str, dict[str, Spec]] = {
    "grid": {
        "L": Spec(float, 2 * math.pi, gt(0), "domain side length"),
        "n_dns": Spec(int, 64, even_ge(8), "DNS grid points per side (of every system without its own "
                      "systems.<name>.n_dns)"),
        "n_les": Spec(int, 16, even_ge(4), "LES grid points per side (divides n_dns)"),
    },
    "dns": {
        "systems": Spec(list, ["base"], nonempty, "systems to simulate", str),
        "backend": Spec(str, "numpy", choices(*BACKENDS), "FFT/array backend"),
        "device": Spec(str, "cpu", choices("cpu", "cuda", "auto"), "device for the torch backend"),
        "dtype": Spec(str, "float64", choices(*DTYPES), "floating point precision of the DNS"),
        "dt": Spec(float, 1e-3, gt(0), "time step"),
        "stepper": Spec(str, "ab2cn", choices(*STEPPERS), "time stepper"),
        "dealias": Spec(str, "2/3", choices(*DEALIAS), "dealiasing of the nonlinear term"),
        "jacobian": Spec(str, "advective", choices(*JACOBIAN), "form of the Jacobian"),
        "spinup_time": Spec(float, 1.0, ge(0), "time discarded before sampling"),
        "sample_interval": Spec(float, 0.1, gt(0), "time between stored snapshots"),
        "snapshots": Spec(int, 10, between(1, 10**7), "snapshots stored per member"),
        "members_train": Spec(int, 2, between(1, 10**5), "ensemble members for training"),
        "members_val": Spec(int, 1, between(0, 10**5), "ensemble members for validation"),
        "members_test": Spec(int, 1, between(1, 10**5), "ensemble members for testing"),
        "filter": Spec(str, "gaussian", choices(*FILTERS), "filter before coarse-graining"),
        "filter_width": Spec(float, 0.0, ge(0), "filter width Δ; 0 means 2L/n_les"),
        "seed": Spec(int, 0, between(0, 2**31 - 1), "base seed of the ensemble"),
        "chunk_time": Spec(int, 4, between(1, 10**5), "snapshots per zarr chunk"),
        "ranks_per_member": Spec(int, 1, between(1, 4096), "MPI ranks per ensemble member"),
        "checkpoint_interval": Spec(float, 0.0, ge(0), "time between checkpoints; 0 = at every chunk"),
        "cfl_max": Spec(float, 2.0, gt(0), "CFL number treated as a blow-up"),
        "threads": Spec(int, 0, between(0, 1024), "FFT threads per rank; 0 = automatic"),
    },
    "model": {
        "layers": Spec(int, 11, between(2, 32), "convolution layers L"),
        "width": Spec(int, 64, between(1, 1024), "channels of the hidden layers"),
        "kernel": Spec(int, 5, odd_in(1, 15), "kernel size (odd)"),
        "padding": Spec(str, "circular", choices("circular", "zeros"), "padding mode"),
    },
    "train": {
        "system": Spec(str, "base", None, "system the base network is trained on"),
        "epochs": Spec(int, 100, between(1, 100000), "training epochs"),
        "batch_size": Spec(int, 16, between(1, 65536), "global batch size (any world size)"),
        "lr": Spec(float, 5e-5, between(0, 10, lo_open=True), "Adam learning rate"),
        "seed": Spec(int, 0, between(0, 2**31 - 1), "training seed"),
        "fraction": Spec(float, 1.0, between(0, 1, lo_open=True), "fraction of training data used"),
        "bf16": Spec(bool, False, None, "bf16 autocast on GPU"),
        "augment": Spec(str, "none", choices(*AUGMENTS), "base-network training data: none, or rot90 (every "
                        "snapshot also rotated by 90, 180 and 270 degrees: 4x the samples; rotation-invariant "
                        "systems only)"),
    },
    "transfer": {
        "targets": Spec(list, ["high_re"], nonempty, "target systems", str),
        "subsets": Spec(str, "all", None, "singles|pairs|all|prefixes|suffixes or comma-separated masks"),
        "fractions": Spec(list, [0.1], _all(nonempty, each(between(0, 1, lo_open=True))),
                          "data fractions of the base training size", float),
        "seeds": Spec(list, [0], _all(nonempty, each(between(0, 2**31 - 1))), "repeat seeds", int),
        "epochs": Spec(int, 50, between(1, 100000), "unused: budgets are transfer.steps or transfer.epochs_by_layers "
                       "(kept so older configs load)"),
        "steps": Spec(int, 300, between(1, 10**7), "optimizer steps of every re-training, scratch and random run "
                      "(when transfer.epochs_by_layers is empty)"),
        "epochs_by_layers": Spec(list, [], each(between(1, 100000)),
                                 "epochs of a re-training by how many layers it re-trains: [e1, e2, ...] gives "
                                 "e1 epochs of its sample to one layer, e2 to two, the last entry to more "
                                 "(scratch: all layers; random control: its subset's count); empty: "
                                 "transfer.steps for every run", int),
        "eval_every": Spec(int, 25, between(1, 10**7), "steps between validation checks (early stopping)"),
        "patience": Spec(int, 4, between(0, 10**6), "validation checks without improvement before stopping (0: never)"),
        "oracle": Spec(bool, True, None, "train the oracle: every layer on the target's full training data"),
        "oracle_init": Spec(str, "random", choices("random", "base"), "the oracle's starting weights: random "
                            "(trained from scratch) or base (fine-tuned from the base network's weights)"),
        "oracle_steps": Spec(int, 0, between(0, 10**7), "oracle budget in steps (0: the base network's steps)"),
        "random_control": Spec(str, "", None, "subsets matched by a random parameter subset of equal size "
                               "(a subset spec as transfer.subsets, or empty for none)"),
        "workers": Spec(int, 1, between(1, 1024), "local worker processes"),
        "share_prefix": Spec(bool, True, None, "cache the frozen prefix activations"),
        "references": Spec(bool, True, None, "also train from scratch and evaluate the base net"),
    },
    "analyze": {
        "workers": Spec(int, 2, between(1, 1024), "Dask workers of the LocalCluster"),
        "percentile": Spec(float, 99.9, between(0, 100, lo_open=True), "most-changed kernel percentile"),
        "activation_samples": Spec(int, 4, between(1, 10**6), "target samples for activation spectra"),
    },
    "les": {
        "systems": Spec(list, ["base"], nonempty, "systems for online LES", str),
        "closures": Spec(list, ["none", "smag", "cnn:base"], nonempty, "closures to run", str),
        "duration": Spec(float, 1.0, gt(0), "LES duration"),
        "dt_factor": Spec(float, 1.0, gt(0), "LES dt as a multiple of the DNS dt"),
        "members": Spec(int, 1, between(1, 10**4), "LES members (from test members)"),
        "cs": Spec(float, 0.17, gt(0), "Smagorinsky constant"),
        "cl": Spec(float, 0.17, gt(0), "Leith constant"),
    },
}

SYSTEM_SCHEMA: dict[str, Spec] = {
    "re": Spec(float, 20000.0, gt(0), "Reynolds number, nu = 1/re"),
    "kf": Spec(float, 4.0, ge(0), "forcing wavenumber"),
    "mu": Spec(float, 0.1, ge(0), "linear drag"),
    "beta": Spec(float, 0.0, None, "beta-plane parameter"),
    "forcing": Spec(str, "cos-xy", choices(*FORCINGS), "forcing kind"),
    "eps": Spec(float, 0.0, ge(0), "energy injection rate of stochastic forcing"),
    "init": Spec(str, "random", choices(*INITS), "initial condition"),
    "kp": Spec(float, 10.0, gt(0), "peak wavenumber of the random initial spectrum"),
    "init_energy": Spec(float, 0.5, gt(0), "energy of the random initial field"),
    "hyperviscosity": Spec(float, 0.0, ge(0), "hyperviscosity coefficient"),
    "hyper_order": Spec(int, 2, between(1, 8), "hyperviscosity order p in (-1)^(p+1) nu_p lap^p"),
    "n_dns": Spec(int, 0, zero_or_even_ge(8, "grid.n_dns"), "DNS grid points per side of this system "
                  "(its LES grid is grid.n_les); 0: grid.n_dns"),
    "description": Spec(str, "", None, ""),
}


# --------------------------------------------------------------------------------------------
# values


class Section:
    """Read-only attribute access to one validated section."""

    def __init__(self, name: str, values: dict):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self._name}.{key}") from None

    def __setattr__(self, key, value):
        raise AttributeError("configuration sections are read-only")

    def to_dict(self) -> dict:
        return copy.deepcopy(self._values)

    def __repr__(self):
        return f"Section({self._name}, {self._values})"


@dataclass(frozen=True)
class System:
    """The physical parameters of one system (docs/science.md §1)."""

    name: str
    re: float
    kf: float
    mu: float
    beta: float
    forcing: str
    eps: float
    init: str
    kp: float
    init_energy: float
    hyperviscosity: float
    hyper_order: int
    description: str = ""
    n_dns: int = 0  # the system's DNS grid, resolved: its [systems.<name>].n_dns, or grid.n_dns

    @property
    def nu(self) -> float:
        return 1.0 / self.re

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"nu": self.nu}


@dataclass(frozen=True)
class Config:
    preset: str
    source: str
    raw: dict = field(repr=False)
    sections: dict = field(repr=False)
    systems: dict = field(repr=False)

    def __getattr__(self, key):
        sections = object.__getattribute__(self, "sections")
        if key in sections:
            return sections[key]
        raise AttributeError(key)

    def system(self, name: str) -> System:
        try:
            return self.systems[name]
        except KeyError:
            raise ConfigError(
                f"unknown system {name!r}: accepted are {', '.join(sorted(self.systems))} "
                "(or define [systems.<name>] in a --config file)", field="systems") from None

    @property
    def filter_width(self) -> float:
        w = self.dns.filter_width
        return w if w > 0 else default_width(self.grid.L, self.grid.n_les)

    def to_dict(self) -> dict:
        """The resolved configuration (every default filled in): the provenance record."""
        out = {"preset": self.preset, "source": self.source}
        out.update({k: v.to_dict() for k, v in self.sections.items()})
        out["systems"] = {k: v.to_dict() for k, v in self.systems.items()}
        return out


# --------------------------------------------------------------------------------------------
# loading


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _read_toml(path: Path, what: str) -> dict:
    """The TOML document of ``path``; ConfigError naming the file and, for a file that is not UTF-8
    or not TOML, the line and column where it broke."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{what}: file not found: {path}", field="config") from None
    except IsADirectoryError:
        raise ConfigError(f"{what}: {path} is a directory, expected a TOML file", field="config") from None
    except PermissionError:
        raise ConfigError(f"{what}: {path} cannot be read (permission denied): make it readable or copy it",
                          field="config") from None
    except OSError as e:
        raise ConfigError(f"{what}: {path} cannot be read ({e.strerror or e}): give a TOML file", field="config") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
                          f"column {col}): save it as UTF-8 TOML", field="config") from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte-order mark is harmless
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what}: {path} is not valid TOML: {e}", field="config") from None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _preset_doc(name: str) -> dict:
    if name not in available_presets():
        raise ConfigError(f"preset = {name!r} is unknown: accepted are {', '.join(available_presets())}",
                          field="preset")
    return _read_toml(PRESET_DIR / f"{name}.toml", f"preset {name!r}")


def _coerce(where: str, spec: Spec, value):
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{where} = {value!r}: must be a finite number", field=where) from None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: must be true or false", field=where)
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} = {value!r}: must be an integer", field=where)
    if kind is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {value!r}: must be a list", field=where)
        if spec.item is not None:
            item = Spec(spec.item, None)
            value = [_coerce(f"{where} entry", item, v) for v in value]
        return value
    if not isinstance(value, kind):
        raise ConfigError(f"{where} = {value!r}: must be of type {kind.__name__}", field=where)
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: must be a finite number", field=where)
    return value


def validate_section(name: str, spec: dict[str, Spec], given: dict) -> dict:
    """The table ``given`` checked against ``spec`` (unknown keys, types, rules; defaults filled in):
    the validated values, or ConfigError naming ``name.key``. Public: jobs/profiles.py validates the
    cluster profiles' tables with it."""
    if not isinstance(given, dict):
        raise ConfigError(f"[{name}] must be a table", field=name)
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]} is not a known field: accepted are {', '.join(spec)}",
                          field=f"{name}.{unknown[0]}")
    out = {}
    for key, s in spec.items():
        where = f"{name}.{key}"
        value = _coerce(where, s, given[key]) if key in given else copy.deepcopy(s.default)
        if s.rule is not None and key in given:
            msg = s.rule(value)
            if msg:
                raise ConfigError(f"{where} = {value!r}: {msg}", field=where)
        out[key] = value
    return out


def _systems(doc: dict, grid: dict) -> dict[str, System]:
    """The catalog merged with the document's [systems.<name>] tables, validated; a system's ``n_dns``
    0 (unset) resolves to ``grid.n_dns``."""
    catalog = _read_toml(SYSTEMS_FILE, "system catalog")["systems"]
    given = doc.get("systems", {})
    if not isinstance(given, dict):
        raise ConfigError("[systems] must be a table of [systems.<name>] tables", field="systems")
    merged = _merge(catalog, given)
    out = {}
    for name, params in merged.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"systems.{name}: a system name may use letters, digits, '_' and '-'",
                              field=f"systems.{name}")
        values = validate_section(f"systems.{name}", SYSTEM_SCHEMA, params)
        values["n_dns"] = values["n_dns"] or grid["n_dns"]
        out[name] = System(name=name, **values)
    return out


def _grid_where(name: str, sysv: System, g: dict) -> str:
    """The field that sets a system's DNS grid: its own n_dns, or grid.n_dns."""
    return f"systems.{name}.n_dns" if sysv.n_dns != g["n_dns"] else "grid.n_dns"


def _grid_checks(g: dict, d: dict, systems: dict[str, System]) -> None:
    """Every system's own DNS grid holds the LES grid; the forcing of every simulated system lies
    below the 2/3 cutoff of its grid."""
    for name, sysv in systems.items():
        n = sysv.n_dns
        if n != g["n_dns"] and (n < g["n_les"] or n % g["n_les"]):
            raise ConfigError(f"systems.{name}.n_dns = {n}: must be >= grid.n_les = {g['n_les']} and a multiple "
                              "of it (every system's LES grid is grid.n_les); accepted: 0 (grid.n_dns) or an "
                              f"even integer >= {max(8, g['n_les'])} that grid.n_les divides",
                              field=f"systems.{name}.n_dns")
    for name in d["systems"]:
        sysv = systems[name]
        kmax = sysv.n_dns // 3  # largest wavenumber kept by the 2/3 rule on the system's grid
        # kf in integer wavenumbers against kmax (an int of any size: no float conversion of n_dns)
        if sysv.forcing != "none" and sysv.kf * (2 * math.pi) / g["L"] > kmax:
            raise ConfigError(f"systems.{name}.kf = {sysv.kf}: forcing wavenumber beyond the resolved range "
                              f"(must be <= {kmax} for {_grid_where(name, sysv, g)} = {sysv.n_dns})",
                              field=f"systems.{name}.kf")
        if sysv.forcing != "none" and sysv.kf < 1:
            raise ConfigError(f"systems.{name}.kf = {sysv.kf}: forced systems need kf >= 1",
                              field=f"systems.{name}.kf")


def _train_checks(sections: dict, systems: dict[str, System]) -> None:
    """train.augment = rot90 needs a base system that rotations by 90 degrees map onto itself;
    transfer.epochs_by_layers has at most one entry per layer."""
    t, m = sections["train"], sections["model"]
    s = systems[t["system"]]
    if t["augment"] == "rot90" and (s.beta != 0 or s.forcing not in ROTATION_INVARIANT_FORCINGS):
        why = f"beta = {s.beta}: a beta-plane has a preferred direction" if s.beta != 0 else \
            f"forcing = {s.forcing!r} has a preferred direction"
        raise ConfigError(f"train.augment = 'rot90': the base system {t['system']!r} is not invariant under rotations "
                          f"by 90 degrees ({why}); accepted: 'none', or a system with beta = 0 and forcing "
                          f"{', '.join(ROTATION_INVARIANT_FORCINGS)}", field="train.augment")
    table = sections["transfer"]["epochs_by_layers"]
    if len(table) > m["layers"]:
        raise ConfigError(f"transfer.epochs_by_layers = {table!r}: {len(table)} entries, accepted at most "
                          f"model.layers = {m['layers']} (one per number of re-trained layers)",
                          field="transfer.epochs_by_layers")


def epochs_for_layers(table, layers: int) -> int:
    """The epochs ``transfer.epochs_by_layers`` gives a run that re-trains ``layers`` layers: entry
    ``layers - 1``, the last entry beyond the list. ValueError for an empty table."""
    if not table:
        raise ValueError("transfer.epochs_by_layers is empty: budgets are transfer.steps")
    return int(table[min(max(1, int(layers)), len(table)) - 1])


def _cross_checks(sections: dict, systems: dict[str, System]) -> None:
    g, d, m = sections["grid"], sections["dns"], sections["model"]
    if g["n_les"] > g["n_dns"] or g["n_dns"] % g["n_les"]:
        raise ConfigError(f"grid.n_les = {g['n_les']}: must divide grid.n_dns = {g['n_dns']} "
                          "and be no larger", field="grid.n_les")
    for key in ("systems",):
        for s in d[key]:
            if s not in systems:
                raise ConfigError(f"dns.systems contains {s!r}: accepted are {', '.join(sorted(systems))}",
                                  field="dns.systems")
    for key, where in ((sections["train"]["system"], "train.system"),):
        if key not in systems:
            raise ConfigError(f"{where} = {key!r}: accepted are {', '.join(sorted(systems))}", field=where)
    for t in sections["transfer"]["targets"]:
        if t not in systems:
            raise ConfigError(f"transfer.targets contains {t!r}: accepted are {', '.join(sorted(systems))}",
                              field="transfer.targets")
    les_kmax = g["n_les"] // 2 - 1  # the LES keeps every mode below Nyquist (exact Jacobian)
    for s in sections["les"]["systems"]:
        if s not in systems:
            raise ConfigError(f"les.systems contains {s!r}: accepted are {', '.join(sorted(systems))}",
                              field="les.systems")
    _grid_checks(g, d, systems)
    for s in sections["les"]["systems"]:
        if systems[s].forcing != "none" and systems[s].kf * (2 * math.pi) / g["L"] > les_kmax:
            raise ConfigError(f"les.systems contains {s!r}, forced at kf = {systems[s].kf}: beyond the LES grid's "
                              f"resolved range (must be <= {les_kmax} for grid.n_les = {g['n_les']})",
                              field="les.systems")
    if d["sample_interval"] < d["dt"]:
        raise ConfigError(f"dns.sample_interval = {d['sample_interval']}: must be >= dns.dt = {d['dt']}",
                          field="dns.sample_interval")
    steps = (d["spinup_time"] + d["snapshots"] * d["sample_interval"]) / d["dt"]
    if not steps <= MAX_STEPS:  # also catches inf
        raise ConfigError(f"dns.dt = {d['dt']}: (dns.spinup_time + dns.snapshots x dns.sample_interval) / dns.dt "
                          f"= {steps:.3g} steps per member, accepted at most {MAX_STEPS:.0e}: raise dns.dt or "
                          "shorten the run", field="dns.dt")
    ratio = d["sample_interval"] / d["dt"]
    if abs(ratio - round(ratio)) > 1e-6 * ratio:
        raise ConfigError(f"dns.sample_interval = {d['sample_interval']}: must be a whole multiple of "
                          f"dns.dt = {d['dt']}", field="dns.sample_interval")
    _train_checks(sections, systems)
    # the subsets spec is validated against the network depth by suite.masks
    select(sections["transfer"]["subsets"], m["layers"])
    if sections["transfer"]["random_control"].strip():
        select(sections["transfer"]["random_control"], m["layers"], field="transfer.random_control")
    for c in sections["les"]["closures"]:
        if c not in CLOSURES and not (isinstance(c, str) and c.startswith("cnn:")):
            raise ConfigError(f"les.closures contains {c!r}: accepted are {', '.join(CLOSURES)}, cnn:base "
                              "or cnn:<mask>", field="les.closures")


def resolve(doc: dict, preset: str, source: str) -> Config:
    """Validate a merged document and return the :class:`Config`."""
    doc = dict(doc)
    doc.pop("extends", None)
    meta = doc.pop("preset", {})
    known = set(SCHEMA) | {"systems"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"[{unknown[0]}] is not a known section: accepted are {', '.join(sorted(known))}",
                          field=unknown[0])
    sections = {name: validate_section(name, spec, doc.get(name, {})) for name, spec in SCHEMA.items()}
    systems = _systems(doc, sections["grid"])
    _cross_checks(sections, systems)
    return Config(preset=preset, source=source, raw=doc | {"preset": meta},
                  sections={k: Section(k, v) for k, v in sections.items()}, systems=systems)


def load_config(preset: str | None = None, config_file: str | Path | None = None,
                overrides: dict | None = None) -> Config:
    """Load a preset and/or a user's TOML file, apply ``overrides`` (nested dict), validate.

    With neither ``preset`` nor ``config_file`` the embedded default ``small`` is used. A config
    file may name its starting preset with ``extends = "<preset>"``.
    """
    if config_file is not None:
        user = _read_toml(Path(config_file), "--config")
        base_name = preset or user.get("extends")
        if base_name is not None and not isinstance(base_name, str):
            raise ConfigError(f"extends = {base_name!r}: must be a preset name ({', '.join(available_presets())})",
                              field="extends")
        doc = _merge(_preset_doc(base_name), user) if base_name else user
        name, source = base_name or "custom", str(config_file)
    else:
        name = preset or "small"
        doc, source = _preset_doc(name), f"preset:{name}"
    if overrides:
        doc = _merge(doc, overrides)
    return resolve(doc, name, source)


def describe_schema() -> str:
    """A human-readable listing of every field (used by ``turbtl config --schema``)."""
    lines = []
    for sec, spec in list(SCHEMA.items()) + [("systems.<name>", SYSTEM_SCHEMA)]:
        lines.append(f"[{sec}]")
        for k, s in spec.items():
            lines.append(f"  {k:<22} default {s.default!r:<14} {s.help}")
    return "\n".join(lines)
