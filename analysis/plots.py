"""PNG figures of the analysis (matplotlib, Agg) in ``DIR/figures/``.

Each ``plot_*`` function reads the stores of ``DIR/analysis`` (and the sweep's results table),
writes one PNG and returns its path; :func:`plot_all` writes every figure it has data for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from suite import layout

from .aggregate import open_result
from .classify import CLASSES
from .figures import plt as _plt
from .figures import save as _save
from .framework_report import plot_framework
from .results import load_sweep_results


def _results(run_dir, targets):
    return {t: r for t in targets if (r := load_sweep_results(run_dir, t)) is not None}


def plot_cc_layers(run_dir, targets, n_layers: int, out: Path) -> str | None:
    """CC of re-training each single layer, and the matrix of CC over pairs of layers, per target."""
    res = _results(run_dir, targets)
    if not res:
        return None
    plt = _plt()
    fig, axes = plt.subplots(2, len(res), figsize=(4 * len(res), 7), squeeze=False)
    for j, (t, df) in enumerate(res.items()):
        tl = df[df["kind"] == "tl"]
        single = tl[tl["n_layers_trained"] == 1].groupby("first_trainable")["cc"].mean()
        axes[0, j].bar(single.index, single.values, color="C0")
        axes[0, j].set(title=f"{t}: single layers", xlabel="re-trained layer", ylabel="CC")
        mat = np.full((n_layers, n_layers), np.nan)
        for mask, cc in tl.groupby("mask")["cc"].mean().items():
            on = [i for i, c in enumerate(str(mask)) if c == "1"]
            if len(on) == 2:
                mat[on[0], on[1]] = mat[on[1], on[0]] = cc
            elif len(on) == 1:
                mat[on[0], on[0]] = cc
        im = axes[1, j].imshow(mat, origin="lower", extent=(0.5, n_layers + 0.5, 0.5, n_layers + 0.5))
        fig.colorbar(im, ax=axes[1, j], label="CC")
        axes[1, j].set(title=f"{t}: pairs (diagonal: single)", xlabel="layer", ylabel="layer")
    return _save(fig, out / "cc_layers.png")


def plot_cc_by_first(run_dir, targets, n_layers: int, out: Path) -> str | None:
    """CC over all subsets, grouped by the first trainable layer."""
    res = _results(run_dir, targets)
    if not res:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(res), figsize=(4 * len(res), 3.5), squeeze=False)
    for j, (t, df) in enumerate(res.items()):
        tl = df[df["kind"] == "tl"]
        groups = [tl[tl["first_trainable"] == l]["cc"].values for l in range(1, n_layers + 1)]
        keep = [(l + 1, g) for l, g in enumerate(groups) if len(g)]
        axes[0, j].boxplot([g for _, g in keep], positions=[l for l, _ in keep])
        axes[0, j].set(title=t, xlabel="first trainable layer", ylabel="CC (all subsets)")
    return _save(fig, out / "cc_by_first_layer.png")


def plot_class_fractions(analysis_dir: Path, targets, out: Path) -> str:
    """Filter-class fractions per layer: base network and the mean over each target's TL networks."""
    plt = _plt()
    base = open_result(analysis_dir / "base.zarr")
    panels = [("base", base["class_frac"].values)]
    for t in targets:
        sw = open_result(analysis_dir / f"sweep_{t}.zarr")
        panels.append((f"TL {t}", sw["class_frac"].mean("net").values))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.5), squeeze=False)
    layers = base["layer"].values
    for ax, (name, frac) in zip(axes[0], panels):
        bottom = np.zeros(len(layers))
        for c, cname in enumerate(CLASSES):
            ax.bar(layers, frac[:, c], bottom=bottom, label=cname)
            bottom += frac[:, c]
        ax.set(title=name, xlabel="layer", ylabel="fraction of kernels", ylim=(0, 1))
    axes[0, -1].legend(fontsize=7, loc="lower right")
    return _save(fig, out / "class_fractions.png")


