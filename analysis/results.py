"""The sweep's measured results (CONTRACTS.md "Sweep results"), as the analysis reads them: through
``suite.transfer.load_results``, the one reader of ``DIR/sweep/<target>/results.csv`` (its columns
are ``suite.transfer.COLUMNS``)."""
from __future__ import annotations

from suite.errors import DataError
from suite.transfer import load_results


def load_sweep_results(run_dir, target: str):
    """``suite.transfer.load_results(run_dir, target)``; None when the sweep has no results for
    ``target`` (no table, or an empty one)."""
    try:
        df = load_results(run_dir, target=target)
    except DataError:
        return None
    return df if len(df) else None
