"""The run-folder lock: a second command stops with a clear message; a killed holder frees it."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from suite.rundir import RunLocked, read_stage, record_stage, run_lock, write_json_atomic


def test_second_holder_is_refused_with_the_holder_named(tmp_path):
    with run_lock(tmp_path, "dns --preset ci"):
        with pytest.raises(RunLocked) as e:
            with run_lock(tmp_path, "train"):
                pass
    msg = str(e.value)
    assert "turbtl dns --preset ci" in msg and str(os.getpid()) in msg and "--run-dir" in msg
    with run_lock(tmp_path, "train"):  # released after the block
        pass


def test_lock_dies_with_a_sigkilled_holder(tmp_path):
    prog = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from suite.rundir import run_lock
        with run_lock({str(tmp_path)!r}, "dns"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked):
        with run_lock(tmp_path, "train"):
            pass
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    with run_lock(tmp_path, "train"):
        pass


def test_stage_records_round_trip(tmp_path):
    record_stage(tmp_path, "dns", 12.3456, "3 systems", systems=["a"])
    rec = read_stage(tmp_path, "dns")
    assert rec["wall_s"] == 12.346 and rec["summary"] == "3 systems" and rec["systems"] == ["a"]
    assert read_stage(tmp_path, "train") is None
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.json")]


def test_shared_holders_coexist_and_exclude_exclusive_ones(tmp_path):
    with run_lock(tmp_path, "transfer --slice 1/2", shared=True):
        with run_lock(tmp_path, "transfer --slice 2/2", shared=True):
            with pytest.raises(RunLocked) as e:
                with run_lock(tmp_path, "train"):
                    pass
            assert "transfer slices" in str(e.value)
    with run_lock(tmp_path, "train"):
        with pytest.raises(RunLocked):
            with run_lock(tmp_path, "transfer --slice 1/2", shared=True):
                pass


def test_stage_record_adds_continuations_and_a_fresh_run_resets(tmp_path):
    """A re-run without --force that only skips finished work adds its seconds to the stage's time
    (the report's Timings), and lists every invocation; --force starts the record again."""
    from suite.rundir import read_stage, record_stage
    record_stage(tmp_path, "dns", 100.0, "4 systems", systems=["base"])
    record_stage(tmp_path, "dns", 0.25, "finished stores kept", systems=["base"])
    rec = read_stage(tmp_path, "dns")
    assert rec["wall_s"] == 100.25 and rec["summary"] == "finished stores kept" and rec["systems"] == ["base"]
    assert [r["summary"] for r in rec["invocations"]] == ["4 systems", "finished stores kept"]
    record_stage(tmp_path, "dns", 7.0, "redone", fresh=True)
    rec = read_stage(tmp_path, "dns")
    assert rec["wall_s"] == 7.0 and len(rec["invocations"]) == 1
