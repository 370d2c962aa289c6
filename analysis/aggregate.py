"""Analysis of a whole transfer-learning sweep with dask.distributed (REFERENCE.md §6).

One task per transfer-learned network (target × fraction × seed × mask): it loads that one model
(models are streamed, never all in memory), and for every *re-trained* layer computes |Ŵ| of the
base and TL kernels, the TL kernels' features and classes, ``dW``/``dspec`` and Gabor fits of the
oriented kernels; frozen layers are exactly the base layers (their ``dW``/``dspec`` are stored as
NaN = "not re-trained", their classes are the base classes). It also runs the TL network on the
target inputs for the activation spectra. Tasks return per-kernel features (not spectra); the
client writes each result into its row of a preallocated zarr store as it arrives, so memory is
bounded by one result and an interrupted analysis resumes with the networks not yet ``done``.
Results do not depend on the number of workers (each task is deterministic, one thread).

Stores in ``DIR/analysis/``:

- ``base.zarr``       per-kernel features/class/Gabor of the base network, class fractions per
  layer, the layers' spectral weights ``S_ℓ(k)``, the base network's layer-input spectra on each
  system and its activation spectra on each target;
- ``sweep_<target>.zarr``  dims (net, kernel, layer, class, stage, k): per-kernel ``dW``, ``dspec``,
  ``cls``, features, Gabor fits; per (net, layer) class fractions, class transitions, kernels
  above the percentile; activation spectra and their ratio to the base network's;
- ``data_spectra.zarr``  E(system, var, k), D(target, var, k) and the most-different bands;
- ``framework.zarr``  recommendation scores, measured CC per layer, Spearman ρ (attrs);
- ``most_changed.zarr``  radial profiles before/after of the most-changed kernels per target.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .activations import STAGES, activation_spectra, layer_input_spectra, normalized_inputs, spectrum_ratio
from .change import above_percentile, class_fractions, kernel_change, transitions
from .classify import CLASSES, FEATURES, classify_features, fit_gabor, spectral_features
from .kernels import kernel_index, kernel_spectra, layer_kernels
from .radial import half_plane
from solver.atomic import replace_dir_atomic
from suite import layout
from suite.fdns import quiet_zarr

GABOR = ("gabor_k0", "gabor_orientation", "gabor_sigma")
TOP_K = 6


@dataclass(frozen=True)
class Network:
    """One transfer-learned network of the sweep and its model folder."""

    target: str
    fraction: float
    seed: int
    mask: str
    path: str


def find_networks(run_dir, target: str) -> list[Network]:
    """Every finished TL model folder ``DIR/models/tl/<target>/f<fraction>_s<seed>/<mask>/``, sorted."""
    root = layout.tl_target_dir(run_dir, target)
    out = []
    for sub in sorted(root.glob("f*_s*")) if root.is_dir() else []:
        group = layout.parse_tl_group(sub.name)
        if group is None:
            continue
        fraction, seed = group
        for mdir in sorted(sub.iterdir()):
            if (mdir / "model.pt").is_file() and set(mdir.name) <= {"0", "1"} and "1" in mdir.name:
                out.append(Network(target, fraction, seed, mdir.name, str(mdir)))
    return sorted(out, key=lambda t: (t.fraction, t.seed, t.mask))


# --------------------------------------------------------------------------------------------
# per-network work (runs on the workers)


def kernel_features(w: np.ndarray, n: int, fit: bool = True) -> dict[str, np.ndarray]:
    """Features, class and (for oriented kernels) Gabor fit of kernels ``(N, k, k)``."""
    mag = kernel_spectra(w, n, magnitude=True)
    f = spectral_features(mag)
    out = {k: v.astype(np.float32) for k, v in f.items()}
    out["cls"] = classify_features(f)
    for g in GABOR:
        out[g] = np.full(w.shape[0], np.nan, dtype=np.float32)
    if fit:
        for i in np.flatnonzero(out["cls"] == CLASSES.index("oriented")):
            gf = fit_gabor(w[i], n)
            out["gabor_k0"][i], out["gabor_orientation"][i], out["gabor_sigma"][i] = (
                gf["k0"], gf["orientation"], gf["sigma"])
    return out, mag


def analyze_base(model, n: int) -> dict:
    """Per-kernel features of a base network plus its index and layer weights ``S_ℓ(k)``."""
    from .framework import layer_weight

    ws = layer_kernels(model)
    idx = kernel_index([w.shape for w in ws])
    per = [kernel_features(w.reshape(-1, *w.shape[-2:]), n)[0] for w in ws]
    feats = {k: np.concatenate([p[k] for p in per]) for k in per[0]}
    return {"w": ws, "index": idx, "features": feats,
            "weight": np.stack([layer_weight(w, n) for w in ws])}


def analyze_network(path: str, mask: str, base: dict, x_target, n: int, L: float) -> dict:
    """Everything stored for one TL network (the Dask task). Loads only that model."""
    import torch
    from suite.model import load_model

    torch.set_num_threads(1)
    model, _, _ = load_model(path)
    ws = layer_kernels(model)
    idx, bf = base["index"], base["features"]
    n_layers = len(ws)
    if len(mask) != n_layers:
        raise ValueError(f"{path}: mask {mask!r} does not match a network of {n_layers} layers")
    res = {k: v.copy() for k, v in bf.items()}
    res["dW"] = np.full(idx["layer"].size, np.nan, dtype=np.float32)
    res["dspec"] = np.full(idx["layer"].size, np.nan, dtype=np.float32)
    for li, bit in enumerate(mask):
        if bit != "1":
            continue
        sel = np.flatnonzero(idx["layer"] == li + 1)
        wt = ws[li].reshape(-1, *ws[li].shape[-2:])
        wb = base["w"][li].reshape(-1, *ws[li].shape[-2:])
        ft, mt = kernel_features(wt, n)
        mb = kernel_spectra(wb, n, magnitude=True)
        for k, v in ft.items():
            res[k][sel] = v
        dw, ds = kernel_change(wb, wt, mb, mt)
        res["dW"][sel], res["dspec"][sel] = dw, ds
    res["class_frac"] = class_fractions(res["cls"], idx["layer"], n_layers)
    res["transitions"] = transitions(bf["cls"], res["cls"], idx["layer"], n_layers)
    res["act"] = activation_spectra(model, x_target, L)
    return res


# --------------------------------------------------------------------------------------------
# stores




def _write(ds, path: Path) -> None:
    def write(p):
        with quiet_zarr():
            ds.to_zarr(str(p), mode="w", zarr_format=3, consolidated=True)
    replace_dir_atomic(path, write)


def open_result(path):
    """Open one of the analysis stores (``DIR/analysis/<name>.zarr``) fully loaded."""
    import xarray as xr
    with quiet_zarr():
        return xr.open_zarr(str(path), consolidated=None).load()


def _sweep_template(path: Path, nets: list[Network], base: dict, n_shells: int, attrs: dict) -> None:
    """Create ``sweep_<target>.zarr`` with every variable NaN/zero and ``done`` False."""
    import dask.array as da
    import xarray as xr

    N, K, L = len(nets), base["index"]["layer"].size, len(base["w"])
    C = len(CLASSES)

    def z(shape, dtype=np.float32):
        return da.zeros(shape, dtype=dtype, chunks=(1,) + shape[1:])

    per_kernel = {k: (("net", "kernel"), z((N, K), np.int8 if k == "cls" else np.float32))
                  for k in ("dW", "dspec", "cls") + FEATURES + GABOR}
    data = per_kernel | {
        "class_frac": (("net", "layer", "class"), z((N, L, C), np.float64)),
        "transitions": (("net", "layer", "cls_from", "cls_to"), z((N, L, C, C), np.int64)),
        "n_above": (("net", "layer"), z((N, L), np.int64)),
        "act": (("net", "layer", "stage", "k"), z((N, L, 2, n_shells), np.float64)),
        "act_ratio": (("net", "layer", "stage", "k"), z((N, L, 2, n_shells), np.float64)),
        "done": (("net",), z((N,), bool)),
    }
    coords = {"net": np.arange(N), "fraction": ("net", [t.fraction for t in nets]),
              "seed": ("net", [t.seed for t in nets]), "mask": ("net", [t.mask for t in nets]),
              "kernel": np.arange(K), "kernel_layer": ("kernel", base["index"]["layer"]),
              "kernel_out": ("kernel", base["index"]["out"]), "kernel_in": ("kernel", base["index"]["in"]),
              "layer": np.arange(1, L + 1), "class": list(CLASSES), "cls_from": list(CLASSES),
              "cls_to": list(CLASSES), "stage": list(STAGES), "k": np.arange(n_shells)}
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    enc = {v: {"chunks": ds[v].data.chunksize} for v in ds.data_vars}

    def write(p):
        with quiet_zarr():
            ds.to_zarr(str(p), mode="w", compute=False, encoding=enc, zarr_format=3, consolidated=True)
    replace_dir_atomic(path, write)


def _pending(path: Path, nets: list[Network]) -> list[int] | None:
    """Rows still to compute, or None when the store is absent or describes other networks."""
    import zarr
    try:
        with quiet_zarr():
            g = zarr.open_group(str(path), mode="r")
            masks = [str(m) for m in g["mask"][:]]
            fr, sd = list(g["fraction"][:]), list(g["seed"][:])
            done = np.asarray(g["done"][:])
    except Exception:  # noqa: BLE001 - absent or unreadable: start again
        return None
    if masks != [t.mask for t in nets] or fr != [t.fraction for t in nets] or sd != [t.seed for t in nets]:
        return None
    return [i for i in range(len(nets)) if not done[i]]


def _write_row(path: Path, i: int, res: dict, act_base: np.ndarray) -> None:
    import zarr
    with quiet_zarr():
        g = zarr.open_group(str(path), mode="r+")
    for k in ("dW", "dspec", "cls") + FEATURES + GABOR + ("class_frac", "transitions"):
        g[k][i] = res[k]
    g["act"][i] = res["act"]
    g["act_ratio"][i] = spectrum_ratio(res["act"], act_base)
    g["done"][i] = True


# --------------------------------------------------------------------------------------------
# the driver


@dataclass
class Inputs:
    """Samples and system parameters the analysis needs, read once on the client."""

    n: int
    L: float
    x: dict        # system -> normalized input tensor (base network's norm)


def _inputs(run_dir, systems: list[str], norm: dict, n_samples: int) -> Inputs:
    from suite.fdns import open_fdns, reading
    from .spectra import fdns_path, training_fields

    x, n, L = {}, None, None
    for s in systems:
        ds = training_fields(open_fdns(fdns_path(run_dir, s)))
        with reading(fdns_path(run_dir, s)):
            psi = ds["psi"].values.reshape(-1, *ds["psi"].shape[-2:])
            om = ds["omega"].values.reshape(-1, *ds["omega"].shape[-2:])
        ok = np.isfinite(psi).all(axis=(1, 2)) & np.isfinite(om).all(axis=(1, 2))
        psi, om = psi[ok][:n_samples], om[ok][:n_samples]
        x[s] = normalized_inputs(psi, om, norm)
        n, L = psi.shape[-1], float(ds.attrs.get("L", 2 * np.pi))
    return Inputs(n=n, L=L, x=x)


def make_client(workers: int, scheduler_address: str | None = None, scheduler_file: str | None = None):
    """A dask.distributed Client: an existing scheduler, or a LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if scheduler_address:
        return Client(scheduler_address), None
    if scheduler_file:
        return Client(scheduler_file=scheduler_file), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0", silence_logs=40)
    return Client(cluster), cluster


