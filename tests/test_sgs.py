"""The SGS term Π = J(ψ̄, ω̄) − bar(J(ψ, ω)) (solver/sgs.py) against independent computations."""
import math

import numpy as np
import pytest

from solver import Equation, Grid, Parameters, make_backend, random_field
from solver.filters import default_width, make_filter
from solver.sgs import FDNSSampler, backscatter_fraction, enstrophy_transfer, make_sampler

L = 2 * math.pi


def _band_limited_omega_hat(n, kmax, seed=0):
    """rfft2 of a random real vorticity with modes |k| <= kmax only (zero mean)."""
    rng = np.random.default_rng(seed)
    w = np.fft.rfft2(rng.standard_normal((n, n)))
    kx = np.arange(n // 2 + 1)[None, :]
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None]
    w[(kx ** 2 + ky ** 2) > kmax ** 2] = 0
    w[0, 0] = 0
    w = np.fft.irfft2(w, s=(n, n))
    return np.fft.rfft2(w / np.max(np.abs(w)))  # exactly Hermitian, max |ω| = 1


def _jacobian_np(psi, omega):
    """J(ψ, ω) = ψ_y ω_x − ψ_x ω_y on a periodic grid by plain numpy FFT derivatives (exact for
    band-limited fields whose product is resolved)."""
    n = psi.shape[-1]
    kx = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None]

    def d(f, k):
        return np.fft.irfft2(1j * k * np.fft.rfft2(f), s=f.shape)
    return d(psi, ky) * d(omega, kx) - d(psi, kx) * d(omega, ky)


def _sampler(n_dns, n_les, filter_name, dealias="2/3", jacobian="advective", width=None):
    g = Grid(n_dns, backend=make_backend(n_dns, threads=1))
    eq = Equation(g, Parameters(re=1e3, mu=0.1), dealias=dealias, jacobian=jacobian)
    return FDNSSampler(eq, n_les, make_filter(filter_name, width or default_width(L, n_les)))


@pytest.mark.parametrize("dealias,jacobian", [("2/3", "advective"), ("2/3", "average"), ("3/2", "advective")])
def test_pi_vanishes_for_a_field_well_inside_the_sharp_pass_band(dealias, jacobian):
    n_dns, n_les = 64, 32
    s = _sampler(n_dns, n_les, "sharp", dealias, jacobian)
    kc = s.filter.cutoff  # = n_les / 4 = 8
    w_hat = _band_limited_omega_hat(n_dns, kc / 2 - 0.5)  # |k| < kc/2: J(ψ, ω) has |k| < kc
    out = s(w_hat)
    scale = np.max(np.abs(_jacobian_np(np.fft.irfft2(w_hat / np.maximum(1, _k2(n_dns)), s=(n_dns,) * 2),
                                       np.fft.irfft2(w_hat, s=(n_dns,) * 2))))
    assert scale > 0.1
    assert np.max(np.abs(out["pi"])) < 1e-12 * scale
    # and the filtered fields are the fields themselves, sampled on the LES grid
    w_les = np.fft.irfft2(w_hat, s=(n_dns,) * 2)[::2, ::2]
    assert np.max(np.abs(out["omega"] - w_les)) < 1e-12 * np.max(np.abs(w_les))


def _k2(n):
    kx = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None]
    return kx ** 2 + ky ** 2


def test_pi_of_a_wide_band_field_is_not_zero_with_the_sharp_filter():
    """The same check fails when the field reaches beyond the cut-off (the test can fail)."""
    s = _sampler(64, 32, "sharp")
    out = s(_band_limited_omega_hat(64, 12))
    assert np.max(np.abs(out["pi"])) > 1e-2


@pytest.mark.parametrize("filter_name", ["gaussian", "box"])
def test_pi_matches_a_direct_evaluation_for_a_resolved_field(filter_name):
    """ω with |k| <= 4: every product is resolved on both grids, so Π equals the textbook formula
    evaluated with plain numpy on the LES grid: J(Gψ, Gω) − G J(ψ, ω), sign included."""
    n_dns, n_les = 64, 32
    s = _sampler(n_dns, n_les, filter_name)
    w_hat = _band_limited_omega_hat(n_dns, 4, seed=3)
    out = s(w_hat)
    # reference on the LES grid: the fields are exactly representable there
    w = np.fft.irfft2(w_hat, s=(n_dns,) * 2)[::2, ::2]
    k2 = _k2(n_les)
    kx = np.fft.rfftfreq(n_les, 1.0 / n_les)[None, :]
    ky = np.fft.fftfreq(n_les, 1.0 / n_les)[:, None]
    G = make_filter(filter_name, default_width(L, n_les)).transfer(kx, ky)

    def filt(f):
        return np.fft.irfft2(G * np.fft.rfft2(f), s=f.shape)
    psi = np.fft.irfft2(np.fft.rfft2(w) / np.where(k2 > 0, k2, np.inf), s=w.shape)
    want = _jacobian_np(filt(psi), filt(w)) - filt(_jacobian_np(psi, w))
    assert np.max(np.abs(want)) > 1e-3  # a real test: Π is not trivially zero here
    assert np.max(np.abs(out["pi"] - want)) < 1e-11 * np.max(np.abs(want))
    assert np.max(np.abs(out["psi"] - filt(psi))) < 1e-12 * np.max(np.abs(psi))
    T = enstrophy_transfer(out["pi"], out["omega"])
    assert np.allclose(out["T"], T, rtol=0, atol=1e-12 * np.max(np.abs(T)))
    assert out["backscatter"] == backscatter_fraction(T)
    assert abs(np.mean(out["pi"])) < 1e-13  # Π has zero domain mean


def test_batched_members_equal_one_by_one():
    sampler, w = make_sampler(n_dns=64, n_les=16, members=2, seed=4, threads=1)
    both = sampler(w)
    for m in range(2):
        one = sampler(w[m])
        for k in ("psi", "omega", "pi"):  # to rounding: FFTW_MEASURE may plan a batch differently
            assert np.max(np.abs(both[k][m] - one[k])) <= 1e-13 * np.max(np.abs(one[k]))


@pytest.mark.mpi
def test_slab_decomposed_sampler_matches_serial(comm):
    n_dns, n_les = 64, 16
    par, w = make_sampler(n_dns=n_dns, n_les=n_les, members=2, seed=2, threads=1, comm=comm)
    ser, w_ser = make_sampler(n_dns=n_dns, n_les=n_les, members=2, seed=2, threads=1)
    got = par(w)
    if comm.rank != 0:
        assert got is None
        return
    want = ser(w_ser)
    for k in ("psi", "omega", "pi"):
        scale = np.max(np.abs(want[k]))
        assert np.max(np.abs(got[k] - want[k])) < 1e-12 * scale
