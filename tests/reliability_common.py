"""Helpers of the reliability tests (tests/test_reliability*.py): the real `turbtl` in a subprocess,
one shared ci run folder per session, snapshots of a folder tree, and store comparisons."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCK = ".turbtl.lock"  # the run folder's lock file: created (empty) by any command that got that far


def env(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), MPLBACKEND="Agg", **extra)


def turbtl(*args, timeout: float = 300, check: bool = True, np_: int = 1, preexec_fn=None):
    """Run ``turbtl ARGS`` (under ``mpiexec -n np_`` when np_ > 1); returns the CompletedProcess."""
    cmd = [str(BIN / "turbtl"), *map(str, args)]
    if np_ > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(np_)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT,
                       preexec_fn=preexec_fn)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def popen(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "turbtl"), *map(str, args)], env=env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def snapshot(folder: Path) -> dict | None:
    """{relative path: (size, mtime_ns)} of every file and folder under ``folder`` (None if absent),
    the lock file excepted."""
    folder = Path(folder)
    if not folder.exists():
        return None
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.name == LOCK:
            continue
        st = p.stat()
        out[str(p.relative_to(folder))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------------------------
# the shared ci run folder


_RUN: dict[str, Path] = {}
STAGE_ORDER = ("dns", "train", "transfer", "analyze", "les", "report")


def ci_run(tmp_path_factory, upto: str = "transfer") -> Path:
    """One ci run folder per test session, built stage by stage up to ``upto`` (later calls add the
    missing stages). Tests copy what they damage; they never change this folder."""
    if "dir" not in _RUN:
        _RUN["dir"] = tmp_path_factory.mktemp("reliability") / "ci"
    run = _RUN["dir"]
    for stage in STAGE_ORDER[:STAGE_ORDER.index(upto) + 1]:
        if not (run / "stages" / f"{stage}.json").is_file():
            extra = ["--no-progress"] if stage in ("dns", "les") else (["--quiet"] if stage == "transfer" else [])
            turbtl(stage, "--preset", "ci", "--run-dir", run, *extra, timeout=600)
    return run


def copy_run(src: Path, dst: Path, parts=("fdns", "models", "sweep", "stages")) -> Path:
    """Copy some top-level parts of a run folder (to damage them without touching the original)."""
    dst.mkdir(parents=True, exist_ok=True)
    for part in parts:
        s = Path(src) / part
        if s.is_dir():
            shutil.copytree(s, dst / part, symlinks=True)
        elif s.is_file():
            shutil.copy2(s, dst / part)
    return dst


def write_config(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# comparisons


def assert_same_zarr(a: Path, b: Path, skip_attrs=("provenance",)) -> None:
    """Every array (data and coordinates) of two zarr stores equal bit for bit (NaN == NaN), and the
    attributes equal except ``skip_attrs``."""
    import zarr
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    ka, kb = sorted(ga.array_keys()), sorted(gb.array_keys())
    assert ka == kb, f"{a} and {b} hold different arrays: {ka} vs {kb}"
    for k in ka:
        x, y = np.asarray(ga[k][...]), np.asarray(gb[k][...])
        assert x.shape == y.shape and x.dtype == y.dtype, f"{a}/{k}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}"
        same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc" else np.array_equal(x, y)
        assert same, f"{k} differs between {a} and {b}"
    aa = {k: v for k, v in ga.attrs.items() if k not in skip_attrs}
    ab = {k: v for k, v in gb.attrs.items() if k not in skip_attrs}
    assert json.dumps(aa, sort_keys=True, default=str) == json.dumps(ab, sort_keys=True, default=str)


def one_error_line(stderr: str) -> str:
    """The stage's error output must be one line, no traceback; returns it."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    errs = [ln for ln in lines if "error:" in ln]
    assert len(errs) == 1, stderr
    return errs[0]
