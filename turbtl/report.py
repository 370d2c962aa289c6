"""`turbtl report`: one self-contained HTML page (figures embedded) summarising a run folder.

Sections: systems and their parameters; DNS energy spectra and Π spectra, base vs targets; the
base network's a-priori metrics next to the physics closures; the CC of every transfer subset
(singles, pairs, the distribution over all subsets, the ranked table with the references);
filter-class fractions per layer; the most-changed kernels before/after TL; the physics-guided
layer recommendation against the measured best; online LES (when run); timings of every stage;
provenance. A section whose stage has not run says so and names the command that produces it.

The page reads only what the stages wrote; it computes nothing that a stage should have stored,
except the Π spectra of the stores (a cheap FFT of the LES-grid fields).
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import summary
from analysis.framework_report import framework_html
from solver.atomic import write_bytes_atomic
from analysis.plots import cc_gain_figure
from suite import layout, stats
from suite.dns import flow_statistics
from suite.fdns import open_fdns, read_attrs, reading
from suite.metrics import spectrum, variance_fraction_above
from suite.rundir import read_stage
from suite.stages import PIPELINE as STAGES
from suite.transfer import load_results

from .browser import MARK_IMAGES_JS


# --------------------------------------------------------------------------------------------
# small HTML helpers


def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v, digits=3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return _esc(v)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<figure><img alt="{_esc(alt)}" src="data:image/png;base64,{data}"><figcaption>{_esc(alt)}</figcaption></figure>'


def _img_file(path: str | Path, alt: str) -> str:
    p = Path(path)
    return _img(p.read_bytes(), alt) if p.is_file() else _missing(f"figure {p.name} not found")


def _missing(what: str) -> str:
    return f'<p class="missing">{_esc(what)}</p>'


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# sections


def _stores(run_dir: Path) -> dict[str, Path]:
    d = layout.fdns_dir(run_dir)
    return {p.name[:-5]: p for p in sorted(d.glob("*.zarr"))} if d.is_dir() else {}


def _systems_section(run_dir: Path) -> tuple[str, dict]:
    stores = _stores(run_dir)
    if not stores:
        return _missing("no FDNS stores: run `turbtl dns`"), {}
    keys = ["re", "nu", "kf", "mu", "beta", "forcing", "n_dns", "n_les", "dt", "stepper", "dealias",
            "filter", "filter_width", "spinup_time", "sample_interval"]
    rows, attrs = [], {}
    for name, path in stores.items():
        a = read_attrs(path)
        attrs[name] = a
        rows.append([name] + [a.get(k, "–") for k in keys])
    return _table(["system"] + keys, rows), attrs


def _spectra_section(run_dir: Path, attrs: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not attrs:
        return ""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    slopes, bands = [], []
    for name, path in _stores(run_dir).items():
        ds = open_fdns(path)
        with reading(path):  # a damaged chunk: DataError naming the store
            has_spec = "spectrum_dns" in ds and ds.sizes.get("time", 0)
            e = np.asarray(ds["spectrum_dns"].mean(("member", "time")).values) if has_spec else None
            pi = ds["pi"].isel(time=slice(-min(8, ds.sizes["time"]), None)).values
            st = flow_statistics(ds) if has_spec and "energy" in ds else None
        if has_spec:
            k = np.asarray(ds["k"].values, dtype=float)
            sel = (k > 0) & (e > 0)
            a1.loglog(k[sel], e[sel], label=name)
        if st is not None:
            slopes.append([name, f"{st['kmax_over_kd']:.2f}", f"{st['z_decades']:.2f}", f"{st['slope']:.2f}",
                           "{:.0f}–{:.0f}".format(*st["fit_range"]), f"{st['energy_drift']:.3f}"])
        kk, ep = spectrum(pi.reshape(-1, *pi.shape[-2:]), float(attrs[name]["L"]))
        a2.loglog(kk[1:], ep[1:], label=name)
        kc = (pi.shape[-1] - 1) // 3
        bands.append([name, str(attrs[name].get("les_jacobian", "–")).split(":")[0], kc,
                      f"{variance_fraction_above(pi, kc):.3f}"])
    kref = np.array([6.0, 30.0])
    a1.loglog(kref, 0.5 * a1.get_ylim()[1] * (kref / kref[0]) ** -3, "k--", lw=0.8, label="k⁻³")
    a1.set(xlabel="k", ylabel="E(k)", title="DNS energy spectra")
    a2.set(xlabel="k", ylabel="|Π̂|² shell sum", title="SGS term Π spectra (LES grid)")
    for a in (a1, a2):
        a.legend(fontsize=8)
        a.grid(alpha=0.3, which="both")
    out = _img(_fig_png(fig), "DNS energy spectra and Π spectra, base vs targets")
    if slopes:
        out += _table(["system", "k_max / k_d (resolved: ≥ 1)", "decades of Z(k) from k_f to k_max",
                       "fitted slope of E(k)", "fit range k", "energy drift between halves"], slopes)
        out += ("<p>k_d: the dissipation wavenumber of the operator that removes the enstrophy "
                "(viscous, or hyperviscous where the system has hyperviscosity), from the measured "
                "enstrophy dissipation; <code>suite.dns.flow_statistics</code>, docs/science.md §1.</p>")
    if bands:
        out += _table(["system", "LES Jacobian of Π", "k_c = (n_les−1)//3",
                       "fraction of Π's variance with max(|kx|, |ky|) > k_c"], bands)
    return out


def _base_section(run_dir: Path) -> str:
    p = layout.base_model_dir(run_dir) / "metrics.json"
    if not p.is_file():
        return _missing("no base network: run `turbtl train`")
    m = json.loads(p.read_text())
    keys = ["cc", "cc_backscatter", "cc_diffusion", "rel_l2"]
    rows = [[name] + [float(v.get(k, float("nan"))) for k in keys] for name, v in m["models"].items()]
    perf = m.get("performance", {})
    note = (f"<p>Test split of <b>{_esc(m.get('system'))}</b>: {m.get('n_test')} snapshots; trained on "
            f"{m.get('n_train')}; {_fmt(perf.get('samples_per_s', float('nan')), 1)} samples/s on "
            f"{perf.get('world_size', 1)} process(es), {_esc(perf.get('device', ''))}.</p>")
    return note + _table(["model"] + keys, rows)


def _ci(v) -> str:
    return stats.fmt(v) if v is not None and not any(map(math.isnan, v)) else "–"


def _oracle_init(run_dir: Path) -> str:
    """How this run's oracles started (transfer.oracle_init, from an oracle model's provenance)."""
    for meta in sorted(layout.tl_root(run_dir).glob("*/f1_s*/oracle/meta.json")):
        try:
            init = json.loads(meta.read_text())["provenance"]["config"]["transfer"].get("oracle_init", "random")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return ("fine-tuned from the base network's weights (transfer.oracle_init = base)" if init == "base"
                else "from random weights (transfer.oracle_init = random)")
    return "from random weights or the base network's (transfer.oracle_init)"


def _sweep_section(run_dir: Path) -> tuple[str, dict]:
    try:
        df = load_results(run_dir)
    except Exception as e:  # noqa: BLE001 - the section says what is missing
        return _missing(f"no transfer sweep results ({e}): run `turbtl transfer`"), {}
    if df is None or len(df) == 0:
        return _missing("no transfer sweep results: run `turbtl transfer`"), {}
    out, best = [], {}
    out.append("<p>CC: mean of the per-snapshot CCs on the target's test split over the seeds, with its 95 % "
               "interval (bootstrap over test snapshots and seeds, suite.stats). Steps: optimizer steps run "
               "(early stopping on the target's validation data; the best-validation weights are kept, at "
               f"'best step'). Oracle: every layer trained on the target's full training data, {_oracle_init(run_dir)}.</p>")
    tabs = []
    for target, g in df.groupby("target"):
        tab = stats.interval_table(run_dir, target)
        tl = g[g["kind"] == "tl"].sort_values("cc", ascending=False)
        out.append(f"<h3>target {_esc(target)}: {tl['mask'].nunique()} subsets</h3>")
        if len(tab):
            tabs.append(tab)
            order = {"oracle": 0, "base": 1, "scratch": 2, "tl": 3, "random": 4}
            tab = tab.assign(_o=tab["kind"].map(order)).sort_values(["fraction", "_o", "cc"],
                                                                    ascending=[True, True, False])
            rows = [[r.kind, r.mask, r.fraction, r.seeds, _ci((r.cc, r.lo, r.hi)), r.n_trainable, r.steps,
                     r.best_step] for r in tab.itertuples()]
            out.append(_table(["kind", "mask (layer 1 first)", "fraction", "seeds", "CC [95 % CI]",
                               "trained params", "steps", "best step"], rows))
        else:  # rows written before per-snapshot CCs were stored: the plain table
            rows = [[r.kind, r.mask, r.fraction, r.seed, r.cc, r.n_trainable] for r in g.itertuples()]
            out.append(_table(["kind", "mask", "fraction", "seed", "CC", "trained params"], rows))
        singles = tl[tl["n_layers_trained"] == 1].sort_values("cc", ascending=False)
        if len(singles):
            best[target] = {"best_single": int(singles.iloc[0]["first_trainable"]),
                            "best_mask": str(tl.iloc[0]["mask"]), "best_cc": float(tl.iloc[0]["cc"])}
    if tabs:
        fig = cc_gain_figure(pd.concat(tabs, ignore_index=True))
        if fig is not None:
            out.insert(1, _img(_fig_png(fig), "CC gain over the base network against trainable parameters"))
    return "".join(out), best


def study_checks(run_dir: Path) -> list[tuple[str, bool, str]]:
    """The study's checks (suite.stats.checks) over the targets of the sweep."""
    try:
        targets = sorted(load_results(run_dir)["target"].unique())
    except Exception:  # noqa: BLE001 - no sweep: only the a-priori check
        targets = []
    return stats.checks(run_dir, targets)


