"""Analysis of a whole transfer-learning sweep with dask.distributed (docs/science.md §6).

One task per transfer-learned network (target × fraction × seed × mask): it loads that one model
(models are streamed, never all in memory), and for every *re-trained* layer computes |Ŵ| of the
base and TL kernels, the TL kernels' features and classes, ``dW``/``dspec`` and Gabor fits of the
oriented kernels; frozen layers are exactly the base layers (their ``dW``/``dspec`` are stored as
NaN = "not re-trained", their classes are the base classes). It also runs the TL network on the
target inputs for the activation spectra. Tasks return per-kernel features (not spectra); the
client writes each result into its row of a preallocated zarr store as it arrives, so memory is
bounded by one result and an interrupted analysis resumes with the networks not yet ``done``.
Results do not depend on the number of workers (each task is deterministic, one thread).

Task size: a task is a batch of kernels, those of one network's re-trained layers (the `paper`
preset: 128 to 37,056 kernels, 6,141 tasks), never one kernel; inside it the spectra run in chunks
of :data:`.kernel_stats.CHUNK` kernels and the Gabor fits of all its oriented kernels as one
batched Levenberg–Marquardt (:mod:`.gabor`). ``bench/analysis_harness.py: project`` turns the
measured per-kernel costs into task seconds and the share of time 16 workers stay busy.

Stores in ``DIR/analysis/``:

- ``base.zarr``       per-kernel features/class/Gabor of the base network, class fractions per
  layer, the layers' gains ``G_ℓ(k)`` (framework step 2), trainable parameters per layer, the
  base network's layer-input spectra on each system and its activation spectra on each target;
- ``sweep_<target>.zarr``  dims (net, kernel, layer, class, stage, k): per-kernel ``dW``, ``dspec``,
  ``cls``, features, Gabor fits; per (net, layer) class fractions, class transitions, the
  percentile threshold of ``dspec`` of that layer of that network and the kernels above it, where
  in k they changed and the share of that change in the step-1 band (step 3); activation spectra
  and their ratio to the base network's;
- ``data_spectra.zarr``  step 1: E(system, var, k) with bootstrap intervals, the log ratios
  R(target, var, k) with intervals and significance, the mismatch M(target, k) and its band;
- ``framework.zarr``  step 2's selectivity per layer, the measured single-layer CCs per replicate,
  and step 4's agreement (framework and reference rankings) with intervals;
- ``most_changed.zarr``  radial profiles before/after of the most-changed kernels per target.

CONTRACTS.md ("Analysis stores") lists every variable.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from solver.atomic import replace_dir_atomic
from suite import layout
from suite.fdns import open_fdns, quiet_zarr, reading
from suite.model import load_model

from . import framework
from .activations import STAGES, activation_spectra, layer_input_spectra, normalized_inputs, spectrum_ratio
from .change import class_fractions, transitions
from .classify import CLASSES, FEATURES, classify_features
from .classify import kernel_features as classify_kernel_features
from .framework import METHODS, METRICS, band_share, change_profiles_from, layer_gain, layer_params
from .gabor import fit_gabor_batch
from .kernel_stats import chunks, sym_dft
from .kernels import kernel_index, kernel_spectra, layer_kernels
from .radial import half_plane
from .results import load_sweep_results
from .spectra import (ALL_VARIABLES, CI, N_BOOT, bootstrap_ratio, difference_bands, fdns_path, log_difference,
                      mismatch_profile, pooled_mean, snapshot_spectra, training_fields)

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


def kernel_features(w: np.ndarray, n: int, fit: bool = True, profile: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """Features, class and (for oriented kernels) Gabor fit of kernels ``(N, k, k)``; the fits run
    as one batch (:func:`.gabor.fit_gabor_batch`). ``profile``: the kernels' shell means of |Ŵ| when
    the caller has them (:func:`.classify.kernel_features`)."""
    f = classify_kernel_features(w, n, profile)
    out = {k: v.astype(np.float32) for k, v in f.items()}
    out["cls"] = classify_features(f)
    for g in GABOR:
        out[g] = np.full(w.shape[0], np.nan, dtype=np.float32)
    oriented = np.flatnonzero(out["cls"] == CLASSES.index("oriented"))
    if fit and oriented.size:
        gf = fit_gabor_batch(w[oriented], n)
        out["gabor_k0"][oriented], out["gabor_orientation"][oriented], out["gabor_sigma"][oriented] = (
            gf["k0"], gf["orientation"], gf["sigma"])
    return out


def layer_change(wb: np.ndarray, wt: np.ndarray, n: int, percentile: float, fit: bool = True) -> dict:
    """One re-trained layer, kernels ``(N, k, k)`` before (``wb``) and after (``wt``): the TL kernels'
    features, classes and fits (:func:`kernel_features`), ``dW``, ``dspec`` and step 3's change
    profiles (:func:`.framework.change_profiles_from`), the spectra formed chunk by chunk
    (:class:`.kernel_stats.SymDFT`), never for the whole layer."""
    N = wt.shape[0]
    S = sym_dft(wt.shape[-1], n)
    d2, prof = np.empty((2, N, half_plane(n).n_shells))
    dspec = np.empty(N)
    for sl in chunks(N):
        d = S.magnitudes(wt[sl])
        prof[sl] = S.shell_mean(d)
        d -= S.magnitudes(wb[sl])
        d *= d
        d2[sl], dspec[sl] = S.shell_mean(d), np.sqrt(S.full_sum(d))
    out = kernel_features(wt, n, fit=fit, profile=prof)
    out["dW"] = np.sqrt(np.sum((wt - wb) ** 2, axis=(-2, -1)))
    out["dspec"] = dspec
    return out | change_profiles_from(d2, dspec, percentile)


def _fit_oriented(res: dict, kernels: np.ndarray, ws: list[np.ndarray], idx: dict, n: int) -> None:
    """Gabor fits of the network's ``kernels`` (flat indices) in one batch per kernel size, into ``res``."""
    if not kernels.size:
        return
    w = [ws[idx["layer"][i] - 1][idx["out"][i], idx["in"][i]] for i in kernels]
    for size in {x.shape[-1] for x in w}:
        pick = np.array([x.shape[-1] == size for x in w])
        gf = fit_gabor_batch(np.stack([x for x, p in zip(w, pick) if p]), n)
        sel = kernels[pick]
        res["gabor_k0"][sel], res["gabor_orientation"][sel], res["gabor_sigma"][sel] = (
            gf["k0"], gf["orientation"], gf["sigma"])


