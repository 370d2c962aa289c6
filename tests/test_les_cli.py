"""`turbtl les` end to end on a small FDNS store in the real format, and its input errors."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from turbtl.cli import main
from suite.config import load_config
from suite.fdns import Layout, create_store, split_labels, write_chunk
from suite.les import open_les
from suite.model import save_model
from tests.fdns_synth import fields
from tests.test_les import NORM, laplacian_cnn

L = 2 * math.pi


def write_fdns(path, n=16, snapshots=8, si=0.1, dt=0.01):
    """A store with the attributes `turbtl dns` writes; smooth random ψ̄, ω̄ and a diffusive Π."""
    lay = Layout(members=4, snapshots=snapshots, chunk_time=4, n_les=n, n_dns=4 * n, L=L, sample_interval=si,
                 split=split_labels(2, 1, 1))
    create_store(path, lay, {"system": "base", "re": 400.0, "nu": 1 / 400, "mu": 0.1, "beta": 0.0, "kf": 4.0,
                             "forcing": "cos-xy", "L": L, "n_dns": 4 * n, "n_les": n, "dt": dt,
                             "stepper": "ab2cn", "dealias": "2/3", "jacobian": "advective", "filter": "gaussian",
                             "filter_width": 2 * L / n, "sample_interval": si, "spinup_time": 0.0, "seed": 0,
                             "provenance": "{}"})
    k = np.fft.fftfreq(n, 1 / n)
    k2 = k[None, :] ** 2 + k[:, None] ** 2
    for m in range(lay.members):
        for c in range(lay.chunks_per_member):
            cnt = lay.chunk_slice(c).stop - lay.chunk_slice(c).start
            psi, omega = fields(n, cnt, 100 * m + c)
            omega = omega - omega.mean(axis=(-2, -1), keepdims=True)
            pi = np.real(np.fft.ifft2(-0.01 * k2 * np.fft.fft2(omega)))
            z = np.zeros(cnt)
            write_chunk(path, m, c, {"psi": psi, "omega": omega, "pi": pi, "energy": z, "enstrophy": z,
                                     "backscatter": z, "transfer": z, "spectrum_dns": np.zeros((cnt, lay.nk))})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("les_run")
    write_fdns(d / "fdns" / "base.zarr")
    save_model(d / "models" / "base", laplacian_cnn(0.05, L / 16, NORM), NORM, {"note": "test"})
    return d


def test_les_cli_end_to_end(run_dir, capsys):
    closures = "smag,leith,dsmag,dleith,cnn:base"
    rc = main(["les", "--preset", "ci", "--run-dir", str(run_dir), "--closures", closures, "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "skill_e_spec_all" in out and "cnn:base" in out
    ds = open_les(run_dir / "les" / "base.zarr")
    labels = ["none"] + closures.split(",")
    assert list(ds["closure"].values) == labels
    cfg = load_config(preset="ci")
    assert ds["time"].values[-1] == pytest.approx(0.5) and ds.sizes["time"] == 6  # 0, 0.1, ..., 0.5
    assert np.allclose(ds["time_fdns"].values, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert ds.sizes["member"] == cfg.les.members
    assert np.isnan(ds["blowup_time"].values).all()  # every closure stable for the ci duration
    assert np.isfinite(ds["omega"].values).all()
    # the LES starts from the FDNS test member's first snapshot, on the modes the LES evolves
    # (every mode below Nyquist, k = 0 removed)
    from solver import Grid
    from suite.fdns import open_fdns
    f = open_fdns(run_dir / "fdns" / "base.zarr")
    w0 = f["omega"].isel(member=3, time=0).values
    g = Grid(16, L)
    kept = np.fft.irfft2(np.fft.rfft2(w0) * g.host.nyquist_free * (g.host.k2 > 0), s=w0.shape)
    np.testing.assert_allclose(ds["omega"].sel(closure="none").isel(member=0, time=0).values, kept,
                               atol=1e-10 * np.abs(w0).max())
    assert '"stage": "les"' in ds.attrs["provenance"] and "dt_rule" in ds.attrs["setup"]
    assert ds.attrs["schema_version"] == 2 and ds.attrs["les_jacobian"].startswith("exact")

    df = pd.read_csv(run_dir / "les" / "base_metrics.csv")
    assert list(df["closure"]) == labels
    none = df.set_index("closure").loc["none"]
    assert none["skill_e_spec_all"] == 0.0 and none["backscatter"] == 0.0
    assert (df["stable_members"] == 1).all()
    assert df["backscatter_fdns"].iloc[0] == pytest.approx(0.0, abs=1e-12)  # Π = ν∇²ω: T >= 0
    for png in ("les_base_spectra.png", "les_base_pdf.png"):
        assert (run_dir / "figures" / png).stat().st_size > 1000

    # a second run keeps the finished system
    assert main(["les", "--preset", "ci", "--run-dir", str(run_dir), "--no-progress"]) == 0
    assert "kept" in capsys.readouterr().out


@pytest.mark.parametrize("closures,needle", [
    ("smag,foo", "les.closures contains 'foo'"),
    ("cnn:01000", "mask '01000' must be 3 characters"),
    ("cnn:base/010", "models/tl/base/f0.5_s0/010/model.pt"),
    ("cnn:high_re/f0.1_s0/001", "turbtl transfer"),
    ("cnn:nowhere/001", "unknown system 'nowhere'"),
])
def test_les_cli_bad_closures_exit_2_and_write_nothing(tmp_path, capsys, closures, needle):
    write_fdns(tmp_path / "fdns" / "base.zarr")
    save_model(tmp_path / "models" / "base", laplacian_cnn(0.05, L / 16, NORM), NORM, {})
    rc = main(["les", "--preset", "ci", "--run-dir", str(tmp_path), "--closures", closures])
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "les").exists() and not (tmp_path / "figures").exists()


def test_les_cli_missing_base_model_and_store(tmp_path, capsys):
    rc = main(["les", "--preset", "ci", "--run-dir", str(tmp_path), "--closures", "cnn:base"])
    err = capsys.readouterr().err
    assert rc == 2 and "models/base/model.pt" in err and "turbtl train" in err
    rc = main(["les", "--preset", "ci", "--run-dir", str(tmp_path), "--closures", "smag"])
    err = capsys.readouterr().err
    assert rc == 2 and "turbtl dns" in err
    assert not (tmp_path / "les").exists()


def test_closure_names_resolve_to_model_folders(tmp_path):
    from suite.les import resolve_closures
    cfg = load_config(preset="ci")  # model.layers = 3, transfer: targets high_re, beta20, fraction 0.5, seed 0
    got = {s.label: s for s in resolve_closures(["smag", "cnn:base", "cnn:010", "smag", "cnn:beta20/f0.1_s3/110"],
                                               cfg, "high_re", tmp_path)}
    assert list(got) == ["none", "smag", "cnn:base", "cnn:010", "cnn:beta20/f0.1_s3/110"]
    assert got["cnn:base"].model_dir == tmp_path / "models" / "base"
    assert got["cnn:010"].model_dir == tmp_path / "models" / "tl" / "high_re" / "f0.5_s0" / "010"
    assert got["cnn:beta20/f0.1_s3/110"].model_dir == tmp_path / "models" / "tl" / "beta20" / "f0.1_s3" / "110"
    assert got["smag"].kind == "physics" and got["none"].kind == "none"
    # a bare TL mask names the simulated system's TL network: skipped on a system that is no target
    assert [s.label for s in resolve_closures(["cnn:010"], cfg, "base", tmp_path)] == ["none"]
