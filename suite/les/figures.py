"""The LES figures (spectra and vorticity PDF per closure against the FDNS) and the text table."""
from __future__ import annotations

from pathlib import Path

TABLE_COLUMNS = ("closure", "stable_members", "t_blowup_min", "e_spec_low", "e_spec_mid", "e_spec_high",
                 "pdf_w1", "energy_err", "backscatter", "skill_e_spec_all", "skill_pdf_w1", "steps_per_s")


def figures(ds, folder: Path, system: str) -> list[Path]:
    """``les_<system>_spectra.png`` (E(k), Z(k) per closure vs FDNS) and ``les_<system>_pdf.png``."""
    # lazy, as in analysis/plots.py and turbtl/report.py: pyplot is slow to import, and selecting
    # the Agg backend must happen when figures are drawn, not when suite.les is imported
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    k = ds["k"].values
    kc = (int(ds.sizes["x"]) - 1) // 3
    sel = (k >= 1) & (k <= kc)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, var, lab in ((axes[0], "spectrum_energy", "E(k)"), (axes[1], "spectrum_enstrophy", "Z(k)")):
        ax.loglog(k[sel], ds[f"fdns_{var}"].values[sel], "k-", lw=2.5, label="FDNS")
        for c in ds["closure"].values:
            ax.loglog(k[sel], ds[var].sel(closure=c).values[sel], "-", lw=1.2, label=str(c))
        ax.set_xlabel("k")
        ax.set_ylabel(lab)
        ax.set_title(f"{system}: {lab}, LES vs FDNS")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    p1 = folder / f"les_{system}_spectra.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    b = ds["omega_bin"].values
    ax.semilogy(b, ds["fdns_pdf"].values, "k-", lw=2.5, label="FDNS")
    for c in ds["closure"].values:
        ax.semilogy(b, ds["pdf"].sel(closure=c).values, "-", lw=1.2, label=str(c))
    ax.set_xlabel("vorticity")
    ax.set_ylabel("PDF")
    ax.set_title(f"{system}: vorticity PDF")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = folder / f"les_{system}_pdf.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return [p1, p2]


def format_table(rows: list[dict]) -> str:
    """The metrics as a fixed-width text table (a subset of the CSV's columns)."""
    head = " ".join(f"{c:>16}" for c in TABLE_COLUMNS)
    lines = [head]
    for r in rows:
        cells = []
        for c in TABLE_COLUMNS:
            v = r[c]
            cells.append(f"{v:>16}" if isinstance(v, (str, int)) else f"{v:>16.4g}")
        lines.append(" ".join(cells))
    return "\n".join(lines)
