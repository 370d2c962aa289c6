"""`turbtl jobs` without a cluster: rendering, profiles, bad input, the job scripts' exit files.

The tests against a real SLURM cluster are in test_jobs_slurm.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jobs.profiles import STAGES, load_profile
from jobs.render import PIPELINE, render
from jobs.submit import array_spec, upstream
from suite.config import load_config
from suite.errors import ConfigError


def turbtl(*args, env=None):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def bash_n(path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)


def sbatch_opts(text: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_render_local_ci_every_stage(tmp_path):
    r = turbtl("jobs", "render", "--preset", "ci", "--profile", "local", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    jobs = tmp_path / "run" / "jobs"
    plan = json.loads((jobs / "plan.json").read_text())
    assert list(plan["stages"]) == list(STAGES) and plan["pipeline"] == list(PIPELINE)
    assert plan["config_args"] == ["--preset", "ci", "--run-dir", str((tmp_path / "run").resolve())]
    assert plan["provenance"]["config"]["preset"] == "ci"
    texts = {}
    for stage in STAGES:
        path = jobs / f"{stage}.sbatch"
        texts[stage] = path.read_text()
        assert bash_n(path).returncode == 0, bash_n(path).stderr
        assert "@@" not in texts[stage]
        assert texts[stage].startswith("#!/bin/bash\n#SBATCH --job-name=turbtl-" + stage)
        assert "--time=00:10:00" in sbatch_opts(texts[stage])  # every job has a limit
        assert f"--output={jobs / 'logs'}" in texts[stage]
    dns = texts["dns"]
    assert "--ntasks=2" in sbatch_opts(dns) and "srun --mpi=pmi2" in dns and "turbtl dns --preset ci" in dns
    assert "torchrun" in texts["train"] and "--nproc-per-node=2" in texts["train"]
    assert "--cpus-per-task=2" in sbatch_opts(texts["train"])  # one torchrun task holds both processes
    assert "--array=0-3%2" in sbatch_opts(texts["transfer"])
    assert '--slice "$SLURM_ARRAY_TASK_ID/4"' in texts["transfer"]
    an = texts["analyze"]
    assert "--ntasks=2" in sbatch_opts(an)
    assert "dask scheduler --scheduler-file" in an and "dask worker --scheduler-file" in an
    assert 'turbtl analyze --preset ci --run-dir' in an and '--scheduler-file "$SCHED"' in an
    assert "turbtl report --preset ci" in texts["report"] and "bench" in texts["bench"]
    assert plan["stages"]["transfer"]["array"] == {"tasks": 4, "throttle": 2}
    assert plan["stages"]["analyze"]["after"] == ["transfer"]


def test_rendered_chain_is_the_pipeline_of_turbtl_run(tmp_path):
    """The SLURM chain runs every stage of `turbtl run` (suite.stages.PIPELINE, les included), in
    that order: each stage after the one before it, and a script for each."""
    from turbtl.commands.run import STAGES as RUN_STAGES
    from suite.stages import PIPELINE as ORDER
    assert tuple(RUN_STAGES) == ORDER and "les" in ORDER
    plan = render(load_config(preset="ci"), load_profile("local"), tmp_path)
    assert plan["pipeline"] == list(ORDER)
    assert [s for s in plan["stages"] if s in ORDER] == list(ORDER)
    for before, stage in zip(ORDER, ORDER[1:]):
        assert plan["stages"][stage]["after"] == [before], stage
    assert plan["stages"][ORDER[0]]["after"] == [] and plan["stages"]["bench"]["after"] == []
    les = (tmp_path / "jobs" / "les.sbatch").read_text()
    assert "turbtl les --preset ci --run-dir" in les and bash_n(tmp_path / "jobs" / "les.sbatch").returncode == 0


def test_render_gpu_profile_paper():
    prof = load_profile("gpu-example")
    assert prof.stages["train"]["partition"] == "gpu" and prof.stages["analyze"]["partition"] == "cpu"


def test_render_gpu_example_headers(tmp_path):
    plan = render(load_config(preset="paper"), load_profile("gpu-example"), tmp_path)
    jobs = tmp_path / "jobs"
    for stage in STAGES:
        assert bash_n(jobs / f"{stage}.sbatch").returncode == 0
    train = (jobs / "train.sbatch").read_text()
    opts = sbatch_opts(train)
    for o in ("--partition=gpu", "--account=proj1234", "--qos=normal", "--time=08:00:00", "--mem=64G",
              "--gpus-per-node=4", "--ntasks-per-node=1", "--cpus-per-task=64"):
        assert o in opts, (o, opts)
    assert "module load gcc/12.2 openmpi/4.1 cuda/12.4 python/3.11" in train
    assert 'export TURBTL_VENV="$HOME/turbtl/.venv"' in train  # expanded on the compute node
    assert "--nproc-per-node=4" in train and "--nnodes=\"$SLURM_NNODES\"" in train
    dns = (jobs / "dns.sbatch").read_text()
    assert "--gres=gpu:a100:4" in sbatch_opts(dns) and "--ntasks-per-node=4" in sbatch_opts(dns)
    assert "srun --mpi=pmix" in dns
    assert "--array=0-63%16" in sbatch_opts((jobs / "transfer.sbatch").read_text())
    analyze = (jobs / "analyze.sbatch").read_text()
    assert "--partition=cpu" in sbatch_opts(analyze) and "--ntasks=32" in sbatch_opts(analyze)
    assert "--exclusive" in sbatch_opts((jobs / "bench.sbatch").read_text())
    assert plan["profile"] == "gpu-example"


def test_render_with_config_file_uses_a_copy(tmp_path):
    cfg = tmp_path / "my.toml"
    cfg.write_text('extends = "ci"\n[train]\nepochs = 2\n')
    run = tmp_path / "run"
    r = turbtl("jobs", "render", "--config", str(cfg), "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    copy = run / "jobs" / "config.toml"
    assert copy.read_text() == cfg.read_text()
    text = (run / "jobs" / "train.sbatch").read_text()
    assert f"--config {copy.resolve()} --run-dir {run.resolve()}" in text and "--preset" not in text


def test_srun_ddp_launcher(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('[cluster]\nddp_launcher = "srun"\ncpus_per_node = 8\n[stages.train]\nprocs_per_node = 3\n')
    render(load_config(preset="ci"), load_profile(str(prof)), tmp_path / "run")
    text = (tmp_path / "run" / "jobs" / "train.sbatch").read_text()
    assert "--ntasks-per-node=3" in sbatch_opts(text) and "torchrun" not in text
    assert "RANK=$SLURM_PROCID" in text and bash_n(tmp_path / "run" / "jobs" / "train.sbatch").returncode == 0


@pytest.mark.parametrize("body, field", [
    ('[stages.transfer]\narray_tasks = 4\nthrottle = 5\n', "stages.transfer.throttle"),
    ('[defaults]\ntime = "1h"\n', "defaults.time"),
    ('[stages.dsn]\nntasks = 2\n', "stages.dsn"),
    ('[cluster]\ncpus_per_node = 2\n[stages.dns]\nntasks = 4\n', "stages.dns.ntasks"),
    ('[cluster]\ncpus_per_node = 2\n[stages.train]\nprocs_per_node = 2\ncpus_per_task = 2\n', "stages.train"),
    ('[cluster]\nmpi = "openmpi"\n', "cluster.mpi"),
    ('[stages.dns]\nntasks = 0\n', "stages.dns.ntasks"),
    ('[slurm]\nx = 1\n', "slurm"),
])
def test_bad_profile_names_the_field_and_writes_nothing(tmp_path, body, field):
    prof = tmp_path / "bad.toml"
    prof.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_profile(str(prof))
    assert e.value.field == field and "bad" in str(e.value)
    run = tmp_path / "run"
    r = turbtl("jobs", "render", "--preset", "ci", "--profile", str(prof), "--run-dir", str(run))
    assert r.returncode == 2 and field.split(".")[-1] in r.stderr and not run.exists()


def test_unknown_profile_and_unrendered_run(tmp_path):
    r = turbtl("jobs", "render", "--preset", "ci", "--profile", "nosuch", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "local" in r.stderr and not (tmp_path / "r").exists()
    for action in ("submit", "status", "resubmit"):
        r = turbtl("jobs", action, "--run-dir", str(tmp_path / "r"))
        assert r.returncode == 2 and "turbtl jobs" in r.stderr, (action, r.stderr)


def test_too_many_analysis_workers_for_the_node(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('[cluster]\ncpus_per_node = 4\n[stages.analyze]\nworkers = 3\nthreads_per_worker = 2\n')
    with pytest.raises(ConfigError, match="stages.analyze"):
        render(load_config(preset="ci"), load_profile(str(prof)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_array_spec_and_upstream():
    assert array_spec([0, 1, 2, 3], 2) == "0-3%2"
    assert array_spec([5, 1, 2, 7, 8, 9]) == "1-2,5,7-9"
    assert array_spec([3]) == "3"
    assert upstream("report", list(PIPELINE)) == ["les"]
    assert upstream("les", list(PIPELINE)) == ["analyze"]
    assert upstream("transfer", ["dns", "transfer", "report"]) == ["dns"]  # nearest submitted ancestor
    assert upstream("report", ["dns", "report"]) == ["dns"]
    assert upstream("dns", list(PIPELINE)) == [] and upstream("bench", list(STAGES)) == []


def test_job_script_writes_its_exit_code(tmp_path):
    """Run a rendered script with bash outside SLURM: a stage that fails (here: its configuration
    was corrupted after rendering, so `turbtl` exits 2) leaves an exit file with that code."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('extends = "ci"\n')
    run = tmp_path / "run"
    assert turbtl("jobs", "render", "--config", str(cfg), "--run-dir", str(run)).returncode == 0
    (run / "jobs" / "config.toml").write_text("[grid]\nn_dns = -3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_JOB_ID"] = "4242"
    r = subprocess.run(["bash", str(run / "jobs" / "report.sbatch")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    rec = json.loads((run / "jobs" / "status" / "report.4242.exit").read_text())
    assert rec["exit_code"] == 2 and rec["stage"] == "report" and rec["job"] == "4242"
    assert "exit=2" in r.stdout
