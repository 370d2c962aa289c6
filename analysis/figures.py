"""Figure helpers shared by :mod:`.plots` and :mod:`.framework_report` (matplotlib, Agg backend).

They lived as two copies (``plots`` imports ``framework_report``, so ``framework_report`` could not
import them from ``plots`` without a cycle); this module imports neither.
"""
from __future__ import annotations

from pathlib import Path


def plt():
    """``matplotlib.pyplot`` with the Agg backend selected (matplotlib stays a lazy import: importing
    the analysis modules must not load it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def save(fig, path: Path, dpi: int = 110) -> str:
    """Lay out ``fig``, write it to ``path`` (creating the folder) at ``dpi``, close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt().close(fig)
    return str(path)