def _findings_section(run_dir: Path, checks) -> str:
    """The run's findings, each computed from its tables with its interval, and where it disagrees
    with the paper (the paper: the shallowest layers are the best to re-train)."""
    items = []
    try:
        c = stats.cnn_vs_smagorinsky(run_dir)
        items.append(f"Base system, a priori: CNN CC {_ci(c['cnn'])} vs Smagorinsky {_ci(c['smag'])} "
                     f"(difference {_ci(c['diff'])}, {c['snapshots']} test snapshots).")
    except Exception as e:  # noqa: BLE001
        items.append(f"Base system, a priori: not available ({_esc(e)}).")
    try:
        targets = sorted(load_results(run_dir)["target"].unique())
    except Exception:  # noqa: BLE001
        targets = []
    for t in targets:
        for r in stats.target_findings(run_dir, t):
            items.append(_target_finding(r))
    checks_html = "".join(f"<li><b>{'PASS' if ok else 'FAIL'}</b> {_esc(name)}: {_esc(line)}</li>"
                          for name, ok, line in checks)
    return ("<p>Every number below is computed from this run's tables; brackets are 95 % intervals (bootstrap "
            "over test snapshots and seeds; differences paired). The paper (Subel et al. 2023) finds the "
            "shallowest layers the best to re-train.</p><ul>" + "".join(f"<li>{i}</li>" for i in items)
            + f"</ul><h3>Checks</h3><ul>{checks_html}</ul>")