def analyze_sweep(run_dir, targets: list[str], base_system: str, client, *, percentile: float = 99.9,
                  activation_samples: int = 4, force: bool = False, provenance: dict | None = None,
                  progress: bool = True) -> dict:
    """Analyse every TL network of ``targets`` on the Dask ``client``; write ``DIR/analysis/*.zarr``.

    Returns ``{"networks": total, "computed": this call, "seconds": wall, "kernels": analysed}``.

    About 95 lines: the orchestration reads in order (base network, data spectra, the stores'
    templates, the task loop that writes each result as it arrives, the per-target finishing and
    the framework); each step is already one call into this module.
    """
    import xarray as xr
    from distributed import as_completed
    from suite.model import load_model
    from tqdm import tqdm

    from . import framework
    from .spectra import VARIABLES, data_spectra, difference_bands, log_difference

    run_dir = Path(run_dir)
    out_dir = layout.analysis_dir(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attrs = {"provenance": json.dumps(provenance or {}, default=str), "percentile": percentile,
             "base_system": base_system}
    t0 = time.perf_counter()
    base_model, norm, _ = load_model(layout.base_model_dir(run_dir))
    inp = _inputs(run_dir, [base_system] + list(targets), norm, activation_samples)
    base = analyze_base(base_model, inp.n)
    n_shells = inp.n // 2 + 1
    L = len(base["w"])

    # base network: per-kernel features, input and activation spectra on every system
    in_spec = {s: layer_input_spectra(base_model, inp.x[s], inp.L) for s in inp.x}
    act_base = {s: activation_spectra(base_model, inp.x[s], inp.L) for s in inp.x}
    idx = base["index"]
    bds = xr.Dataset(
        {k: (("kernel",), v) for k, v in base["features"].items()} | {
            "class_frac": (("layer", "class"), class_fractions(base["features"]["cls"], idx["layer"], L)),
            "weight": (("layer", "k"), base["weight"]),
            "input_spectrum": (("system", "layer", "k"), np.stack([in_spec[s] for s in inp.x])),
            "act": (("system", "layer", "stage", "k"), np.stack([act_base[s] for s in inp.x]))},
        coords={"kernel": np.arange(idx["layer"].size), "kernel_layer": ("kernel", idx["layer"]),
                "kernel_out": ("kernel", idx["out"]), "kernel_in": ("kernel", idx["in"]),
                "layer": np.arange(1, L + 1), "class": list(CLASSES), "k": np.arange(n_shells),
                "system": list(inp.x), "stage": list(STAGES)}, attrs=attrs)
    _write(bds, out_dir / "base.zarr")

    # data spectra and their differences
    systems = [base_system] + list(targets)
    E = {s: data_spectra(run_dir, s) for s in systems}
    D = np.stack([[log_difference(E[base_system][v], E[t][v]) for v in VARIABLES] for t in targets])
    bands = np.array([[difference_bands(D[i, j]) for j in range(len(VARIABLES))] for i in range(len(targets))])
    dsd = xr.Dataset({"E": (("system", "var", "k"), np.stack([[E[s][v] for v in VARIABLES] for s in systems])),
                      "D": (("target", "var", "k"), D),
                      "band": (("target", "var", "edge"), bands)},
                     coords={"system": systems, "var": list(VARIABLES), "target": list(targets),
                             "k": E[base_system]["k"], "edge": ["lo", "hi", "max"]}, attrs=attrs)
    _write(dsd, out_dir / "data_spectra.zarr")

    # the sweep: one task per network, results written as they arrive
    base_future = client.scatter([{k: base[k] for k in ("w", "index", "features")}], broadcast=True)[0]
    total = computed = 0
    nets_by_target = {t: find_networks(run_dir, t) for t in targets}
    todo = []
    for t, nets in nets_by_target.items():
        path = out_dir / f"sweep_{t}.zarr"
        pending = None if force else _pending(path, nets)
        if pending is None:
            _sweep_template(path, nets, base, n_shells, attrs | {"target": t})
            pending = list(range(len(nets)))
        total += len(nets)
        if pending:
            xf = client.scatter([inp.x[t]], broadcast=True)[0]
            todo += [(t, i, nets[i], xf) for i in pending]
    futures = {client.submit(analyze_network, net.path, net.mask, base_future, xf, inp.n, inp.L,
                             key=f"analyze-{t}-{net.fraction}-{net.seed}-{net.mask}", pure=False): (t, i)
               for t, i, net, xf in todo}
    bar = tqdm(total=len(futures), desc="analyze", unit="net", disable=not progress or not futures)
    for fut in as_completed(futures):
        t, i = futures[fut]
        res = fut.result()
        _write_row(out_dir / f"sweep_{t}.zarr", i, res, act_base[t])
        fut.release()
        computed += 1
        bar.update(1)
    bar.close()

    # per target: percentile of the spectral change, the most-changed kernels, the framework
    fw_rows, top_rows = [], []
    for t in targets:
        _finalize_target(out_dir / f"sweep_{t}.zarr", percentile)
        top_rows.append(_most_changed(out_dir / f"sweep_{t}.zarr", nets_by_target[t], base, inp.n))
        fw_rows.append(_framework_row(run_dir, t, base, in_spec[base_system], in_spec[t], L))
    _write_framework(out_dir / "framework.zarr", targets, fw_rows, attrs)
    _write_most_changed(out_dir / "most_changed.zarr", targets, top_rows, n_shells, attrs)
    return {"networks": total, "computed": computed, "seconds": time.perf_counter() - t0,
            "kernels": int(sum(len(v) for v in nets_by_target.values()) * idx["layer"].size)}


def _finalize_target(path: Path, percentile: float) -> None:
    """Store the percentile threshold of ``dspec`` and the count of kernels above it per (net, layer)."""
    import zarr
    with quiet_zarr():
        g = zarr.open_group(str(path), mode="r+")
    dspec = np.asarray(g["dspec"][:], dtype=float)
    layer = np.asarray(g["kernel_layer"][:])
    thr, above = above_percentile(dspec, percentile)
    L = g["n_above"].shape[1]
    counts = np.stack([np.bincount(layer[row], minlength=L + 1)[1:] for row in above]) if len(above) else \
        np.zeros((0, L), dtype=np.int64)
    g["n_above"][:] = counts
    g.attrs["dspec_threshold"] = thr


def _most_changed(path: Path, nets: list[Network], base: dict, n: int) -> dict:
    """Radial profiles of |Ŵ| before and after TL for the TOP_K kernels of largest ``dspec``."""
    import zarr
    from suite.model import load_model

    with quiet_zarr():
        g = zarr.open_group(str(path), mode="r")
    dspec = np.asarray(g["dspec"][:], dtype=float)
    hp = half_plane(n)
    flat = np.where(np.isfinite(dspec), dspec, -np.inf).ravel()
    order = np.argsort(-flat, kind="stable")[:TOP_K]
    order = [o for o in order if np.isfinite(flat[o])]
    rows = []
    idx = base["index"]
    for o in order:
        i, kk = divmod(int(o), dspec.shape[1])
        li, oc, ic = int(idx["layer"][kk]), int(idx["out"][kk]), int(idx["in"][kk])
        model, _, _ = load_model(nets[i].path)
        wt = model.convs[li - 1].weight.detach().double().numpy()[oc, ic]
        wb = base["w"][li - 1][oc, ic]
        prof = hp.shell_mean(kernel_spectra(np.stack([wb, wt]), n, magnitude=True))
        rows.append({"before": prof[0], "after": prof[1], "dspec": flat[o], "mask": nets[i].mask,
                     "fraction": nets[i].fraction, "seed": nets[i].seed, "layer": li, "out": oc, "in": ic,
                     "cls_before": int(base["features"]["cls"][kk]), "cls_after": int(g["cls"][i, kk])})
    return {"rows": rows}


def _framework_row(run_dir, target: str, base: dict, in_base: np.ndarray, in_target: np.ndarray, L: int) -> dict:
    from . import framework
    from .results import load_sweep_results

    mism = framework.mismatch(in_base, in_target)
    score = framework.scores(base["weight"], mism)
    res = load_sweep_results(run_dir, target)
    cc = framework.measured_ranking(res, L) if res is not None else np.full(L, np.nan)
    return {"score": score, "mismatch": mism, "cc": cc, "compare": framework.compare(score, cc)}


def _write_framework(path: Path, targets, rows, attrs) -> None:
    import xarray as xr
    L, nk = rows[0]["mismatch"].shape
    ds = xr.Dataset({"score": (("target", "layer"), np.stack([r["score"] for r in rows])),
                     "mismatch": (("target", "layer", "k"), np.stack([r["mismatch"] for r in rows])),
                     "measured_cc": (("target", "layer"), np.stack([r["cc"] for r in rows]))},
                    coords={"target": list(targets), "layer": np.arange(1, L + 1), "k": np.arange(nk)},
                    attrs=attrs | {"comparison": json.dumps({t: r["compare"] for t, r in zip(targets, rows)})})
    _write(ds, path)


def _write_most_changed(path: Path, targets, tops, n_shells: int, attrs) -> None:
    import xarray as xr
    T = len(targets)
    before = np.full((T, TOP_K, n_shells), np.nan)
    after = np.full((T, TOP_K, n_shells), np.nan)
    meta = {k: np.full((T, TOP_K), np.nan) for k in ("dspec", "fraction", "seed", "layer", "out", "in",
                                                    "cls_before", "cls_after")}
    masks = np.full((T, TOP_K), "", dtype=object)
    for ti, top in enumerate(tops):
        for r, row in enumerate(top["rows"]):
            before[ti, r], after[ti, r] = row["before"], row["after"]
            masks[ti, r] = row["mask"]
            for k in meta:
                meta[k][ti, r] = row[k]
    ds = xr.Dataset({"before": (("target", "rank", "k"), before), "after": (("target", "rank", "k"), after),
                     "mask": (("target", "rank"), masks.astype(str))}
                    | {k: (("target", "rank"), v) for k, v in meta.items()},
                    coords={"target": list(targets), "rank": np.arange(TOP_K), "k": np.arange(n_shells)},
                    attrs=attrs)
    _write(ds, path)
