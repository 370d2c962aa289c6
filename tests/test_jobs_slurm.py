"""`turbtl jobs` against a real single-node SLURM cluster (started once for the session by the
``slurm_cluster`` fixture; skipped without root or the SLURM packages).

- every rendered script is accepted by ``sbatch --test-only``;
- a failing stage is detected from its exit file, its dependents are reported as never able to
  start, and a second submission is refused while they are queued;
- the ``ci`` preset's whole pipeline, submitted as chained jobs, with one transfer array task made
  to fail on purpose: the failure is detected, that task alone is resubmitted, the pipeline
  completes, and its outputs equal those of running the stages directly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (session fixture)

from jobs import slurm
from jobs.profiles import PROFILE_DIR, STAGES
from jobs.render import PIPELINE
from jobs.submit import states

pytestmark = pytest.mark.slurm
VENV_BIN = Path(sys.executable).parent


def turbtl(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_every_rendered_script_passes_test_only(slurm_cluster, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    assert turbtl("jobs", "render", "--preset", "ci", "--profile", "local", "--run-dir", str(run)).returncode == 0
    for stage in STAGES:
        script = run / "jobs" / f"{stage}.sbatch"
        assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
        answer = slurm.sbatch_test_only(str(script))
        assert "to start at" in answer and "localhost" in answer, (stage, answer)
    assert not slurm.queue()  # --test-only submitted nothing


def test_failed_stage_is_detected_and_dependents_blocked(slurm_cluster, tmp_path):  # noqa: F811
    cfg = tmp_path / "c.toml"
    cfg.write_text('extends = "ci"\n')
    run = tmp_path / "run"
    assert turbtl("jobs", "render", "--config", str(cfg), "--run-dir", str(run)).returncode == 0
    (run / "jobs" / "config.toml").write_text("[grid]\nn_dns = -3\n")  # every stage now exits 2
    r = turbtl("jobs", "submit", "--run-dir", str(run), "--stages", "dns,train,report")
    assert r.returncode == 0, r.stderr
    sub = json.loads((run / "jobs" / "submitted.json").read_text())
    ids = {j["stage"]: j["job_id"] for j in sub["jobs"]}
    assert [j["dependency"] for j in sub["jobs"]] == ["", f"afterok:{ids['dns']}", f"afterok:{ids['train']}"]
    try:
        r = turbtl("jobs", "status", "--run-dir", str(run), "--wait", "--timeout", "120", "--json", timeout=180)
        assert r.returncode == 1, r.stdout + r.stderr
        rows = {row["stage"]: row for row in json.loads(r.stdout)}
        assert rows["dns"]["state"] == "FAILED" and rows["dns"]["exit_code"] == 2
        assert rows["dns"]["source"] in ("exit-file", "sacct")
        for s in ("train", "report"):
            assert rows[s]["state"] == "PENDING" and "DependencyNeverSatisfied" in rows[s]["reason"]
        r = turbtl("jobs", "submit", "--run-dir", str(run))
        assert r.returncode == 2 and "still queued" in r.stderr
    finally:
        slurm.scancel(*ids.values())


# ------------------------------------------------------------------------------------------------
# the whole ci pipeline


def _missing_stages() -> list[str]:
    from turbtl.cli import build_parser
    have = set(build_parser()._subparsers._group_actions[0].choices)
    return [s for s in PIPELINE if s not in have]


def _run_direct(run: Path) -> None:
    """The ci study by running each stage's command directly, on as many processes as the jobs use."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cli = [str(VENV_BIN / "python"), "-m", "turbtl.cli"]
    common = ["--preset", "ci", "--run-dir", str(run)]
    steps = [[str(VENV_BIN / "mpiexec"), "-n", "2", *cli, "dns", *common],
             [*cli, "train", *common, "--nproc", "2"],
             [*cli, "transfer", *common],
             [*cli, "analyze", *common],
             [*cli, "report", *common]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


_SKIP_PARTS = {"jobs", "logs", "checkpoints"}


def _compare_runs(direct: Path, slurmed: Path) -> int:
    """Every artefact of the direct run exists in the SLURM run with the same numbers (timings,
    provenance and other JSON metadata excepted). Returns the number of artefacts compared."""
    import pandas as pd
    import torch
    import xarray as xr

    n = 0
    for path in sorted(direct.rglob("*")):
        rel = path.relative_to(direct)
        inside_store = any(p.endswith(".zarr") for p in rel.parts[:-1])
        plain_dir = path.is_dir() and not path.name.endswith(".zarr")
        if set(rel.parts) & _SKIP_PARTS or inside_store or plain_dir or path.name.startswith("."):
            continue
        other = slurmed / rel
        assert other.exists(), f"{rel} missing from the SLURM run"
        if path.name.endswith(".zarr"):
            a, b = xr.open_zarr(path), xr.open_zarr(other)
            assert set(a.data_vars) == set(b.data_vars), rel
            for v in a.data_vars:
                if np.issubdtype(a[v].dtype, np.number):
                    np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-6, atol=1e-9, err_msg=f"{rel}:{v}")
                else:
                    assert (a[v].values == b[v].values).all(), f"{rel}:{v}"
        elif path.suffix == ".pt":
            sa = torch.load(path, map_location="cpu", weights_only=False)
            sb = torch.load(other, map_location="cpu", weights_only=False)
            sa, sb = sa.get("state_dict", sa), sb.get("state_dict", sb)
            for k, t in sa.items():
                if torch.is_tensor(t):
                    np.testing.assert_allclose(t.numpy(), sb[k].numpy(), rtol=1e-5, atol=1e-7, err_msg=f"{rel}:{k}")
        elif path.suffix == ".csv":
            a, b = pd.read_csv(path), pd.read_csv(other)
            keep = [c for c in a.columns if not any(w in c for w in ("time", "wall", "host", "created"))]
            key = [c for c in ("target", "fraction", "seed", "mask", "kind") if c in keep]
            if key:
                a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
            pd.testing.assert_frame_equal(a[keep], b[keep], check_exact=False, rtol=1e-5, atol=1e-7, obj=str(rel))
        n += 1
    return n


