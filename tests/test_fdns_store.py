"""The FDNS store (suite/fdns.py): layout, completeness, validation, parallel writers."""
import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from suite.errors import DataError
from suite.fdns import (KIND, SCHEMA_VERSION, Layout, completed, create_store, is_finished, open_fdns,
                        read_attrs, split_labels, write_chunk)


def _layout(members=3, snapshots=7, chunk_time=3, save_dns=False):
    return Layout(members=members, snapshots=snapshots, chunk_time=chunk_time, n_les=8, n_dns=16,
                  L=2 * np.pi, sample_interval=0.5, split=split_labels(members - 2, 1, 1), save_dns=save_dns)


def _values(layout, member, chunk):
    """Deterministic, distinguishable values for one chunk."""
    sl = layout.chunk_slice(chunk)
    nt = sl.stop - sl.start
    base = 1000.0 * member + np.arange(sl.start, sl.stop)[:, None, None]
    field = np.broadcast_to(base, (nt, layout.n_les, layout.n_les)).copy()
    out = {"psi": field, "omega": field + 0.25, "pi": -field,
           "energy": base[:, 0, 0], "enstrophy": base[:, 0, 0] + 1, "backscatter": base[:, 0, 0] * 0 + 0.3,
           "transfer": base[:, 0, 0] * 2, "spectrum_dns": np.ones((nt, layout.nk)) * base[:, 0]}
    if layout.save_dns:
        out["omega_dns"] = np.broadcast_to(base, (nt, layout.n_dns, layout.n_dns)).copy()
    return out


def test_layout_coords_attrs_and_partial_reads(tmp_path):
    lay = _layout()
    path = tmp_path / "s.zarr"
    create_store(path, lay, {"re": 400.0, "filter": "gaussian", "provenance": {"code_version": "x"}})
    attrs = read_attrs(path)
    assert attrs["kind"] == KIND and attrs["schema_version"] == SCHEMA_VERSION
    assert json.loads(attrs["provenance"]) == {"code_version": "x"}
    assert not completed(path).any() and not is_finished(path)
    write_chunk(path, 1, 0, _values(lay, 1, 0))
    write_chunk(path, 1, 2, _values(lay, 1, 2))  # the short last chunk (1 snapshot)
    write_chunk(path, 2, 0, _values(lay, 2, 0))
    done = completed(path)
    assert done.sum() == 3 + 1 + 3 and done[1, 6] and not done[1, 3]
    ds = open_fdns(path)
    # member 0 has nothing complete: dropped; times 3..5 nobody has: dropped
    assert list(ds.member.values) == [1, 2]
    assert list(ds.time.values) == [0.0, 0.5, 1.0, 3.0]
    assert list(ds.split.values) == ["val", "test"]
    assert ds.psi.dims == ("member", "time", "y", "x") and ds.psi.dtype == np.float64
    psi = ds.psi.values
    assert psi[0, 3, 0, 0] == 1006.0 and np.isnan(psi[1, 3]).all()  # member 2, time 3.0: incomplete
    assert np.array_equal(ds.pi.values[0, :3], -psi[0, :3])
    assert np.isnan(ds.energy.values[1, 3]) and ds.energy.values[1, 2] == 2002.0
    assert np.allclose(ds.x.values, np.arange(8) * 2 * np.pi / 8)
    raw = open_fdns(path, complete_only=False)
    assert raw.sizes["member"] == 3 and bool(raw.complete[1, 6])


def test_finished_store_is_returned_whole(tmp_path):
    lay = _layout(members=3, snapshots=4, chunk_time=2, save_dns=True)
    path = tmp_path / "s.zarr"
    create_store(path, lay, {})
    for m in range(3):
        for c in range(lay.chunks_per_member):
            write_chunk(path, m, c, _values(lay, m, c))
    assert is_finished(path)
    ds = open_fdns(path)
    assert ds.sizes == {"member": 3, "time": 4, "y": 8, "x": 8, "k": 9, "y_dns": 16, "x_dns": 16}
    assert ds.omega_dns.dims == ("member", "time", "y_dns", "x_dns")
    assert not np.isnan(ds.psi.values).any()
    assert ds.psi.encoding["chunks"] == (1, 2, 8, 8)


def test_write_chunk_rejects_wrong_shapes_and_missing_variables(tmp_path):
    lay = _layout()
    path = tmp_path / "s.zarr"
    create_store(path, lay, {})
    v = _values(lay, 0, 0)
    with pytest.raises(ValueError, match="psi has shape"):
        write_chunk(path, 0, 0, v | {"psi": v["psi"][:2]})
    with pytest.raises(ValueError, match="missing"):
        write_chunk(path, 0, 0, {k: x for k, x in v.items() if k != "pi"})
    assert not completed(path).any()


def test_missing_foreign_other_schema_and_corrupt_stores_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_fdns(tmp_path / "nothing.zarr")
    foreign = tmp_path / "foreign.zarr"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_zarr(foreign, zarr_format=3, consolidated=False)
    with pytest.raises(DataError, match="kind"):
        open_fdns(foreign)
    lay = _layout()
    other = tmp_path / "other.zarr"
    create_store(other, lay, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: fixed-width strings are not in the v3 spec yet
        zarr.open_group(other, mode="r+").attrs["schema_version"] = 99
    with pytest.raises(DataError, match="schema_version = 99"):
        open_fdns(other)
    corrupt = tmp_path / "corrupt.zarr"
    create_store(corrupt, lay, {})
    (corrupt / "zarr.json").write_text("{ not json")
    with pytest.raises(DataError, match="not a readable zarr store"):
        open_fdns(corrupt)
    nopi = tmp_path / "nopi.zarr"
    create_store(nopi, lay, {})
    shutil.rmtree(nopi / "pi")
    with pytest.raises(DataError):
        open_fdns(nopi)
    notzarr = tmp_path / "plain"
    notzarr.mkdir()
    with pytest.raises(DataError):
        open_fdns(notzarr)


@pytest.mark.mpi
def test_each_rank_writes_the_chunks_of_its_own_members(comm, tmp_path_factory):
    """Rank 0 creates the store, every rank writes its own members' chunks concurrently; no value is lost."""
    path = comm.bcast(str(tmp_path_factory.mktemp("fdns") / "par.zarr") if comm.rank == 0 else None, root=0)
    lay = _layout(members=5, snapshots=9, chunk_time=2)
    if comm.rank == 0:
        create_store(path, lay, {"re": 1.0})
    comm.Barrier()
    for m in range(comm.rank, lay.members, comm.size):
        for c in range(lay.chunks_per_member):
            write_chunk(path, m, c, _values(lay, m, c))
    comm.Barrier()
    ds = open_fdns(path)
    assert is_finished(path)
    for m in range(lay.members):
        want = np.concatenate([_values(lay, m, c)["psi"] for c in range(lay.chunks_per_member)])
        assert np.array_equal(ds.psi.values[m], want)
    comm.Barrier()
