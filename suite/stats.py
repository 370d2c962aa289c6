"""Confidence intervals of the sweep's correlation coefficients, and the study's findings.

Every network of the sweep is evaluated on the same test snapshots; its row file stores the CC of
each snapshot (``cc_snapshots``). For one (target, fraction, kind, mask) the values form a matrix
``(seeds, snapshots)``. Its estimate is the mean over both; the 95 % interval is a two-level
percentile bootstrap: seeds drawn with replacement, and (independently) snapshots drawn with
replacement, the same snapshot draw for every seed (the snapshots are shared, so they are
correlated across seeds). A paired difference (two networks on the same seeds and snapshots) uses
the same draws for both: it is significant when its interval excludes 0.

The estimate is the mean of per-snapshot CCs; the ``cc`` column of results.csv is the CC of all
test snapshots pooled. The two differ slightly; the study's tables and findings use the former
with its interval.

    >>> import numpy as np
    >>> est, lo, hi = bootstrap(np.full((3, 10), 0.5))
    >>> (est, lo, hi)
    (0.5, 0.5, 0.5)
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from solver import closures

from . import layout
from .dataset import FDNSData
from .metrics import cc
from .model import load_model
from .train import predict

N_BOOT = 2000
LEVEL = 0.95


def _draws(n_seeds: int, n_snap: int, n_boot: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_seeds, (n_boot, n_seeds)), rng.integers(0, n_snap, (n_boot, n_snap))


def _resampled_means(x: np.ndarray, si, ti) -> np.ndarray:
    # mean over the drawn seeds and the drawn snapshots, per bootstrap replicate
    return np.array([x[s][:, t].mean() for s, t in zip(si, ti)])


def bootstrap(values, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper): the two-level percentile bootstrap of a ``(seeds, snapshots)`` matrix
    (a 1-D array is one seed)."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    si, ti = _draws(*x.shape, n_boot, seed)
    m = _resampled_means(x, si, ti)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(m, a)), float(np.quantile(m, 1 - a))


def paired(a, b, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper) of ``a - b`` for two matrices on the same seeds and snapshots (the same
    draws for both: the pairing)."""
    return bootstrap(np.atleast_2d(np.asarray(a, float)) - np.atleast_2d(np.asarray(b, float)), n_boot, level, seed)


def significant(interval: tuple[float, float, float]) -> bool:
    """True when the interval of a difference excludes 0."""
    return interval[1] > 0 or interval[2] < 0


# --------------------------------------------------------------------------------------------
# the sweep's per-snapshot CCs


def samples(run_dir, target: str) -> dict:
    """``(fraction, kind, mask)`` → ``{"cc": (seeds, snapshots) array, "seeds": [...],
    "n_trainable": int, "steps": [...], "best_step": [...]}`` from the target's row files (rows
    without ``cc_snapshots``, written before they were stored, are left out)."""
    out: dict = {}
    for p in sorted(layout.sweep_rows_dir(run_dir, target).glob("*/*.json")):
        row = json.loads(p.read_text())
        if "cc_snapshots" not in row:
            continue
        key = (float(row["fraction"]), row["kind"], row["mask"])
        e = out.setdefault(key, {"rows": [], "n_trainable": int(row["n_trainable"])})
        e["rows"].append(row)
    for e in out.values():
        rows = sorted(e.pop("rows"), key=lambda r: r["seed"])
        e["seeds"] = [r["seed"] for r in rows]
        e["cc"] = np.array([r["cc_snapshots"] for r in rows], dtype=float)
        e["steps"] = [r.get("steps") for r in rows]
        e["best_step"] = [r.get("best_step") for r in rows]
    return out


def interval_table(run_dir, target: str) -> pd.DataFrame:
    """One row per (fraction, kind, mask): CC mean with its 95 % interval, seeds, trainable
    parameters, steps (mean) and best step (mean)."""
    rows = []
    for (f, kind, mask), e in samples(run_dir, target).items():
        est, lo, hi = bootstrap(e["cc"])
        rows.append({"target": target, "fraction": f, "kind": kind, "mask": mask, "cc": est, "lo": lo, "hi": hi,
                     "seeds": len(e["seeds"]), "n_trainable": e["n_trainable"],
                     "steps": _mean(e["steps"]), "best_step": _mean(e["best_step"])})
    cols = ["target", "fraction", "kind", "mask", "cc", "lo", "hi", "seeds", "n_trainable", "steps", "best_step"]
    return pd.DataFrame(rows, columns=cols)


