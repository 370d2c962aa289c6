"""The data of an LES run: the FDNS truth it is compared with (read from the FDNS store), and the
LES result store ``DIR/les/<system>.zarr`` and metrics table ``DIR/les/<system>_metrics.csv``
(paths: :mod:`suite.layout`)."""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from solver.atomic import replace_dir_atomic, write_bytes_atomic
from solver.sgs import LES_CONVENTIONS, backscatter_fraction, enstrophy_transfer

from ..errors import ConfigError, DataError
from ..fdns import open_fdns, reading
from ..provenance import provenance
from .metrics import mean_spectra, pdf, series_of

LES_SCHEMA_VERSION = 2  # 2: exact LES Jacobian, every mode below Nyquist evolved (1: 2/3 rule)
MAX_SNAPSHOTS = 40
PDF_BINS = 81


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


def dataset(cfg, system, setup, truth: Truth, specs, trajs, rows, terms, grid_np, store) -> xr.Dataset:
    """The LES result store of one system: every closure's trajectories, spectra and PDF beside the
    FDNS ones, the set-up, closures, metrics and provenance as attributes."""
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


def write_store(ds: xr.Dataset, out: Path) -> None:
    """Write the zarr store beside ``out``, then swap it into place
    (:func:`solver.atomic.replace_dir_atomic`)."""
    def build(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=False)

    replace_dir_atomic(out, build)


def write_csv(rows: list[dict], path: Path) -> None:
    """The metrics table, one row per closure."""
    write_bytes_atomic(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g").encode())


def open_les(path):
    """The LES result store as an xarray Dataset (DataError if missing or foreign)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"LES store {path}: not found (run `turbtl les` first)", field="store")
    ds = xr.open_zarr(str(path), consolidated=False)
    if ds.attrs.get("kind") != "turbtl-les":
        raise DataError(f"{path}: not an LES store written by turbtl les", field="store")
    return ds
