"""Submit a rendered run to SLURM, follow it, and resubmit what failed.

``submit`` sends the chosen stages (default: the pipeline of :mod:`suite.stages`, dns -> train ->
transfer -> analyze -> les -> report) chained with ``--dependency=afterok`` and records every job in ``DIR/jobs/submitted.json``.
``states`` tells how each job (each array task) stands: from ``squeue`` while queued, then from
``sacct`` when accounting is on, else from the exit file the job script writes when it ends
(``DIR/jobs/status/<stage>.<jobid>[_<task>].exit``). ``resubmit`` sends again only what failed
(for an array: the failed tasks alone, same script, same slices) and re-chains the jobs that were
waiting on it. The newest job covering a task decides that task's state.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

from solver.atomic import write_bytes_atomic
from suite.errors import DataError, UsageError
from suite.layout import jobs_dir as run_jobs_dir

from . import slurm
from .profiles import STAGES
from .render import AFTER, load_plan
from .slurm import JobState

SUBMITTED = "submitted.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jobs_dir(run_dir) -> Path:
    return run_jobs_dir(Path(run_dir).resolve())


def load_submitted(run_dir) -> dict:
    path = _jobs_dir(run_dir) / SUBMITTED
    try:
        sub = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"nothing submitted for this run ({path} missing): run `turbtl jobs submit` first",
                        field="run-dir") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e})", field="run-dir") from None
    if sub.get("kind") != "turbtl-jobs-submitted":
        raise DataError(f"{path} is not a turbtl submission record", field="run-dir")
    return sub


def _save_submitted(run_dir, sub: dict) -> None:
    path = _jobs_dir(run_dir) / SUBMITTED
    write_bytes_atomic(path, json.dumps(sub, indent=2).encode())


def upstream(stage: str, submitted: list[str]) -> list[str]:
    """The nearest stages among ``submitted`` that ``stage`` must wait for."""
    out = []
    for u in AFTER[stage]:
        for s in ([u] if u in submitted else upstream(u, submitted)):
            if s not in out:
                out.append(s)
    return out


def array_spec(tasks: list[int], throttle: int = 0) -> str:
    """``--array`` value for a list of task IDs: ``0-3``, ``1,4-5``, with ``%throttle``."""
    tasks, parts, i = sorted(set(tasks)), [], 0
    while i < len(tasks):
        j = i
        while j + 1 < len(tasks) and tasks[j + 1] == tasks[j] + 1:
            j += 1
        parts.append(str(tasks[i]) if i == j else f"{tasks[i]}-{tasks[j]}")
        i = j + 1
    return ",".join(parts) + (f"%{throttle}" if throttle else "")


def _submit_one(plan: dict, stage: str, deps: list[str], tasks: list[int] | None, attempt: int,
                replaces: str | None = None) -> dict:
    info = plan["stages"][stage]
    script = str(run_jobs_dir(plan["run_dir"]) / info["script"])
    opts, dependency = [], ("afterok:" + ":".join(deps)) if deps else ""
    if dependency:
        opts.append(f"--dependency={dependency}")
    if info["array"]:
        tasks = tasks if tasks is not None else list(range(info["array"]["tasks"]))
        opts.append(f"--array={array_spec(tasks, min(info['array']['throttle'], len(tasks)))}")
    job_id = slurm.sbatch(script, *opts)
    return {"stage": stage, "job_id": job_id, "script": script, "tasks": tasks if info["array"] else None,
            "dependency": dependency, "attempt": attempt, "replaces": replaces, "submitted": _now()}


def submit(run_dir, stages: list[str] | None = None, after: list[str] | None = None) -> dict:
    """Submit ``stages`` (default: the plan's pipeline) chained with afterok; return the record.

    ``after``: job IDs the first stages wait for as well. Refuses while jobs of an earlier
    submission of this run are still queued. If any sbatch fails, the jobs submitted so far are
    cancelled and nothing is recorded.
    """
    plan = load_plan(run_dir)
    stages = list(stages or plan["pipeline"])
    for s in stages:
        if s not in plan["stages"]:
            raise UsageError(f"--stages contains {s!r}: accepted are {', '.join(STAGES)}", field="stages")
    for a in after or []:
        if not a.isdigit():
            raise UsageError(f"--after {a!r}: must be a SLURM job ID (digits)", field="after")
    stages = [s for s in STAGES if s in stages]
    if (_jobs_dir(run_dir) / SUBMITTED).exists():
        active = [r for r in states(run_dir) if r.state.active]
        if active:
            raise UsageError(f"{len(active)} job(s) of the earlier submission of this run are still queued "
                             f"(e.g. {active[0].stage} {active[0].key}): wait, or scancel them first",
                             field="run-dir")
    ids, records = {}, []
    try:
        for s in stages:
            deps = [ids[u] for u in upstream(s, stages)] + list(after or [])
            rec = _submit_one(plan, s, deps, None, attempt=1)
            ids[s] = rec["job_id"]
            records.append(rec)
    except slurm.SlurmError:
        slurm.scancel(*ids.values())
        raise
    sub = {"schema_version": 1, "kind": "turbtl-jobs-submitted", "run_dir": plan["run_dir"],
           "profile": plan["profile"], "stages": stages, "submitted": _now(), "jobs": records}
    _save_submitted(run_dir, sub)
    return sub


@dataclass(frozen=True)
class TaskState:
    """How one task of a stage stands: the newest job that covers it and its state."""

    stage: str
    task: int | None  # array task ID, None for plain jobs
    key: str  # JOBID or ARRAYJOBID_TASK
    record: dict
    state: JobState


def _exit_file_state(jobs_dir: Path, stage: str, key: str) -> JobState | None:
    f = jobs_dir / "status" / f"{stage}.{key}.exit"
    try:
        code = int(json.loads(f.read_text())["exit_code"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError):
        return None
    return JobState("COMPLETED" if code == 0 else "FAILED", code, "", "exit-file")


def _effective(sub: dict) -> list[tuple[str, int | None, dict]]:
    """(stage, task, newest record covering it) for every task of every submitted stage."""
    out = []
    for stage in sub["stages"]:
        recs = [r for r in sub["jobs"] if r["stage"] == stage]
        tasks = recs[0]["tasks"]
        for t in (tasks if tasks is not None else [None]):
            newest = [r for r in recs if t is None or t in r["tasks"]][-1]
            out.append((stage, t, newest))
    return out


def states(run_dir) -> list[TaskState]:
    """The state of every task of the submission, in pipeline order."""
    sub = load_submitted(run_dir)
    jobs_dir = _jobs_dir(run_dir)
    eff = _effective(sub)
    q = slurm.queue()
    keys = [(s, t, r, r["job_id"] if t is None else f"{r['job_id']}_{t}") for s, t, r in eff]
    gone = sorted({r["job_id"] for s, t, r, k in keys if k not in q})
    acct = slurm.accounting(gone)
    out = []
    for s, t, r, k in keys:
        st = q.get(k) or acct.get(k) or _exit_file_state(jobs_dir, s, k)
        if st is None:  # ended without an exit file: cancelled before it started, or killed hard
            st = JobState("UNKNOWN", None, "not queued, no exit file", "none")
        out.append(TaskState(s, t, k, r, st))
    return _mark_blocked(out, sub["stages"])


def _mark_blocked(rows: list[TaskState], stages: list[str]) -> list[TaskState]:
    """Pending tasks downstream of a failure can never start either: say so in their reason (SLURM
    itself says DependencyNeverSatisfied only for the direct dependents)."""
    bad_stages: set[str] = set()
    out = []
    for stage in stages:
        ups = [u for u in upstream(stage, stages) if u in bad_stages]
        for r in (r for r in rows if r.stage == stage):
            if ups and r.state.state == "PENDING" and not r.state.stuck:
                r = TaskState(r.stage, r.task, r.key, r.record,
                              JobState("PENDING", None, f"DependencyNeverSatisfied (after {ups[0]})", r.state.source))
            out.append(r)
            if r.state.stuck or (not r.state.active and not r.state.ok):
                bad_stages.add(stage)
    return out


def wait(run_dir, timeout: float = 3600, poll: float = 1.0) -> list[TaskState]:
    """Poll until no task is queued any more (or all that are can never start); TimeoutError after
    ``timeout`` seconds."""
    t_end = time.monotonic() + timeout
    while True:
        rows = states(run_dir)
        if all(not r.state.active or r.state.stuck for r in rows):
            return rows
        if time.monotonic() > t_end:
            raise TimeoutError(f"jobs still queued after {timeout:g} s: " +
                               ", ".join(f"{r.stage} {r.key} {r.state.state}" for r in rows if r.state.active))
        time.sleep(poll)


def failed(rows: list[TaskState]) -> list[TaskState]:
    """Tasks that ended without success."""
    return [r for r in rows if not r.state.active and not r.state.ok]


def resubmit(run_dir) -> list[dict]:
    """Resubmit the failed jobs/array tasks alone and re-chain the jobs waiting on them.

    Returns the new job records (empty when nothing failed). Stages are handled in pipeline
    order, so a re-submitted upstream job is what its dependents now wait for.
    """
    sub = load_submitted(run_dir)
    plan = load_plan(run_dir)
    rows = states(run_dir)
    new_ids: dict[str, list[str]] = {}
    new_records = []

    def deps_of(stage: str) -> list[str]:
        out = []
        for u in upstream(stage, sub["stages"]):
            out += new_ids.get(u, [])
            out += sorted({r.record["job_id"] for r in rows if r.stage == u and r.state.active})
        return out

    try:
        for stage in sub["stages"]:
            mine = [r for r in rows if r.stage == stage]
            bad = failed(mine)
            deps = deps_of(stage)
            if bad:
                tasks = [r.task for r in bad] if bad[0].task is not None else None
                attempt = max(r.record["attempt"] for r in bad) + 1
                rec = _submit_one(plan, stage, deps, tasks, attempt, replaces=bad[0].record["job_id"])
                new_ids[stage] = [rec["job_id"]]
                new_records.append(rec)
                sub["jobs"].append(rec)
            for job_id in sorted({r.record["job_id"] for r in mine if r.state.stuck}):
                rec = next(j for j in sub["jobs"] if j["job_id"] == job_id)
                dependency = ("afterok:" + ":".join(deps)) if deps else ""
                if not slurm.update_dependency(job_id, dependency):
                    raise slurm.SlurmError(f"could not re-chain job {job_id} ({stage}) to {dependency or 'nothing'}",
                                           field="scontrol")
                rec["dependency"] = dependency
    finally:
        if new_records or any(r.state.stuck for r in rows):
            _save_submitted(run_dir, sub)
    return new_records


def format_states(rows: list[TaskState]) -> str:
    """A table of the tasks and one summary line."""
    lines = [f"{'stage':<9} {'job':<12} {'task':>4}  {'state':<12} {'exit':>4}  {'try':>3}  {'from':<9} reason"]
    for r in rows:
        st = r.state
        lines.append(f"{r.stage:<9} {r.record['job_id']:<12} {'' if r.task is None else r.task:>4}  {st.state:<12} "
                     f"{'' if st.exit_code is None else st.exit_code:>4}  {r.record['attempt']:>3}  {st.source:<9} "
                     f"{st.reason if st.reason not in ('None', '(null)') else ''}")
    n = len(rows)
    done = sum(r.state.ok for r in rows)
    bad = len(failed(rows))
    stuck = sum(r.state.stuck for r in rows)
    active = sum(r.state.active for r in rows) - stuck
    summary = f"{n} task(s): {done} completed, {active} queued or running, {bad} failed, {stuck} waiting on a failure"
    if bad or stuck:
        summary += " -> `turbtl jobs resubmit` sends the failed ones again"
    return "\n".join(lines + [summary])