def _mean(v) -> float:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else float("nan")


def _common(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray]:
    """The two matrices restricted to their common seeds (the oracle and base have every seed)."""
    seeds = [s for s in a["seeds"] if s in b["seeds"]]
    ia = [a["seeds"].index(s) for s in seeds]
    ib = [b["seeds"].index(s) for s in seeds]
    return a["cc"][ia], b["cc"][ib]


def pairwise(run_dir, target: str, fraction: float, kind: str = "tl", masks=None) -> pd.DataFrame:
    """Paired bootstrap differences CC(a) − CC(b) between the masks of one fraction (default:
    the single layers), with their intervals and whether they are significant."""
    s = samples(run_dir, target)
    keys = sorted(m for (f, k, m) in s if f == fraction and k == kind and (masks is None or m in masks))
    if masks is None:
        keys = [m for m in keys if m.count("1") == 1]
    keys.sort(key=lambda m: m.index("1"))
    rows = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            d = paired(*_common(s[(fraction, kind, a)], s[(fraction, kind, b)]))
            rows.append({"a": a, "b": b, "diff": d[0], "lo": d[1], "hi": d[2], "significant": significant(d)})
    return pd.DataFrame(rows, columns=["a", "b", "diff", "lo", "hi", "significant"])


def gain(run_dir, target: str, fraction: float, kind: str, mask: str, ref_kind: str = "base",
         ref_mask: str | None = None) -> tuple:
    """Paired interval of CC(kind, mask) − CC(reference) at ``fraction`` (the reference: the base
    network, scratch, a subset (``ref_kind="tl"``, ``ref_mask``) or the oracle, whose fraction is 1)."""
    s = samples(run_dir, target)
    ref = next((e for (f, k, m), e in s.items() if k == ref_kind and (ref_mask is None or m == ref_mask)
                and (f == fraction or k == "oracle")), None)
    me = next((e for (f, k, m), e in s.items() if k == kind and m == mask and (f == fraction or k == "oracle")), None)
    if ref is None or me is None:
        return (float("nan"),) * 3
    return paired(*_common(me, ref))


def cnn_vs_smagorinsky(run_dir) -> dict:
    """A priori on the base system's test split: per-snapshot CC of the base network and of
    Smagorinsky (its coefficient from the run's configuration), each with its interval over the
    snapshots, and their paired difference."""
    model, norm, meta = load_model(layout.base_model_dir(run_dir))
    cfg = json.loads((layout.base_model_dir(run_dir) / "config.json").read_text())
    data = FDNSData(layout.fdns_store(run_dir, cfg["train"]["system"]))
    test = data.tensors("test", norm)
    raw = data.read(test.index)
    pred = predict(model, test)
    smag = closures.predict("smag", raw["psi"], raw["omega"], data.L, data.delta, cs=cfg["les"]["cs"],
                            cl=cfg["les"]["cl"])
    true = raw["pi"]
    a = np.array([cc(pred[i], true[i]) for i in range(len(true))])
    b = np.array([cc(smag[i], true[i]) for i in range(len(true))])
    return {"cnn": bootstrap(a), "smag": bootstrap(b), "diff": paired(a, b), "snapshots": len(true)}


# --------------------------------------------------------------------------------------------
# the study's findings