def _target_finding(r: dict) -> str:
    t, f = _esc(r["target"]), r["fraction"]
    parts = [f"<b>{t}</b>, fraction {f:g} ({r['seeds']} seed(s), {r['n_subsets']} subsets):"]
    if "base" in r:
        parts.append(f"base network CC {_ci(r['base'])}")
    if "oracle_gap" in r:
        parts.append(f"oracle {_ci(r['oracle'])}, oracle − base gap {_ci(r['oracle_gap'])}")
    bs, bb = r.get("best_single"), r.get("best_subset")
    if bs:
        parts.append(f"best single layer {bs['mask'].index('1') + 1} ({bs['mask']}, {bs['n_trainable']} params) "
                     f"CC {_ci(bs['cc'])}, gain over base {_ci(bs['gain'])}")
    if bb:
        parts.append(f"best subset {bb['mask']} ({bb['n_trainable']} params) CC {_ci(bb['cc'])}, gain "
                     f"{_ci(bb['gain'])}")
    sig = r["singles_significant"]
    if r["singles_pairs"]:
        parts.append(f"single layers: {len(sig)} of {r['singles_pairs']} pairwise differences significant"
                     + (" (" + "; ".join(f"{a} − {b} {_ci(d)}" for a, b, d in sig[:6]) + ")" if sig else ""))
    for c in r["random"]:
        parts.append(f"capacity control for {c['mask']}: {c['n_trainable']} random parameters CC {_ci(c['cc'])}, "
                     f"subset − random {_ci(c['subset_minus_random'])}")
    if "best_minus_scratch" in r:
        parts.append(f"scratch at equal steps ({r['steps']:.0f}) CC {_ci(r['scratch'])}, best subset − scratch "
                     f"{_ci(r['best_minus_scratch'])}")
    if bs:
        layer = bs["mask"].index("1") + 1
        if layer == 1:
            parts.append("agrees with the paper: layer 1 is the best single layer")
        else:
            l1 = next((d for a, b, d in sig if a.index("1") == 0 and b == bs["mask"]), None)
            parts.append(f"<b>disagrees with the paper</b>: layer {layer}, not layer 1, is the best single layer"
                         + (f" (layer 1 − layer {layer} {_ci(l1)}, significant)" if l1 else
                            " (not significantly better than layer 1)"))
    return "; ".join(parts) + "."


