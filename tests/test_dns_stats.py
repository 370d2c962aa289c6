"""Steadiness, resolution and spectral-slope checks of DNS stores (suite.dns.flow_statistics)."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from suite.dns import flow_statistics

ROOT = Path(__file__).resolve().parent.parent


def _synthetic(energy, slope=-3.0, n=128, nu=1e-3, kf=4.0):
    M, T = energy.shape
    k = np.arange(n // 2 + 1, dtype=float)
    spec = np.zeros_like(k)
    spec[k >= kf] = (k[k >= kf] / kf) ** slope
    spec = spec / spec.sum()
    spectra = energy[..., None] * spec
    return xr.Dataset({"energy": (("member", "time"), energy), "enstrophy": (("member", "time"), 10 * energy),
                       "spectrum_dns": (("member", "time", "k"), spectra)},
                      attrs={"nu": nu, "kf": kf, "n_dns": n, "L": 2 * math.pi, "chunk_time": 4})


def test_slope_and_steadiness_of_a_synthetic_store():
    rng = np.random.default_rng(0)
    steady = _synthetic(1.5 + 0.1 * rng.standard_normal((6, 32)))
    s = flow_statistics(steady)
    assert s["slope"] == pytest.approx(-3.0, abs=1e-9)
    assert s["energy_drift"] < 0.05 and s["energy_drift_sigma"] < 3
    drifting = _synthetic(np.linspace(0.5, 1.5, 32)[None, :] * np.ones((6, 1)))
    d = flow_statistics(drifting)
    assert d["energy_drift"] > 0.3 and d["energy_drift_sigma"] > 3
    assert flow_statistics(_synthetic(np.ones((2, 8)), slope=-5.0))["slope"] == pytest.approx(-5.0)


def test_kraichnan_scale_from_the_spectrum():
    """η_Z = (ν³/η)^(1/6) with η = 2ν Σ k⁴ E(k): a single shell at k = 10 with E = 1."""
    ds = _synthetic(np.ones((1, 2)))
    spec = np.zeros((1, 2, 65))
    spec[..., 10] = 1.0
    ds["spectrum_dns"] = (("member", "time", "k"), spec)
    nu = 1e-3
    eta = 2 * nu * 10 ** 4
    assert flow_statistics(ds)["eta_z"] == pytest.approx((nu ** 3 / eta) ** (1 / 6))
    assert flow_statistics(ds)["kmax_eta_z"] == pytest.approx(42 * (nu ** 3 / eta) ** (1 / 6))



def test_dissipation_wavenumber_with_hyperviscosity():
    """k_d = (η_t^(1/3)/ν_p)^(1/(2p)) with η_t = 2νk⁴E + 2ν_p k^(2p+2) E for a single shell k = 10,
    E = 1; without hyperviscosity k_max/k_d is k_max η_Z."""
    ds = _synthetic(np.ones((1, 2)))
    spec = np.zeros((1, 2, 65))
    spec[..., 10] = 1.0
    ds["spectrum_dns"] = (("member", "time", "k"), spec)
    assert flow_statistics(ds)["kmax_over_kd"] == pytest.approx(flow_statistics(ds)["kmax_eta_z"])
    nu, nu2 = 1e-3, 1e-7
    ds.attrs.update(hyperviscosity=nu2, hyper_order=2)
    eta_t = 2 * nu * 1e4 + 2 * nu2 * 1e6
    k_d = (eta_t ** (1 / 3) / nu2) ** (1 / 4)
    s = flow_statistics(ds)
    assert s["kmax_over_kd"] == pytest.approx(42 / k_d)
    assert s["kmax_eta_z"] == pytest.approx(42 * (nu ** 3 / (2 * nu * 1e4)) ** (1 / 6))  # viscous only


@pytest.mark.slow
def test_small_base_is_resolved_steady_and_has_a_steep_enstrophy_range(tmp_path):
    """The small preset's base system on fewer members: after the spin-up the energy is
    statistically steady, k_max η_Z >= 1 and the energy spectrum falls like k^-3 or steeper."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('extends = "small"\n[dns]\nsystems = ["base"]\nmembers_train = 1\nmembers_val = 0\n'
                   'members_test = 1\nsnapshots = 24\n')
    subprocess.run([str(Path(sys.executable).parent / "turbtl"), "dns", "--no-progress", "--config", str(cfg),
                    "--run-dir", str(tmp_path / "run")], check=True, cwd=ROOT, timeout=1200,
                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    from suite.fdns import open_fdns
    s = flow_statistics(open_fdns(tmp_path / "run" / "fdns" / "base.zarr"))
    assert s["kmax_eta_z"] >= 1.0
    assert s["z_decades"] >= 2.0
    assert s["energy_drift"] < 0.2
    assert -5.0 < s["slope"] < -2.8