def target_findings(run_dir, target: str) -> list[dict]:
    """Per data fraction of one target: the base network, the oracle gap, the best single layer
    and the best subset (each with its gain over the base network), the single layers' significant
    pairwise differences, the random controls against their subsets, scratch against the best
    subset (equal steps). Every number is (estimate, lower, upper)."""
    tab = interval_table(run_dir, target)
    out = []
    oracle = tab[tab.kind == "oracle"]
    for f in sorted(tab[tab.kind == "tl"]["fraction"].unique()):
        g = tab[tab.fraction == f]
        tl = g[g.kind == "tl"].sort_values("cc", ascending=False)
        singles = tl[tl["mask"].str.count("1") == 1]
        base = g[g.kind == "base"]
        r = {"target": target, "fraction": float(f), "n_subsets": len(tl), "seeds": int(tl["seeds"].max())}
        if len(base):
            b = base.iloc[0]
            r["base"] = (b.cc, b.lo, b.hi)
        if len(oracle) and len(base):
            o = oracle.iloc[0]
            r["oracle"] = (o.cc, o.lo, o.hi)
            r["oracle_gap"] = gain(run_dir, target, f, "oracle", o["mask"], "base")
        for name, sub in (("best_single", singles), ("best_subset", tl)):
            if len(sub):
                m = sub.iloc[0]
                r[name] = {"mask": m["mask"], "cc": (m.cc, m.lo, m.hi), "n_trainable": int(m.n_trainable),
                           "gain": gain(run_dir, target, f, "tl", m["mask"], "base")}
        pw = pairwise(run_dir, target, f)
        r["singles_significant"] = [(p.a, p.b, (p.diff, p.lo, p.hi)) for p in pw.itertuples() if p.significant]
        r["singles_pairs"] = len(pw)
        r["random"] = []
        for m in g[g.kind == "random"].itertuples():
            r["random"].append({"mask": m.mask, "n_trainable": int(m.n_trainable), "cc": (m.cc, m.lo, m.hi),
                                "subset_minus_random": gain(run_dir, target, f, "tl", m.mask, "random", m.mask)})
        sc = g[g.kind == "scratch"]
        if len(sc) and len(tl):
            r["scratch"] = (sc.iloc[0].cc, sc.iloc[0].lo, sc.iloc[0].hi)
            r["best_minus_scratch"] = gain(run_dir, target, f, "tl", tl.iloc[0]["mask"], "scratch")
            r["steps"] = float(tl["steps"].mean())
        out.append(r)
    return out


#: The regime criterion of the study (docs/science.md §5): on every transfer target the base network,
#: unretrained, falls at least this far (in CC) below the oracle trained on plenty of target data.
ORACLE_MARGIN = 0.1


def checks(run_dir, targets) -> list[tuple[str, bool, str]]:
    """The study's pass/fail checks: (name, passed, one line with the numbers).

    1. The base network beats Smagorinsky a priori on the base system: the paired interval of
       CC(CNN) − CC(Smagorinsky) lies above 0.
    2. Per target: the best re-trained network beats the base network: the paired interval of
       CC(best subset) − CC(base) lies above 0 (at the data fraction where it is largest).
    3. Per target with an oracle: the regime criterion (docs/science.md §5): the unretrained base
       network falls at least :data:`ORACLE_MARGIN` below the oracle, CC(oracle) − CC(base) ≥ the
       margin, with the paired interval above 0.
    """
    out = []
    try:
        c = cnn_vs_smagorinsky(run_dir)
        d = c["diff"]
        out.append(("CNN beats Smagorinsky a priori on base", d[1] > 0,
                    f"CC {fmt(c['cnn'])} vs {fmt(c['smag'])}; difference {fmt(d)}"))
    except (OSError, KeyError, ValueError) as e:
        out.append(("CNN beats Smagorinsky a priori on base", False, f"not measurable: {e}"))
    for t in targets:
        found = target_findings(run_dir, t)
        gaps = [r for r in found if "oracle_gap" in r]
        if gaps:
            g = gaps[0]["oracle_gap"]
            out.append((f"base network below the oracle on {t} by >= {ORACLE_MARGIN:g}",
                        bool(g[0] >= ORACLE_MARGIN and g[1] > 0),
                        f"oracle {fmt(gaps[0]['oracle'])} vs base {fmt(gaps[0]['base'])}; gap {fmt(g)}"))
        rows = [r for r in found if "best_subset" in r and "base" in r]
        if not rows:
            out.append((f"best re-trained beats base on {t}", False, "no sweep rows with per-snapshot CCs"))
            continue
        r = max(rows, key=lambda r: r["best_subset"]["gain"][1])
        g = r["best_subset"]["gain"]
        out.append((f"best re-trained beats base on {t}", g[1] > 0,
                    f"fraction {r['fraction']:g}: {r['best_subset']['mask']} CC {fmt(r['best_subset']['cc'])} "
                    f"vs base {fmt(r['base'])}; gain {fmt(g)}"))
    return out


def fmt(v, digits: int = 3) -> str:
    """``est [lo, hi]``."""
    est, lo, hi = v
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