def analyze_base(model, n: int) -> dict:
    """Per-kernel features of a base network plus its index, layer gains ``G_ℓ(k)`` (with the
    25/75th percentiles over kernels) and trainable parameters per layer."""

    ws = layer_kernels(model)
    idx = kernel_index([w.shape for w in ws])
    per = [kernel_features(w.reshape(-1, *w.shape[-2:]), n) for w in ws]
    feats = {k: np.concatenate([p[k] for p in per]) for k in per[0]}
    gains = [layer_gain(w, n) for w in ws]
    return {"w": ws, "index": idx, "features": feats, "n_params": layer_params(model),
            "gain": np.stack([g["G"] for g in gains]), "gain_q25": np.stack([g["q25"] for g in gains]),
            "gain_q75": np.stack([g["q75"] for g in gains])}


def analyze_network(path: str, mask: str, base: dict, x_target, n: int, L: float,
                    percentile: float = 99.9) -> dict:
    """Everything stored for one TL network (the Dask task). Loads only that model.

    Step 3 per re-trained layer (:func:`.framework.change_profiles`): the ``percentile`` of the
    spectral change over that layer's kernels, the kernels above it, and where in k they changed.
    """

    import torch

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
    nk = n // 2 + 1
    res["threshold"] = np.full(n_layers, np.nan)
    res["n_above"] = np.zeros(n_layers, dtype=np.int64)
    res["change_top"] = np.full((n_layers, nk), np.nan)
    res["change_all"] = np.full((n_layers, nk), np.nan)
    refit = []          # oriented kernels of the re-trained layers: fitted together, one batch per network
    for li, bit in enumerate(mask):
        if bit != "1":
            continue
        sel = np.flatnonzero(idx["layer"] == li + 1)
        wt = ws[li].reshape(-1, *ws[li].shape[-2:])
        wb = base["w"][li].reshape(-1, *ws[li].shape[-2:])
        ch = layer_change(wb, wt, n, percentile, fit=False)
        for k in res.keys() & (set(FEATURES) | set(GABOR) | {"cls", "dW", "dspec"}):
            res[k][sel] = ch[k]
        res["threshold"][li], res["n_above"][li] = ch["threshold"], int(ch["above"].sum())
        res["change_top"][li], res["change_all"][li] = ch["top"], ch["all"]
        refit.append(sel[ch["cls"] == CLASSES.index("oriented")])
    _fit_oriented(res, np.concatenate(refit).astype(int) if refit else np.zeros(0, int), ws, idx, n)
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
        "threshold": (("net", "layer"), z((N, L), np.float64)),
        "change_top": (("net", "layer", "k"), z((N, L, n_shells), np.float64)),
        "change_all": (("net", "layer", "k"), z((N, L, n_shells), np.float64)),
        "change_in_band": (("net", "layer"), z((N, L), np.float64)),
        "change_enrichment": (("net", "layer"), z((N, L), np.float64)),
        "change_k_peak": (("net", "layer"), z((N, L), np.float64)),
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


