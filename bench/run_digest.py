"""Digests of a run folder's *numbers*: the invariance check of refactorings.

    python -m bench.run_digest runs/ci            # one line per output: sha256 of its values
    python -m bench.run_digest runs/ci --diff other.txt

A refactoring that must not change results runs ``turbtl run --preset ci`` before and after, on the
same machine, and compares the two listings. What is hashed (timings, dates, paths and provenance
differ between runs and are left out):

- every zarr store under the folder (``fdns/``, ``les/``, ``analysis/``): the bytes of each array
  (data variables and coordinates), in C order, with its dtype and shape;
- every ``model.pt``: each tensor of its ``state_dict`` (``torch.load``), and the normalization;
- every ``results.csv``: the columns that are results (not ``wall_time_s`` or other timings);
  the run folder's own path, where a table or JSON file names it, reads ``<run>``;
- every ``metrics.json`` / ``metrics.csv``: the numbers, timings and throughputs dropped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

TIMING_WORDS = ("wall", "time_s", "per_s", "seconds", "finished", "started", "elapsed", "provenance", "data_wait")


def _h(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:16]


def _array(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    if a.dtype.kind in "OUS":
        return _h(repr(a.tolist()).encode(), str(a.shape).encode())
    return _h(a.tobytes(), str(a.dtype).encode(), str(a.shape).encode())


def _is_timing(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in TIMING_WORDS)


def _strip(obj, run_dir: str = ""):
    """``obj`` without timings; the run folder's path in strings replaced by ``<run>``."""
    if isinstance(obj, dict):
        return {k: _strip(v, run_dir) for k, v in sorted(obj.items()) if not _is_timing(str(k))}
    if isinstance(obj, list):
        return [_strip(v, run_dir) for v in obj]
    if isinstance(obj, str) and run_dir:
        return obj.replace(run_dir, "<run>")
    return obj


def zarr_digests(path: Path) -> dict[str, str]:
    import xarray as xr
    ds = xr.open_zarr(str(path), consolidated=False)
    out = {}
    for name in sorted(list(ds.data_vars) + list(ds.coords)):
        if _is_timing(name):
            continue
        out[f"{name}"] = _array(ds[name].values)
    return out


def model_digests(path: Path) -> dict[str, str]:
    import torch
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    out = {}
    for k in sorted(state):
        v = state[k]
        out[k] = _array(v.numpy()) if hasattr(v, "numpy") else _h(json.dumps(_strip(v), sort_keys=True,
                                                                              default=str).encode())
    return out


def csv_digest(path: Path, run_dir: Path) -> str:
    import pandas as pd
    df = pd.read_csv(path)
    keep = [c for c in df.columns if not _is_timing(c)]
    text = df[keep].to_csv(index=False)
    for d in {str(run_dir), str(Path(run_dir).resolve())}:
        text = text.replace(d, "<run>")
    return _h(text.encode())


def json_digest(path: Path, run_dir: Path) -> str:
    doc = _strip(json.loads(path.read_text()), str(Path(run_dir).resolve()))
    return _h(json.dumps(_strip(doc, str(run_dir)), sort_keys=True, default=str).encode())


def digests(run_dir: Path) -> dict[str, str]:
    """``{relative name: digest}`` of every output of ``run_dir`` (see the module docstring)."""
    run_dir = Path(run_dir)
    out: dict[str, str] = {}
    for p in sorted(run_dir.rglob("*.zarr")):
        if ".ckpt" in p.parts[-2] or p.name.startswith("."):
            continue
        for k, v in zarr_digests(p).items():
            out[f"{p.relative_to(run_dir)}:{k}"] = v
    for p in sorted(run_dir.rglob("model.pt")):
        for k, v in model_digests(p).items():
            out[f"{p.relative_to(run_dir)}:{k}"] = v
    for p in sorted(run_dir.rglob("results.csv")) + sorted(run_dir.rglob("*metrics.csv")):
        out[str(p.relative_to(run_dir))] = csv_digest(p, run_dir)
    for p in sorted(run_dir.rglob("metrics.json")) + sorted(run_dir.glob("analysis/summary.json")):
        out[str(p.relative_to(run_dir))] = json_digest(p, run_dir)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--diff", type=Path, help="a listing written earlier: print what differs, exit 1 if any")
    a = ap.parse_args(argv)
    d = digests(a.run_dir)
    if a.diff is None:
        for k, v in d.items():
            print(f"{v}  {k}")
        return 0
    old = dict(line.split("  ", 1)[::-1] for line in a.diff.read_text().splitlines() if line.strip())
    bad = sorted(k for k in set(old) | set(d) if old.get(k) != d.get(k))
    for k in bad:
        print(f"differs: {k}: {old.get(k)} -> {d.get(k)}")
    print(f"{len(d)} outputs, {len(bad)} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