@pytest.mark.slow
def test_ci_pipeline_as_chained_jobs(slurm_cluster, tmp_path):  # noqa: F811
    missing = _missing_stages()
    if missing:
        pytest.skip(f"stages not built yet in this checkout: {', '.join(missing)}")
    run = tmp_path / "slurm-run"
    marker = tmp_path / "transfer-task-1-may-run"
    profile = tmp_path / "local-failing.toml"
    # the local profile plus one setup line: array task 1 of the sweep fails until the marker exists
    profile.write_text((PROFILE_DIR / "local.toml").read_text().replace(
        "[cluster]\n", "[cluster]\nsetup = ['if [ \"$TURBTL_STAGE\" = transfer ] && [ \"${SLURM_ARRAY_TASK_ID:-}\" = 1 ] "
        f"&& [ ! -e {marker} ]; then echo \"failing on purpose\" >&2; exit 7; fi']\n", 1))
    r = turbtl("jobs", "render", "--preset", "ci", "--profile", str(profile), "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    r = turbtl("jobs", "submit", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    ids = [j["job_id"] for j in json.loads((run / "jobs" / "submitted.json").read_text())["jobs"]]
    try:
        r = turbtl("jobs", "status", "--run-dir", str(run), "--wait", "--timeout", "900", timeout=960)
        assert r.returncode == 1, r.stdout + r.stderr
        rows = states(run)
        bad = [x for x in rows if not x.state.ok and not x.state.active]
        assert [(x.stage, x.task, x.state.exit_code) for x in bad] == [("transfer", 1, 7)], r.stdout
        assert all(x.state.ok for x in rows if x.stage in ("dns", "train", "transfer") and x.task != 1)
        assert all(x.state.stuck for x in rows if x.stage in ("analyze", "report"))

        marker.touch()
        r = turbtl("jobs", "resubmit", "--run-dir", str(run))
        assert r.returncode == 0 and "tasks 1 " in r.stdout, r.stdout + r.stderr
        sub = json.loads((run / "jobs" / "submitted.json").read_text())
        new = sub["jobs"][-1]
        assert new["stage"] == "transfer" and new["tasks"] == [1] and new["attempt"] == 2
        ids.append(new["job_id"])
        r = turbtl("jobs", "status", "--run-dir", str(run), "--wait", "--timeout", "900", timeout=960)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        slurm.scancel(*ids)
    direct = tmp_path / "direct-run"
    _run_direct(direct)
    assert _compare_runs(direct, run) > 0