def _analysis_section(run_dir: Path, best: dict) -> dict[str, str]:
    try:
        if read_stage(run_dir, "analyze") is None:  # none, or interrupted: never show partial results
            raise FileNotFoundError("no finished `turbtl analyze` recorded in this run folder")
        s = summary(run_dir)
    except Exception as e:  # noqa: BLE001
        msg = _missing(f"no analysis ({e}): run `turbtl analyze`")
        return {"cc": msg, "classes": msg, "kernels": msg, "recommend": msg, "activations": msg, "steps": msg}
    f = s["figures"]
    cc = "".join(_img_file(f[k], t) for k, t in (("cc_layers", "CC of single-layer re-training and the pairs matrix"),
                                                 ("cc_by_first_layer", "CC over all subsets, grouped by the first trainable layer"))
                 if k in f)
    classes = _img_file(f["class_fractions"], "filter-class fractions per layer, base vs TL") if "class_fractions" in f else ""
    rows = [[l] + [s["class_fractions_base"][str(l)][c] for c in s["classes"]] for l in s["layers"]]
    classes += "<h3>base network</h3>" + _table(["layer"] + s["classes"], rows)
    kernels = _img_file(f["most_changed_kernels"], "most-changed kernels, |Ŵ| before and after TL") if "most_changed_kernels" in f else ""
    acts = (_img_file(f["activation_ratios"], "activation spectra ratio TL/base per layer") if "activation_ratios" in f else "")
    acts += _img_file(f["data_spectra"], "data spectra ψ̄, ω̄, Π: base vs targets") if "data_spectra" in f else ""
    rec_rows = []
    for t, v in s["targets"].items():
        rec_rows.append([t, v.get("recommended"), v.get("measured_best"), v.get("spearman_rho", float("nan")),
                         _disagreements(v.get("disagreements", [])),
                         best.get(t, {}).get("best_mask", "–"), best.get(t, {}).get("best_cc", float("nan"))])
    rec = _table(["target", "recommended layer (framework, before TL)", "measured best single layer",
                  "Spearman ρ (predicted vs measured ranking)", "layers ranked differently",
                  "best subset overall", "its CC"], rec_rows)
    fw = framework_html(s)      # steps 1-3 per target and the test table (analysis/framework_report.py)
    return {"cc": cc, "classes": classes, "kernels": kernels, "recommend": rec + fw["test"], "activations": acts,
            "steps": fw["steps"]}


def _disagreements(rows) -> str:
    """'layer 1: predicted #1, measured #3; ...' from the framework's comparison rows."""
    out = []
    for d in rows:
        if isinstance(d, dict):
            out.append(f"layer {d.get('layer')}: predicted #{d.get('predicted_rank')}, measured #{d.get('measured_rank')}")
        else:
            out.append(str(d))
    return "; ".join(out) or "–"


