"""The sweep's measured results (CONTRACTS.md "Sweep results"), as the analysis reads them."""
from __future__ import annotations

from suite import layout

COLUMNS = ("target", "fraction", "seed", "mask", "kind", "cc", "cc_backscatter", "cc_diffusion", "rel_l2",
           "epochs", "wall_time_s", "n_trainable", "first_trainable", "n_layers_trained",
           "final_train_loss", "final_val_loss")


def load_sweep_results(run_dir, target: str):
    """``suite.transfer.load_results(run_dir, target)``, or ``DIR/sweep/<target>/results.csv`` read
    directly while suite.transfer is absent; None when the sweep has no results for ``target``."""
    import pandas as pd
    from suite.errors import DataError

    try:
        from suite.transfer import load_results
    except ImportError:
        load_results = None
    if load_results is not None:
        try:
            df = load_results(run_dir, target=target)
        except DataError:
            return None
        return df if len(df) else None
    path = layout.sweep_results(run_dir, target)
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"mask": str})
    missing = sorted(set(COLUMNS) - set(df.columns))
    if missing:
        raise DataError(f"{path}: columns {missing} are missing (expected {', '.join(COLUMNS)})", field="results")
    return df
