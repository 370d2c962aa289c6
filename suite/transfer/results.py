"""The sweep's results table (CONTRACTS.md "Sweep results"): rebuilt from the row files of the
finished jobs, read back, and summarized."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import pandas as pd

from solver.atomic import write_bytes_atomic

from .. import layout
from ..errors import DataError

COLUMNS = ("target", "fraction", "seed", "mask", "kind", "cc", "cc_backscatter", "cc_diffusion", "rel_l2",
           "epochs", "wall_time_s", "n_trainable", "first_trainable", "n_layers_trained",
           "final_train_loss", "final_val_loss", "steps", "best_step")
KINDS = ("base", "oracle", "scratch", "tl", "random")
OPTIONAL = ("steps", "best_step")
"""Columns older row files (and synthetic tables) may lack: read as empty."""


@contextlib.contextmanager
def _results_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".results.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def collect_rows(run_dir, target: str) -> pd.DataFrame:
    """Every finished row of a target, from its row files, in canonical order (a DataFrame)."""
    rows = []
    for p in sorted(layout.sweep_rows_dir(run_dir, target).glob("*/*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8 text
            raise DataError(f"row file {p} is unreadable ({type(e).__name__}: {e}); delete it to redo that "
                            "subset", field="results") from None
        missing = sorted(set(COLUMNS) - set(row) - set(OPTIONAL)) if isinstance(row, dict) else list(COLUMNS)
        if missing:
            raise DataError(f"row file {p} is not a sweep row (missing {', '.join(missing)}); delete it to "
                            "redo that subset", field="results")
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return sort_table(df)


def sort_table(df: pd.DataFrame) -> pd.DataFrame:
    if not len(df):
        return df.reset_index(drop=True)
    key = df["kind"].map({k: i for i, k in enumerate(KINDS)})
    df = df.assign(_k=key).sort_values(["target", "fraction", "seed", "_k", "first_trainable", "mask"],
                                       ascending=[True, True, True, True, True, False], kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)


def write_results(run_dir, target: str) -> Path | None:
    """Rebuild ``DIR/sweep/<target>/results.csv`` from the row files (serialized by a file lock, so the
    last slice to finish writes the complete table). None if the target has no rows yet."""
    folder = layout.sweep_dir(run_dir, target)
    if not layout.sweep_rows_dir(run_dir, target).is_dir():
        return None
    path = layout.sweep_results(run_dir, target)
    with _results_lock(folder):
        df = collect_rows(run_dir, target)
        write_bytes_atomic(path, df.to_csv(index=False).encode())
    return path


def load_results(run_dir, target: str | None = None) -> pd.DataFrame:
    """The sweep results table (CONTRACTS.md): one target's ``results.csv``, or every target's
    concatenated (``target=None``). DataError when there is none."""
    root = layout.sweep_root(run_dir)
    targets = ([target] if target is not None else
               sorted(p.name for p in root.glob("*") if layout.sweep_results(run_dir, p.name).is_file()))
    frames = []
    for t in targets:
        path = layout.sweep_results(run_dir, t)
        if not path.is_file():
            raise DataError(f"{path} not found: run `turbtl transfer` first (target {t!r})", field="results")
        try:
            df = pd.read_csv(path, dtype={"mask": str, "target": str, "kind": str})
        except (ValueError, pd.errors.ParserError) as e:  # incl. EmptyDataError, not UTF-8
            raise DataError(f"{path} is unreadable ({type(e).__name__}: {e}); run `turbtl transfer` again "
                            "to rebuild it from the row files", field="results") from None
        missing = sorted(set(COLUMNS) - set(df.columns) - set(OPTIONAL))
        for c in OPTIONAL:
            if c not in df.columns:
                df[c] = float("nan")
        if missing:
            raise DataError(f"{path}: columns {missing} are missing (expected {', '.join(COLUMNS)})", field="results")
        frames.append(df[list(COLUMNS)])
    if not frames:
        raise DataError(f"no sweep results under {root}: run `turbtl transfer` first", field="results")
    return sort_table(pd.concat(frames, ignore_index=True))


def summary(df: pd.DataFrame, top: int = 5) -> str:
    """Ranked summary: per target × fraction (seeds averaged), the top subsets by CC, the
    references, and the best subset per number of re-trained layers."""
    if not len(df):
        return "no results"
    lines = []
    g = df.groupby(["target", "fraction", "kind", "mask"], as_index=False).agg(
        cc=("cc", "mean"), cc_backscatter=("cc_backscatter", "mean"), cc_diffusion=("cc_diffusion", "mean"),
        n_layers_trained=("n_layers_trained", "first"), seeds=("seed", "nunique"))

    def fmt(r, label):
        return (f"  {label:<10} {r['mask']}  CC {r['cc']:.4f}  backscatter {r['cc_backscatter']:.4f}  "
                f"diffusion {r['cc_diffusion']:.4f}")

    for (t, f), sub in g.groupby(["target", "fraction"]):
        tl = sub[sub.kind == "tl"].sort_values(["cc", "mask"], ascending=[False, False])
        if not len(tl) and (sub.kind == "oracle").all():
            continue  # the oracle's group (fraction 1): listed with every fraction of its target
        nseeds = int(sub["seeds"].max())
        lines.append(f"{t}, fraction {f:g} ({len(tl)} subsets, mean over {nseeds} seed(s)):")
        for rank, (_, r) in enumerate(tl.head(top).iterrows(), 1):
            lines.append(fmt(r, f"#{rank}"))
        refs = pd.concat([sub[sub.kind.isin(["base", "scratch", "random"])], g[(g.target == t) & (g.kind == "oracle")]])
        for _, r in refs.iterrows():
            lines.append(fmt(r, r["kind"]))
        kinds = refs.groupby("kind")["cc"].mean()
        if {"oracle", "base"} <= set(kinds.index):
            lines.append(f"  oracle - base gap {kinds['oracle'] - kinds['base']:.4f} (intervals: the report)")
        if len(tl):
            lines.append("  best per number of re-trained layers:")
            for n, gg in tl.groupby("n_layers_trained"):
                lines.append(fmt(gg.iloc[0], f"{int(n)} layer{'s' if n > 1 else ''}"))
    return "\n".join(lines)
