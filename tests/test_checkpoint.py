"""Checkpoint files: round trip, atomic replacement, and clear errors on damaged or foreign files."""
import json
import os

import numpy as np
import pytest

from solver.checkpoint import checksum, latest_step, member_path, read_checkpoint, write_checkpoint
from solver.errors import CheckpointError as DataError


def _state(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, 9)) + 1j * rng.standard_normal((16, 9))
    return {"omega_hat": w, "history_nl_prev_hat": 2 * w, "rng_state": np.arange(6, dtype=np.uint64)}


def test_round_trip_is_exact(tmp_path):
    arrays = _state()
    meta = {"step": 12, "t": 0.12, "dt": 0.01, "system": {"re": 400.0}}
    p = write_checkpoint(tmp_path / "ck" / "member-00000.npz", arrays, meta)
    got, m = read_checkpoint(p)
    assert set(got) == set(arrays)
    for k in arrays:
        assert got[k].dtype == arrays[k].dtype and np.array_equal(got[k], arrays[k])
    assert m["step"] == 12 and m["t"] == 0.12 and m["system"] == {"re": 400.0}
    assert m["format"] == "turbtl-checkpoint" and m["version"] == 1
    assert [f for f in os.listdir(p.parent) if f.endswith(".tmp")] == []  # no temporary left


def test_checksum_sees_every_array_and_the_meta():
    a, meta = _state(), {"step": 1}
    ref = checksum(a, meta)
    b = dict(a, omega_hat=a["omega_hat"].copy())
    b["omega_hat"][3, 4] = np.nextafter(b["omega_hat"][3, 4].real, np.inf) + 1j * b["omega_hat"][3, 4].imag
    assert checksum(b, meta) != ref
    assert checksum(a, {"step": 2}) != ref
    assert checksum({"x": a["omega_hat"]} | {k: v for k, v in a.items() if k != "omega_hat"}, meta) != ref


def test_truncated_file_raises_data_error_naming_the_path(tmp_path):
    p = write_checkpoint(member_path(tmp_path, 0), _state(), {"step": 1})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as e:
        read_checkpoint(p)
    assert str(p) in str(e.value) and "restart from an older checkpoint" in str(e.value)


def test_tampered_array_fails_the_checksum(tmp_path):
    p = write_checkpoint(member_path(tmp_path, 0), _state(), {"step": 1})
    arrays, meta = read_checkpoint(p)
    # rewrite the file with one changed value but the old checksum (a silent corruption)
    import zipfile
    with zipfile.ZipFile(p) as z:
        stored = {n: z.read(n) for n in z.namelist()}
    w = arrays["omega_hat"].copy()
    w[2, 2] *= 1.0000001
    import io
    buf = io.BytesIO()
    np.save(buf, w)
    stored["omega_hat.npy"] = buf.getvalue()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in stored.items():
            z.writestr(n, b)
    with pytest.raises(DataError, match="sha256") as e:
        read_checkpoint(p)
    assert str(p) in str(e.value)


def test_foreign_missing_and_other_version_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, omega_hat=np.zeros(3))
    with pytest.raises(DataError, match="not a turbtl checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(DataError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.npz")
    p = write_checkpoint(member_path(tmp_path, 1), _state(), {"step": 1})
    import zipfile
    with zipfile.ZipFile(p) as z:
        stored = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(p)["__meta__"].tobytes().decode())
    meta["version"] = 99
    import io
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    stored["__meta__.npy"] = buf.getvalue()
    with zipfile.ZipFile(p, "w") as z:
        for n, b in stored.items():
            z.writestr(n, b)
    with pytest.raises(DataError, match="version 99"):
        read_checkpoint(p)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    p = write_checkpoint(member_path(tmp_path, 0), _state(0), {"step": 1})
    with pytest.raises(TypeError):
        write_checkpoint(p, _state(1), {"step": 2, "bad": object()})  # meta not serializable
    arrays, meta = read_checkpoint(p)
    assert meta["step"] == 1 and np.array_equal(arrays["omega_hat"], _state(0)["omega_hat"])
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_latest_step_needs_every_member(tmp_path):
    write_checkpoint(member_path(tmp_path, 0), _state(), {"step": 30})
    assert latest_step(tmp_path, [0, 1]) is None
    write_checkpoint(member_path(tmp_path, 1), _state(), {"step": 20})
    assert latest_step(tmp_path, [0, 1]) == 20
