"""Figures and HTML of the physics-guided framework, step by step (docs/science.md §6.1).

:func:`plot_framework` writes, per target, ``framework_step1_<t>.png`` (data spectra with bootstrap
intervals, log ratios and the band), ``framework_step2_<t>.png`` (the base network's layer gains
against the mismatch, selectivity and activation mismatch per layer) and ``framework_step3_<t>.png``
(where the most-changed kernels of each re-trained layer changed, against the band).
:func:`framework_html` returns the report's pieces (``{"steps": html, "test": html}``) from
:func:`analysis.summary`'s dict; the report embeds them as they are.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from suite import layout

from .aggregate import open_result
from .figures import plt as _plt
from .figures import save

LABELS = {"psi": "ψ̄", "omega": "ω̄", "pi": "Π", "x_psi": "x_ψ (normalized input)",
          "x_omega": "x_ω (normalized input)", "y_pi": "y_Π (normalized output)"}
METHOD_LABELS = {"framework": "framework (selectivity σ)", "random": "null: random ranking",
                 "params": "null: trainable-parameter count", "shallowest": "paper's heuristic: shallowest first"}


def _save(fig, path: Path) -> str:
    return save(fig, path, dpi=100)      # the framework figures have always been written at 100 dpi


def _shade_band(ax, k, in_band):
    for kk in np.asarray(k)[np.asarray(in_band, bool)]:
        ax.axvspan(kk - 0.5, kk + 0.5, color="orange", alpha=0.15, lw=0)


def plot_step1(data, t: str, out: Path) -> str:
    plt = _plt()
    k = data["k"].values
    base = str(data["system"].values[0])
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for ax, v in zip(axes[:3], ("psi", "omega", "pi")):
        for s, c in ((base, "C0"), (t, "C3")):
            e = data["E"].sel(system=s, var=v).values
            lo, hi = data["E_lo"].sel(system=s, var=v).values, data["E_hi"].sel(system=s, var=v).values
            ax.loglog(k[1:], e[1:], color=c, label=s)
            ax.fill_between(k[1:], lo[1:], hi[1:], color=c, alpha=0.25, lw=0)
        _shade_band(ax, k, data["in_band"].sel(target=t).values)
        ax.set(title=f"E(k) of {LABELS[v]}", xlabel="k")
        ax.legend(fontsize=7)
    ax = axes[3]
    for i, v in enumerate(data["var"].values):
        r = data["R"].sel(target=t, var=v).values
        lo, hi = data["R_lo"].sel(target=t, var=v).values, data["R_hi"].sel(target=t, var=v).values
        ax.plot(k[1:], r[1:], color=f"C{i}", label=LABELS[str(v)], lw=1)
        ax.fill_between(k[1:], lo[1:], hi[1:], color=f"C{i}", alpha=0.2, lw=0)
    ax.plot(k[1:], data["mismatch"].sel(target=t).values[1:], "k--", lw=1.2, label="M(k)")
    ax.axhline(0, color="grey", lw=0.5)
    _shade_band(ax, k, data["in_band"].sel(target=t).values)
    ax.set(title=f"log10 E_{t} / E_{base} (95% bootstrap)", xlabel="k", ylabel="decades")
    ax.legend(fontsize=6)
    return _save(fig, out / f"framework_step1_{t}.png")


def plot_step2(base, data, fw, t: str, out: Path) -> str:
    plt = _plt()
    k = base["k"].values
    layers = base["layer"].values
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, l in enumerate(layers):
        a1.plot(k[1:], base["gain"].values[i, 1:], color=f"C{i}", label=f"layer {l}")
        a1.fill_between(k[1:], base["gain_q25"].values[i, 1:], base["gain_q75"].values[i, 1:], color=f"C{i}",
                        alpha=0.12, lw=0)
    m = data["mismatch"].sel(target=t).values
    a1b = a1.twinx()
    a1b.plot(k[1:], m[1:], "k--", lw=1.2, label="M(k)")
    a1b.set_ylabel("M(k) [decades]")
    _shade_band(a1, k, data["in_band"].sel(target=t).values)
    a1.set(title="base network: layer gain G_ℓ(k) (peak-normalized |Ŵ|², IQR shaded)", xlabel="k",
           ylabel="G_ℓ(k)")
    a1.legend(fontsize=7, loc="upper right")
    f = fw.sel(target=t)
    s, lo, hi = f["score"].values, f["score_lo"].values, f["score_hi"].values
    a2.bar(layers, s, color="C0", alpha=0.7, label="selectivity σ_ℓ")
    a2.errorbar(layers, s, yerr=[np.maximum(s - lo, 0), np.maximum(hi - s, 0)], fmt="none", color="k", capsize=3)
    a2.axhline(1, color="grey", lw=0.6)
    a2b = a2.twinx()
    a2b.plot(layers, f["act_mismatch_in"].values, "s-", color="C2", label="activation mismatch: input")
    a2b.plot(layers, f["act_mismatch_out"].values, "o-", color="C3", label="activation mismatch: output (pre-ReLU)")
    a2b.set_ylabel("in-band |log10 ratio| [decades]")
    a2.set(title=f"{t}: σ_ℓ (bars, 95% interval) and activations", xlabel="layer", ylabel="σ_ℓ")
    a2.legend(fontsize=7, loc="upper left")
    a2b.legend(fontsize=6, loc="upper right")
    return _save(fig, out / f"framework_step2_{t}.png")


def plot_step3(sw, data, t: str, out: Path) -> str:
    plt = _plt()
    k = sw["k"].values
    layers = sw["layer"].values
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.8))
    enr = []
    for i, l in enumerate(layers):
        on = np.array([str(m)[i] == "1" for m in sw["mask"].values])
        prof = sw["change_top"].values[on, i] if on.any() else np.full((1, k.size), np.nan)
        if np.isfinite(prof).any():
            a1.plot(k[1:], np.nanmean(prof, axis=0)[1:], color=f"C{i}", label=f"layer {l} ({int(on.sum())} nets)")
        e = sw["change_enrichment"].values[on, i]
        enr.append(e[np.isfinite(e)])
    _shade_band(a1, k, data["in_band"].sel(target=t).values)
    a1.set(title=f"{t}: where the most-changed kernels changed (share per shell)", xlabel="k",
           ylabel="⟨(|Ŵ_TL|−|Ŵ_base|)²⟩_shell, normalized")
    a1.legend(fontsize=7)
    pos = [l for l, e in zip(layers, enr) if e.size]
    if pos:
        a2.boxplot([e for e in enr if e.size], positions=pos)
    a2.axhline(1, color="grey", lw=0.6)
    a2.set(title="enrichment of the change in the step-1 band (1 = none)", xlabel="re-trained layer",
           ylabel="band share / band's shell share")
    return _save(fig, out / f"framework_step3_{t}.png")


def plot_framework(run_dir, targets) -> dict[str, str]:
    """Write the step 1–3 figures of every target; ``{name: path}``."""
    a, out = layout.analysis_dir(run_dir), layout.figures_dir(run_dir)
    data, base, fw = (open_result(a / f"{x}.zarr") for x in ("data_spectra", "base", "framework"))
    figs = {}
    for t in targets:
        sw = open_result(a / f"sweep_{t}.zarr")
        figs[f"framework_step1_{t}"] = plot_step1(data, t, out)
        figs[f"framework_step2_{t}"] = plot_step2(base, data, fw, t, out)
        figs[f"framework_step3_{t}"] = plot_step3(sw, data, t, out)
    return figs


# --------------------------------------------------------------------------------------------
# HTML pieces


def _f(v, d=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{d}f}"
    return html.escape(str(v))


def _iv(triple, d=2) -> str:
    v, lo, hi = triple
    return f"{_f(v, d)} [{_f(lo, d)}, {_f(hi, d)}]"


def _table(header, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(path, alt) -> str:
    p = Path(path)
    if not p.is_file():
        return f'<p class="missing">figure {html.escape(p.name)} not found</p>'
    data = base64.b64encode(p.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _bands(shells) -> str:
    if not shells:
        return "none (no shell differs significantly)"
    runs, start = [], shells[0]
    for a, b in zip(shells, shells[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}–{a}")
            start = b
    return ", ".join(runs)


def framework_html(summary: dict) -> dict[str, str]:
    """``{"steps": …, "test": …}``: HTML of steps 1–3 per target and of the test table, from
    :func:`analysis.summary`'s dict (figures embedded)."""
    figs, layers = summary["figures"], summary["layers"]
    steps = []
    for t, v in summary["targets"].items():
        steps.append(f"<h3>target {html.escape(t)}</h3>")
        steps.append(f"<p><b>Step 1.</b> Shells where the normalized inputs/output differ most significantly "
                     f"(M ≥ max M / 2): <b>{_bands(v['band_shells'])}</b>. Largest significant difference per "
                     "variable: " + "; ".join(f"{html.escape(k)} k {b[0]:g}–{b[1]:g}"
                                              for k, b in v["data_bands"].items()) + ".</p>")
        if f"framework_step1_{t}" in figs:
            steps.append(_img(figs[f"framework_step1_{t}"], f"step 1, {t}: data spectra and log ratios"))
        rows = [[l, f"{_f(v['scores'][i])} [{_f(v['score_interval'][i][0])}, {_f(v['score_interval'][i][1])}]",
                 _f(v["act_mismatch"]["input"][i]), _f(v["act_mismatch"]["output"][i]),
                 f"{_f(v['measured_cc'][i])} ({_f(v['measured_cc_range'][i][0])}–{_f(v['measured_cc_range'][i][1])})"]
                for i, l in enumerate(layers)]
        steps.append(f"<p><b>Step 2.</b> Recommended layer (highest σ): <b>{_f(v.get('recommended'))}</b>; "
                     f"measured best single layer: <b>{_f(v.get('measured_best'))}</b> "
                     f"({v['n_replicates']} replicate(s)).</p>")
        steps.append(_table(["layer", "selectivity σ [95% over step 1]", "input in-band mismatch",
                             "output in-band mismatch", "measured CC, mean (min–max over replicates)"], rows))
        if f"framework_step2_{t}" in figs:
            steps.append(_img(figs[f"framework_step2_{t}"], f"step 2, {t}: layer gains and selectivity"))
        s3 = v["step3"]
        rows = [[l, s3[str(l)]["networks"], _f(s3[str(l)]["n_above"], 1), _f(s3[str(l)]["share_in_band"]),
                 _f(s3[str(l)]["enrichment"], 2), _f(s3[str(l)]["k_peak"], 1)] for l in layers]
        steps.append("<p><b>Step 3.</b> Kernels above the 99.9th percentile of ‖|Ŵ_TL| − |Ŵ_base|‖ (threshold "
                     "per layer and network); the share of their change in the step-1 band and its enrichment "
                     "over a band-blind change (1), means over the networks that re-trained the layer.</p>")
        steps.append(_table(["layer", "networks", "kernels above", "share in band", "enrichment",
                             "peak shell of change"], rows))
        if f"framework_step3_{t}" in figs:
            steps.append(_img(figs[f"framework_step3_{t}"], f"step 3, {t}: where re-training changed the kernels"))
    rows = []
    for t, v in summary["targets"].items():
        for m, lab in METHOD_LABELS.items():
            a = v["agreement"].get(m)
            if a:
                rows.append([html.escape(t), lab, _iv(a["spearman"]), _iv(a["top1"]), _iv(a["top2"]),
                             v["n_replicates"]])
    test = ("<p>Agreement of each ranking of the layers with the measured single-layer ranking (mean CC "
            "over the sweep's seeds): Spearman ρ, and whether the measured best layer is ranked first "
            "(top-1) or among the first two (top-2; ties count fractionally). Brackets: 2.5–97.5 % over "
            "a bootstrap of the seeds paired with step 1's bootstrap; with one seed the interval covers "
            "step 1's uncertainty only.</p>"
            + _table(["target", "ranking", "Spearman ρ [95%]", "top-1 hit [95%]", "top-2 hit [95%]",
                      "seeds"], rows))
    return {"steps": "".join(steps), "test": test}
