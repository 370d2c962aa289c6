"""The study's checks on a finished `small` (or `medium`) run (issue 19): opt-in, because the run takes
minutes (`small`) to under an hour (`medium`).

    make run && TURBTL_STUDY_DIR=runs/small .venv/bin/python -m pytest -m slow tests/test_study_small.py
    make run PRESET=medium && TURBTL_STUDY_DIR=runs/medium .venv/bin/python -m pytest -m slow tests/test_study_small.py

`make test` runs every test (the Makefile does not deselect `slow`), so without TURBTL_STUDY_DIR
these tests skip; `turbtl report` (the last stage of `turbtl run`) prints the same checks as
PASS/FAIL lines: the CNN beats Smagorinsky a priori on base; on every target of the regime
(docs/study-regime.md) the base network is at least ``suite.stats.ORACLE_MARGIN`` below the oracle;
the best re-trained network beats the base network on every target.
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


TARGETS = ["re6000", "kf12", "beta40", "decaying"]   # a target not in the run skips


def _check(checks, key):
    if key not in checks:
        pytest.skip(f"{key!r}: not in this run")
    ok, line = checks[key]
    assert ok, line


@need_run
@pytest.mark.parametrize("target", TARGETS)
def test_base_network_is_below_the_oracle_by_the_margin(checks, target):
    from suite.stats import ORACLE_MARGIN
    _check(checks, f"base network below the oracle on {target} by >= {ORACLE_MARGIN:g}")


@need_run
@pytest.mark.parametrize("target", TARGETS)
def test_best_retrained_beats_the_base_network(checks, target):
    _check(checks, f"best re-trained beats base on {target}")
