"""The study's checks on a finished `small` run (issue 19): opt-in, because the run takes ~15 minutes.

    make run && TURBTL_STUDY_DIR=runs/small .venv/bin/python -m pytest -m slow tests/test_study_small.py

`make test` runs every test (the Makefile does not deselect `slow`), so without TURBTL_STUDY_DIR
these tests skip; `turbtl report` (the last stage of `turbtl run`) prints the same checks as
PASS/FAIL lines. The high_re check is expected to fail on the current small regime (Re 600 -> 1200:
the target is too close to the base, docs/study-regime.md) and is marked xfail until the regime
is replaced.
"""
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUN = os.environ.get("TURBTL_STUDY_DIR")
need_run = pytest.mark.skipif(not RUN, reason="set TURBTL_STUDY_DIR to a finished `turbtl run --preset small` folder")


@pytest.fixture(scope="module")
def checks():
    from suite import stats
    from suite.transfer import load_results
    run = Path(RUN)
    targets = sorted(load_results(run)["target"].unique())
    return {name: (ok, line) for name, ok, line in stats.checks(run, targets)}


@need_run
def test_cnn_beats_smagorinsky_a_priori_on_base(checks):
    ok, line = checks["CNN beats Smagorinsky a priori on base"]
    assert ok, line


@need_run
@pytest.mark.parametrize("target", [
    pytest.param("high_re", marks=pytest.mark.xfail(
        reason="small regime: Re 600 -> 1200 is too close to the base for re-training to beat the base "
               "network by more than the intervals (issue 19; the regime is being replaced)", strict=False)),
    "beta20"])
def test_best_retrained_beats_the_base_network(checks, target):
    key = f"best re-trained beats base on {target}"
    if key not in checks:
        pytest.skip(f"target {target} not in this run")
    ok, line = checks[key]
    assert ok, line
