"""SIGKILL at seeded random points of the stages whose owners' tests do not kill them: the analysis
mid-aggregation (the whole process group: client, Dask scheduler and workers) and the report. The same
command run again finishes with outputs equal to an uninterrupted run's, and in between a reader never
takes partial results for results. (DNS, training and the sweep are killed in tests/test_dns.py,
tests/test_train_resume.py and tests/test_transfer.py.)
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reliability_common import BIN, ROOT, assert_same_zarr, ci_run, copy_run, env, turbtl

pytestmark = pytest.mark.slow
SEED = 13  # the kill points below are drawn from random.Random(SEED)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return ci_run(tmp_path_factory, upto="report")


def _start(*args) -> subprocess.Popen:
    """`turbtl ARGS` in its own process group (so that a kill reaches every process it started)."""
    return subprocess.Popen([str(BIN / "turbtl"), *map(str, args)], env=env(), cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _rows_done(run: Path, targets) -> tuple[int, int]:
    import zarr
    done = total = 0
    for t in targets:
        try:
            d = np.asarray(zarr.open_group(str(run / "analysis" / f"sweep_{t}.zarr"), mode="r")["done"][:])
        except Exception:  # noqa: BLE001 - not there yet
            return 0, -1
        done, total = done + int(d.sum()), total + d.size
    return done, total


def test_analysis_killed_mid_aggregation_resumes_to_the_uninterrupted_result(shared, tmp_path):
    from suite.config import load_config
    from suite.errors import DataError

    targets = list(load_config(preset="ci").transfer.targets)
    n_nets = sum(1 for t in targets for _ in (shared / "models" / "tl" / t).glob("f*/[01]*"))
    kill_after = random.Random(SEED).randint(1, n_nets - 1)
    run = copy_run(shared, tmp_path / "run", parts=("fdns", "models", "sweep", "stages"))
    (run / "stages" / "analyze.json").unlink()
    args = ("analyze", "--preset", "ci", "--run-dir", run)
    proc = _start(*args)
    done = 0
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            done, total = _rows_done(run, targets)
            if done >= kill_after:
                break
            time.sleep(0.01)
    finally:
        _kill(proc)
    done, total = _rows_done(run, targets)
    assert total == n_nets and 0 < done < total, f"the kill did not land mid-aggregation ({done} of {total})"

    # readers: the interrupted analysis is never reported as results
    from analysis import summary
    with pytest.raises(DataError, match="analysis|run `turbtl analyze`"):
        summary(run)
    turbtl("report", "--run-dir", run)
    page = (run / "report.html").read_text()
    assert "no analysis" in page and "run `turbtl analyze`" in page

    r = turbtl(*args)
    computed = int(re.search(r"analyze: (\d+) networks \((\d+) computed", r.stdout).group(2))
    assert computed == n_nets - done  # resumed: the finished networks were not redone
    for store in sorted((shared / "analysis").glob("*.zarr")):
        assert_same_zarr(run / "analysis" / store.name, store)
    assert not list((run / "analysis").glob(".*"))  # no temporary or old store left behind
    a, b = (json.loads((d / "analysis" / "summary.json").read_text()) for d in (run, shared))
    a.pop("provenance"), b.pop("provenance")
    assert json.dumps(a, sort_keys=True).replace(str(run), "RUN") == json.dumps(b, sort_keys=True).replace(str(shared), "RUN")


def _page(run: Path) -> str:
    """report.html without the report stage's own timing row (its wall time differs run to run)."""
    text = (run / "report.html").read_text()
    return re.sub(r"<tr><td>report</td>.*?</tr>", "", text).replace(str(run), "RUN")


def test_report_killed_at_random_points_never_leaves_a_partial_page(shared, tmp_path):
    parts = ("fdns", "models", "sweep", "stages", "analysis", "figures", "les")
    ref = copy_run(shared, tmp_path / "a" / "run", parts=parts)  # same name: the page shows it
    run = copy_run(shared, tmp_path / "b" / "run", parts=parts)
    turbtl("report", "--run-dir", ref)
    rng = random.Random(SEED)
    previous, landed = None, 0
    for _ in range(3):
        proc = _start("report", "--run-dir", run)
        time.sleep(rng.uniform(0.5, 4.0))
        landed += proc.poll() is None
        _kill(proc)
        page = run / "report.html"
        if page.exists():  # the reader sees the old page or the whole new one, never a part
            text = page.read_text()
            assert text.endswith("</html>") and (previous is None or _page(run) == previous or
                                                 _page(run) == _page(ref))
            previous = _page(run)
    assert landed >= 1, "no kill landed while the report was being written"
    turbtl("report", "--run-dir", run)
    assert _page(run) == _page(ref)