def _les_section(run_dir: Path) -> str:
    d = layout.les_dir(run_dir)
    csvs = sorted(d.glob("*_metrics.csv")) if d.is_dir() else []
    if not csvs:
        return _missing("no online LES: run `turbtl les`")
    out = []
    for c in csvs:
        df = pd.read_csv(c)
        out.append(f"<h3>{_esc(c.stem.replace('_metrics', ''))}</h3>")
        out.append(_table(list(df.columns), df.values.tolist()))
    for png in sorted(layout.figures_dir(run_dir).glob("les_*.png")):
        out.append(_img_file(png, png.stem.replace("_", " ")))
    return "".join(out)


def _timings_section(run_dir: Path) -> str:
    rows = []
    for st in STAGES:
        rec = read_stage(run_dir, st)
        if rec:
            rows.append([st, rec["wall_s"], rec.get("summary", ""), rec.get("finished", "")])
    return _table(["stage", "wall time [s]", "summary", "finished"], rows) if rows else _missing("no stage records")


def _provenance_section(run_dir: Path, attrs: dict) -> str:
    meta = layout.base_model_dir(run_dir) / "meta.json"
    prov = None
    if meta.is_file():
        prov = json.loads(meta.read_text()).get("provenance")
    if prov is None and attrs:
        p = next(iter(attrs.values())).get("provenance")
        prov = json.loads(p) if isinstance(p, str) else p
    if not prov:
        return _missing("no provenance recorded")
    libs = prov.get("libraries", {})
    rows = [["code version", prov.get("code_version")], ["created", prov.get("created")], ["host", prov.get("host")]]
    rows += [[k, v] for k, v in libs.items()]
    cfg = prov.get("config")
    extra = (f"<details><summary>resolved configuration</summary><pre>{_esc(json.dumps(cfg, indent=1))}</pre></details>"
             if cfg else "")
    return _table(["item", "value"], rows) + extra


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222;line-height:1.45}
h1{margin-bottom:0} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em} img{max-width:1200px;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} .missing{color:#a33;font-style:italic} nav a{margin-right:1em}
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``DIR/report.html`` and return its path."""
    import matplotlib
    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    sys_html, attrs = _systems_section(run_dir)
    sweep_html, best = _sweep_section(run_dir)
    ana = _analysis_section(run_dir, best)
    sections = [
        ("findings", "Findings of this run", _findings_section(run_dir, study_checks(run_dir))),
        ("systems", "Systems", sys_html),
        ("spectra", "DNS and Π spectra", _spectra_section(run_dir, attrs)),
        ("base", "Base network vs physics closures (a priori, test split)", _base_section(run_dir)),
        ("sweep", "Transfer learning: every layer-freezing subset", ana["cc"] + sweep_html),
        ("recommend", "Physics-guided layer recommendation vs measured best", ana["recommend"]),
        ("framework", "Physics-guided framework, step by step (docs/science.md §6.1)", ana["steps"]),
        ("classes", "Learned filters: class fractions per layer", ana["classes"]),
        ("kernels", "Most-changed kernels through TL", ana["kernels"]),
        ("activations", "Activation and data spectra", ana["activations"]),
        ("les", "Online LES (a posteriori)", _les_section(run_dir)),
        ("timings", "Timings of every stage", _timings_section(run_dir)),
        ("provenance", "Provenance", _provenance_section(run_dir, attrs)),
    ]
    nav = "".join(f'<a href="#{k}">{_esc(t.split(":")[0])}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{_esc(t)}</h2>{h}</section>' for k, t, h in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>turbtl report: {_esc(run_dir.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>turbtl report — {_esc(run_dir.name)}</h1>"
            "<p>Transfer learning of CNN subgrid-scale closures for 2D turbulence "
            "(after Subel, Guan, Chattopadhyay &amp; Hassanzadeh, PNAS Nexus 2023).</p>"
            f"<nav>{nav}</nav>{body}{MARK_IMAGES_JS}</body></html>")
    out = layout.report_path(run_dir)
    write_bytes_atomic(out, page.encode())
    return out
