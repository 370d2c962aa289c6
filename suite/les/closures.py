"""The closures of an LES run: parsing ``les.closures`` names, where their networks live, and the
online closure term each one adds to the LES equation (:mod:`suite.online`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..config import CLOSURES, Config
from ..errors import ConfigError


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
    label = str(label).strip()
    layers = cfg.model.layers
    if label in CLOSURES:
        return ClosureSpec(label, "none" if label == "none" else "physics", label)
    if not label.startswith("cnn:"):
        raise ConfigError(f"les.closures contains {label!r}: accepted are {_accepted(layers)}", field="les.closures")
    parts = label[4:].split("/")
    if parts == ["base"]:
        return ClosureSpec(label, "cnn", "base", layout.base_model_dir(run_dir))
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
        folder = layout.tl_model_dir(run_dir, target, float(cfg.transfer.fractions[0]),
                                     int(cfg.transfer.seeds[0]), mask)
    else:
        if not (group.startswith("f") and "_s" in group):
            raise ConfigError(f"les.closures contains {label!r}: {group!r} must be f<fraction>_s<seed> "
                              "(e.g. f0.1_s0)", field="les.closures")
        folder = layout.tl_group_dir(run_dir, target, group) / mask
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


def term_factory(spec: ClosureSpec, delta: float, cfg: Config):
    """``grid -> closure term`` of one closure (:func:`suite.online.make_closure`), None for ``none``.

    ``delta``: the filter width of the physics closures (the store's)."""
    # lazy: suite.online and suite.model import torch, needed only when an LES is actually run
    # (parsing and checking closure names, and importing suite.les, need no torch)
    from ..online import make_closure

    if spec.kind == "none":
        return None
    if spec.kind == "physics":
        return lambda grid: make_closure(spec.name, grid, delta=delta, cs=cfg.les.cs, cl=cfg.les.cl)
    from ..model import load_model
    model, norm, _ = load_model(spec.model_dir)
    return lambda grid: make_closure("cnn", grid, model=model, norm=norm, label=spec.label)