def plot_most_changed(analysis_dir: Path, out: Path) -> str:
    """Radial profiles of |Ŵ| before and after TL of the most-changed kernels of each target."""
    plt = _plt()
    mc = open_result(analysis_dir / "most_changed.zarr")
    T, R = mc.sizes["target"], mc.sizes["rank"]
    fig, axes = plt.subplots(T, R, figsize=(2.4 * R, 2.2 * T), squeeze=False)
    k = mc["k"].values
    for i, t in enumerate(mc["target"].values):
        for r in range(R):
            ax = axes[i, r]
            if np.isfinite(mc["before"].values[i, r]).any():
                ax.plot(k, mc["before"].values[i, r], label="base")
                ax.plot(k, mc["after"].values[i, r], label="TL")
                ax.set_title(f"{t} L{int(mc['layer'].values[i, r])} {mc['mask'].values[i, r]}", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    fig.supxlabel("k")
    fig.supylabel("shell mean |Ŵ|")
    return _save(fig, out / "most_changed_kernels.png")


def plot_activation_ratios(analysis_dir: Path, targets, out: Path) -> str:
    """Activation-spectrum ratio TL / base (post-ReLU, mean over networks) per layer and target."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.5), squeeze=False)
    for ax, t in zip(axes[0], targets):
        sw = open_result(analysis_dir / f"sweep_{t}.zarr")
        ratio = sw["act_ratio"].sel(stage="post").mean("net").values
        for li, l in enumerate(sw["layer"].values):
            ax.semilogy(sw["k"].values[1:], ratio[li, 1:], label=f"layer {l}")
        ax.set(title=t, xlabel="k", ylabel="E_TL / E_base (post-ReLU)")
        ax.legend(fontsize=6)
    return _save(fig, out / "activation_ratios.png")


def plot_data_spectra(analysis_dir: Path, out: Path) -> str:
    """Spectra of ψ̄, ω̄, Π of the base system and every target."""
    plt = _plt()
    ds = open_result(analysis_dir / "data_spectra.zarr")
    vars_ = ds["var"].values
    fig, axes = plt.subplots(1, len(vars_), figsize=(4 * len(vars_), 3.4), squeeze=False)
    k = ds["k"].values
    for ax, v in zip(axes[0], vars_):
        for s in ds["system"].values:
            ax.loglog(k[1:], ds["E"].sel(system=s, var=v).values[1:], label=str(s))
        for t in ds["target"].values:
            lo, hi, _ = ds["band"].sel(target=t, var=v).values
            ax.axvspan(max(lo, 0.8), hi + 0.5, alpha=0.08)
        ax.set(title=str(v), xlabel="k", ylabel="E(k)")
        ax.legend(fontsize=7)
    return _save(fig, out / "data_spectra.png")


def plot_all(run_dir, targets, n_layers: int) -> dict[str, str]:
    """Every figure; returns ``{name: path}`` of those written."""
    run_dir = Path(run_dir)
    a, out = layout.analysis_dir(run_dir), layout.figures_dir(run_dir)
    figs = {"cc_layers": plot_cc_layers(run_dir, targets, n_layers, out),
            "cc_by_first_layer": plot_cc_by_first(run_dir, targets, n_layers, out),
            "class_fractions": plot_class_fractions(a, targets, out),
            "most_changed_kernels": plot_most_changed(a, out),
            "activation_ratios": plot_activation_ratios(a, targets, out),
            "data_spectra": plot_data_spectra(a, out)}
    figs |= plot_framework(run_dir, targets)      # framework steps 1-3 per target
    return {k: v for k, v in figs.items() if v}


def _family(mask: str) -> str:
    L, k = len(mask), mask.count("1")
    if k == 1:
        return "single"
    if mask == "1" * k + "0" * (L - k):
        return "prefix"
    if mask == "0" * (L - k) + "1" * k:
        return "suffix"
    return "other"


def cc_gain_figure(tab):
    """CC gain over the base network (same target and fraction) against trainable parameters, from
    :func:`suite.stats.interval_table` rows of every target: singles, prefixes and suffixes marked,
    the random capacity-matched controls as crosses; bars are the subsets' 95 % intervals shifted
    by the base network's CC. Returns the figure (None without tl rows)."""
    tl = tab[tab["kind"].isin(["tl", "random"])]
    if not len(tl):
        return None
    plt = _plt()
    targets = sorted(tl["target"].unique())
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    style = {"single": ("o", "C0"), "prefix": ("^", "C1"), "suffix": ("v", "C2"), "other": (".", "0.6"),
             "random": ("x", "C3")}
    for ax, t in zip(axes[0], targets):
        seen = set()
        for fi, (f, g) in enumerate(tab[tab["target"] == t].groupby("fraction")):
            base = g[g["kind"] == "base"]
            if not len(base):
                continue
            b = float(base["cc"].iloc[0])
            for r in g[g["kind"].isin(["tl", "random"])].itertuples():
                fam = "random" if r.kind == "random" else _family(r.mask)
                m, c = style[fam]
                label = fam if fam not in seen else None
                seen.add(fam)
                x = r.n_trainable * (1 + 0.04 * fi)  # fractions side by side
                ax.errorbar(x, r.cc - b, yerr=[[r.cc - r.lo], [r.hi - r.cc]], fmt=m, color=c, ms=5,
                            alpha=0.5 + 0.5 * (fi == 0), label=label, capsize=2)
        ax.axhline(0, color="k", lw=0.8)
        fr = sorted(tab[(tab["target"] == t) & (tab["kind"] == "tl")]["fraction"].unique())
        title = f"{t}: fraction {fr[0]:g} solid" + (", larger ones faded" if len(fr) > 1 else "")
        ax.set(xscale="log", title=title, xlabel="trainable parameters",
               ylabel="CC gain over the base network")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