def pending_rows(path: Path, nets: list[Network]) -> list[int] | None:
    """Rows of the sweep store at ``path`` still to compute for ``nets``, or None when the store is
    absent or describes other networks (``[]``: the store holds every network, finished)."""
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
    if "change_top" not in g:   # a store of an older layout: rebuild it
        return None
    return [i for i in range(len(nets)) if not done[i]]


def _write_row(path: Path, i: int, res: dict, act_base: np.ndarray) -> None:
    import zarr
    with quiet_zarr():
        g = zarr.open_group(str(path), mode="r+")
    for k in ("dW", "dspec", "cls") + FEATURES + GABOR + ("class_frac", "transitions", "threshold", "n_above",
                                                        "change_top", "change_all"):
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
    from tqdm import tqdm


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
            "gain": (("layer", "k"), base["gain"]),
            "gain_q25": (("layer", "k"), base["gain_q25"]),
            "gain_q75": (("layer", "k"), base["gain_q75"]),
            "n_params": (("layer",), base["n_params"]),
            "input_spectrum": (("system", "layer", "k"), np.stack([in_spec[s] for s in inp.x])),
            "act": (("system", "layer", "stage", "k"), np.stack([act_base[s] for s in inp.x]))},
        coords={"kernel": np.arange(idx["layer"].size), "kernel_layer": ("kernel", idx["layer"]),
                "kernel_out": ("kernel", idx["out"]), "kernel_in": ("kernel", idx["in"]),
                "layer": np.arange(1, L + 1), "class": list(CLASSES), "k": np.arange(n_shells),
                "system": list(inp.x), "stage": list(STAGES)}, attrs=attrs)
    _write(bds, out_dir / "base.zarr")

    # step 1: data spectra, their bootstrap intervals and the mismatch band
    step1 = _data_step(run_dir, base_system, list(targets), norm, attrs)
    _write(step1["ds"], out_dir / "data_spectra.zarr")

    # the sweep: one task per network, results written as they arrive
    base_future = client.scatter([{k: base[k] for k in ("w", "index", "features")}], broadcast=True)[0]
    total = computed = 0
    nets_by_target = {t: find_networks(run_dir, t) for t in targets}
    todo = []
    for t, nets in nets_by_target.items():
        path = out_dir / f"sweep_{t}.zarr"
        pending = None if force else pending_rows(path, nets)
        if pending is None:
            _sweep_template(path, nets, base, n_shells, attrs | {"target": t})
            pending = list(range(len(nets)))
        total += len(nets)
        if pending:
            xf = client.scatter([inp.x[t]], broadcast=True)[0]
            todo += [(t, i, nets[i], xf) for i in pending]
    futures = {client.submit(analyze_network, net.path, net.mask, base_future, xf, inp.n, inp.L, percentile,
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

    # per target: step 3 against the band, the most-changed kernels, steps 2 and 4
    fw_rows, top_rows = [], []
    for ti, t in enumerate(targets):
        _finalize_target(out_dir / f"sweep_{t}.zarr", step1["in_band"][ti])
        top_rows.append(_most_changed(out_dir / f"sweep_{t}.zarr", nets_by_target[t], base, inp.n))
        fw_rows.append(_framework_row(run_dir, t, base, step1["M"][ti], step1["M_boot"][ti],
                                      (in_spec[base_system], in_spec[t]),
                                      (act_base[base_system][:, 0], act_base[t][:, 0]), L))
    _write_framework(out_dir / "framework.zarr", targets, fw_rows, attrs | {"percentile": percentile})
    _write_most_changed(out_dir / "most_changed.zarr", targets, top_rows, n_shells, attrs)
    return {"networks": total, "computed": computed, "seconds": time.perf_counter() - t0,
            "kernels": int(sum(len(v) for v in nets_by_target.values()) * idx["layer"].size)}


def _finalize_target(path: Path, in_band: np.ndarray) -> None:
    """Step 3 against step 1: the share of each (net, layer)'s most-changed-kernel change profile in
    the target's band, its enrichment, and the shell of its peak (thresholds were taken per layer
    and network in the tasks)."""
    import zarr

    with quiet_zarr():
        g = zarr.open_group(str(path), mode="r+")
    top = np.asarray(g["change_top"][:], dtype=float)
    share, enrich = band_share(top, in_band)
    ok = np.isfinite(top).all(axis=-1)
    g["change_in_band"][:] = np.where(ok, share, np.nan)
    g["change_enrichment"][:] = np.where(ok, enrich, np.nan)
    g["change_k_peak"][:] = np.where(ok, np.argmax(np.where(np.isfinite(top), top, -1.0), axis=-1), np.nan)
    g.attrs["band_shells"] = [int(k) for k in np.flatnonzero(in_band)]


def _most_changed(path: Path, nets: list[Network], base: dict, n: int) -> dict:
    """Radial profiles of |Ŵ| before and after TL for the TOP_K kernels of largest ``dspec``."""
    import zarr

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


def _data_step(run_dir, base_system: str, targets: list[str], norm: dict, attrs: dict) -> dict:
    """Step 1 (docs/science.md §6.1): per-snapshot spectra of every system, bootstrap intervals of
    the mean spectra and of the log ratios target/base, significance, the mismatch ``M`` and band."""
    import xarray as xr


    systems = [base_system] + list(targets)
    snaps = {s: snapshot_spectra(run_dir, s, norm) for s in systems}
    V, k = list(ALL_VARIABLES), snaps[base_system]["k"]
    E = np.stack([[pooled_mean(snaps[s][v]) for v in V] for s in systems])
    ratios = [{v: bootstrap_ratio(snaps[base_system][v], snaps[t][v], seed=1000 * ti + j)
               for j, v in enumerate(V)} for ti, t in enumerate(targets)]
    prof = [mismatch_profile(r) for r in ratios]
    # intervals of each system's mean spectrum (the base's from its first comparison)
    E_lo = np.stack([[ratios[0][v]["E_base_lo"] for v in V]] +
                    [[r[v]["E_target_lo"] for v in V] for r in ratios]) if targets else E
    E_hi = np.stack([[ratios[0][v]["E_base_hi"] for v in V]] +
                    [[r[v]["E_target_hi"] for v in V] for r in ratios]) if targets else E
    D = np.stack([[log_difference(E[0, j], E[i + 1, j]) for j in range(len(V))] for i in range(len(targets))])
    bands = np.array([[difference_bands(D[i, j] * ratios[i][v]["significant"]) for j, v in enumerate(V)]
                      for i in range(len(targets))])
    pick = lambda key: np.stack([[r[v][key] for v in V] for r in ratios])  # noqa: E731
    ds = xr.Dataset({"E": (("system", "var", "k"), E), "E_lo": (("system", "var", "k"), E_lo),
                     "E_hi": (("system", "var", "k"), E_hi),
                     "R": (("target", "var", "k"), pick("R")), "R_lo": (("target", "var", "k"), pick("R_lo")),
                     "R_hi": (("target", "var", "k"), pick("R_hi")),
                     "significant": (("target", "var", "k"), pick("significant")),
                     "D": (("target", "var", "k"), D),
                     "band": (("target", "var", "edge"), bands),
                     "mismatch": (("target", "k"), np.stack([p["M"] for p in prof])),
                     "in_band": (("target", "k"), np.stack([p["in_band"] for p in prof])),
                     "n_snapshots": (("system",), [int(np.isfinite(snaps[s]["psi"]).all(-1).sum()) for s in systems]),
                     "n_members": (("system",), [int(snaps[s]["psi"].shape[0]) for s in systems])},
                    coords={"system": systems, "var": V, "target": list(targets), "k": k,
                            "edge": ["lo", "hi", "max"]},
                    attrs=attrs | {"n_boot": N_BOOT, "ci": list(CI),
                                   "bootstrap": "members with replacement, then snapshots within each drawn member",
                                   "mismatch_vars": "x_psi, x_omega, y_pi"})
    return {"ds": ds, "M": [p["M"] for p in prof], "M_boot": [p["M_boot"] for p in prof],
            "in_band": [p["in_band"] for p in prof]}


def _framework_row(run_dir, target: str, base: dict, M: np.ndarray, M_boot: np.ndarray, inputs, outputs,
                   L: int) -> dict:
    """Steps 2 and 4 for one target: selectivity per layer (and its step-1 replicates), the base
    network's in-band activation mismatch, the measured single-layer CCs and the agreement test."""

    sel = framework.selectivity(base["gain"], M)
    sel_boot = framework.selectivity(base["gain"], M_boot)
    res = load_sweep_results(run_dir, target)
    table, reps = framework.measured_table(res, L) if res is not None else (np.zeros((0, L)), [])
    cc = framework.measured_ranking(res, L) if res is not None else np.full(L, np.nan)
    test = framework.test(sel, sel_boot, table, base["n_params"], seed=17)
    return {"score": sel, "score_boot": sel_boot, "cc": cc, "table": table, "reps": reps, "test": test,
            "act_in": framework.band_log_mismatch(inputs[0], inputs[1], M),
            "act_out": framework.band_log_mismatch(outputs[0], outputs[1], M),
            "compare": framework.compare(sel, cc)}


def _write_framework(path: Path, targets, rows, attrs) -> None:
    import xarray as xr

    L = rows[0]["score"].shape[0]
    R = max(1, max(len(r["reps"]) for r in rows))
    table = np.full((len(rows), R, L), np.nan)
    rep_fraction, rep_seed = np.full((len(rows), R), np.nan), np.full((len(rows), R), np.nan)
    for i, r in enumerate(rows):
        table[i, :len(r["reps"])] = r["table"]
        for j, (f, sd) in enumerate(r["reps"]):
            rep_fraction[i, j], rep_seed[i, j] = f, sd
    with np.errstate(invalid="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cc_lo, cc_hi = np.nanmin(table, axis=1), np.nanmax(table, axis=1)
    ds = xr.Dataset({"score": (("target", "layer"), np.stack([r["score"] for r in rows])),
                     "score_lo": (("target", "layer"), np.stack([np.nanpercentile(r["score_boot"], 2.5, axis=0)
                                                                 for r in rows])),
                     "score_hi": (("target", "layer"), np.stack([np.nanpercentile(r["score_boot"], 97.5, axis=0)
                                                                 for r in rows])),
                     "act_mismatch_in": (("target", "layer"), np.stack([r["act_in"] for r in rows])),
                     "act_mismatch_out": (("target", "layer"), np.stack([r["act_out"] for r in rows])),
                     "measured_cc": (("target", "layer"), np.stack([r["cc"] for r in rows])),
                     "measured_cc_min": (("target", "layer"), cc_lo),
                     "measured_cc_max": (("target", "layer"), cc_hi),
                     "cc_replicates": (("target", "replicate", "layer"), table),
                     "replicate_fraction": (("target", "replicate"), rep_fraction),
                     "replicate_seed": (("target", "replicate"), rep_seed),
                     "n_replicates": (("target",), [int(r["test"]["n_replicates"]) for r in rows]),
                     "agreement": (("target", "method", "metric"), np.stack([r["test"]["value"] for r in rows])),
                     "agreement_lo": (("target", "method", "metric"), np.stack([r["test"]["lo"] for r in rows])),
                     "agreement_hi": (("target", "method", "metric"), np.stack([r["test"]["hi"] for r in rows]))},
                    coords={"target": list(targets), "layer": np.arange(1, L + 1), "replicate": np.arange(R),
                            "method": list(METHODS), "metric": list(METRICS)},
                    attrs=attrs | {"comparison": json.dumps({t: r["compare"] for t, r in zip(targets, rows)}),
                                   "score": "selectivity sigma_l (docs/science.md 6.1)"})
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
