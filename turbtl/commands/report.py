"""`turbtl report`: RUN/report.html, one self-contained page with every figure embedded."""
from __future__ import annotations

import time
from pathlib import Path

from suite import layout
from suite.errors import DataError

from .common import add_config_options, config_from_args


def run(args) -> int:
    from ..report import study_checks, write_report
    from suite.rundir import check_run_dir, is_busy, record_stage, run_lock

    # a given --config/--preset is validated even though the report needs only the run folder
    cfg = config_from_args(args) if (args.config or args.preset or args.run_dir is None) else None
    run_dir = check_run_dir(Path(args.run_dir) if args.run_dir else Path("runs") / cfg.preset, cfg, create=False)
    finished = any(p.name != "report.json" for p in layout.stages_dir(run_dir).glob("*.json"))
    if not finished and not is_busy(run_dir):  # a busy folder: the lock names its holder (exit 2)
        raise DataError(f"--run-dir {run_dir}: no stage has finished in this run folder, there is nothing to "
                        "report; run `turbtl dns` first (or `turbtl run` for every stage)", field="run-dir")
    t0 = time.perf_counter()
    with run_lock(run_dir, "report", cfg=cfg):
        out = write_report(run_dir)
        summary = f"report -> {out} ({out.stat().st_size / 1e6:.1f} MB)"
        record_stage(run_dir, "report", time.perf_counter() - t0, summary, fresh=True)
    print(summary)
    for name, ok, line in study_checks(run_dir):  # the study's checks, said plainly (a FAIL is not hidden)
        print(f"check {'PASS' if ok else 'FAIL'}: {name}: {line}")
    return 0


def register(sub):
    p = sub.add_parser("report", help="write RUN/report.html (self-contained, figures embedded)",
                       description="Summarise a run folder in one HTML page: systems, spectra, base "
                       "metrics vs physics closures, the CC of every transfer subset, filter classes, "
                       "most-changed kernels, the layer recommendation vs the measured best, online LES, "
                       "timings and provenance. Sections of stages that have not run say so.")
    add_config_options(p)
    p.set_defaults(func=run)
