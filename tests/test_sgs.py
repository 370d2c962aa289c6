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


# --------------------------------------------------------------------------------------------
# Π with the exact LES Jacobian: broadband fields up to the LES Nyquist band (docs/science.md §3)


def _exact_jacobian_hat(w_hat, n, m):
    """Ĵ(ψ, ω) of the n² field ``w_hat`` (rfft2 layout, zero Nyquist) computed on an m² grid
    (m >= 2n: no aliasing for a quadratic product) with plain complex numpy FFTs, then cut back to
    the n² layout (every mode |kx|, |ky| < n/2; Nyquist row and column zero)."""
    full = np.zeros((n, n), complex)
    full[:, : n // 2 + 1] = w_hat
    # complete the Hermitian half: f̂(-k) = conj f̂(k)
    kxn = np.arange(1, n // 2)
    full[:, n - kxn] = np.conj(w_hat[(-np.arange(n)) % n][:, kxn])
    idx = np.fft.fftfreq(n, 1 / n).astype(int)
    keep = (np.abs(idx)[:, None] < n // 2) & (np.abs(idx)[None, :] < n // 2)
    k = idx * 1.0
    kx, ky = k[None, :], k[:, None]
    k2 = kx ** 2 + ky ** 2
    psi = np.divide(full, k2, out=np.zeros_like(full), where=k2 > 0) * keep
    sel = np.ix_(idx % m, idx % m)

    def up(f_hat):
        big = np.zeros((m, m), complex)
        big[sel] = f_hat * keep
        return np.real(np.fft.ifft2(big)) * (m / n) ** 2
    j = up(1j * ky * psi) * up(1j * kx * full) - up(1j * kx * psi) * up(1j * ky * full)
    j_hat = np.fft.fft2(j)[sel] * (n / m) ** 2 * keep
    return j_hat[:, : n // 2 + 1]


def _broadband_omega_hat(n, kmax, seed=0):
    """A random field with every mode max(|kx|, |ky|) <= kmax (square band), zero mean."""
    rng = np.random.default_rng(seed)
    w = np.fft.rfft2(rng.standard_normal((n, n)))
    kx = np.arange(n // 2 + 1)[None, :]
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None]
    w[(np.abs(kx) > kmax) | (np.abs(ky) > kmax)] = 0
    w[0, 0] = 0
    return np.fft.rfft2(np.fft.irfft2(w, s=(n, n)))


@pytest.mark.parametrize("dealias", ["2/3", "3/2"])
def test_pi_equals_the_exact_product_of_the_les_fields_up_to_the_les_nyquist_band(dealias):
    """Π = J(ψ̄, ω̄) − bar(J(ψ, ω)) with J(ψ̄, ω̄) the exact product of the LES fields: the
    reference forms both Jacobians on grids 4× finer than their own (plain complex FFTs), for a
    DNS field whose filtered LES fields fill the LES band up to Nyquist. A 2/3-truncated LES
    Jacobian differs from it in every mode with (n_les−1)/3 < max(|kx|, |ky|) < n_les/2."""
    n_dns, n_les = 96, 24
    s = _sampler(n_dns, n_les, "gaussian", dealias=dealias)
    w_hat = _broadband_omega_hat(n_dns, 31, seed=5)  # inside the DNS's 2/3 box: J(ψ, ω) is that rule's
    out = s(w_hat)
    # bar(J(ψ, ω)): the DNS Jacobian, exact then cut to what the DNS's rule keeps
    j_dns = _exact_jacobian_hat(w_hat, n_dns, 4 * n_dns)
    kxd = np.arange(n_dns // 2 + 1)[None, :]
    kyd = np.abs(np.fft.fftfreq(n_dns, 1 / n_dns))[:, None]
    if dealias == "2/3":
        j_dns = j_dns * ((kxd <= (n_dns - 1) // 3) & (kyd <= (n_dns - 1) // 3))
    cg = s.cg
    kx, ky = np.arange(n_les // 2 + 1)[None, :] * 1.0, np.fft.fftfreq(n_les, 1 / n_les)[:, None]
    G = s.filter.transfer(kx, ky)
    j_bar = cg(j_dns) * G
    w_bar = cg(w_hat) * G
    assert np.abs(w_bar[:, n_les // 2 - 1]).max() > 1e-3 * np.abs(w_bar).max()  # content up to Nyquist
    j_of_bar = _exact_jacobian_hat(w_bar, n_les, 4 * n_les)
    want = np.fft.irfft2(j_of_bar - j_bar, s=(n_les, n_les))
    scale = np.abs(want).max()
    assert np.abs(out["pi"] - want).max() < 1e-10 * scale
    # the Nyquist row and column of ψ̄, ω̄ and Π are zero
    for name in ("psi", "omega", "pi"):
        f_hat = np.fft.rfft2(out[name])
        assert np.abs(f_hat[n_les // 2, :]).max() < 1e-12 * np.abs(f_hat).max()
        assert np.abs(f_hat[:, n_les // 2]).max() < 1e-12 * np.abs(f_hat).max()
    # and the band above the old 2/3 cut carries a real share of Π's variance (the test can see it)
    p_hat = np.fft.rfft2(out["pi"])
    kc = (n_les - 1) // 3
    high = (np.abs(kx) > kc) | (np.abs(ky) > kc)
    assert np.sum(np.abs(p_hat[high]) ** 2) > 0.05 * np.sum(np.abs(p_hat) ** 2)


@pytest.mark.parametrize("dealias", ["2/3", "3/2", "none"])
@pytest.mark.parametrize("stepper_beta", [0.0, 7.0])
def test_les_rhs_plus_true_pi_equals_the_filtered_dns_rhs(dealias, stepper_beta):
    """The whole LES, as ``turbtl les`` builds it (suite.les.build_les with a closure term of
    suite.online), driven by the true Π of the sampler on a filtered DNS state, has the right-hand
    side of the filtered and truncated DNS in every LES mode but Nyquist (forcing filtered the
    same way), to 1e-10 relative, whatever the DNS's own dealiasing rule."""
    from solver import make_forcing
    from suite.les import LESSetup, build_les
    from suite.online import ClosureTerm

    n_dns, n_les = 96, 24
    params = Parameters(re=500.0, mu=0.1, beta=stepper_beta)
    g = Grid(n_dns, backend=make_backend(n_dns, threads=1))
    eq = Equation(g, params, forcing=make_forcing(g, "cos-xy", kf=4), dealias=dealias)
    filt = make_filter("gaussian", default_width(L, n_les))
    sampler = FDNSSampler(eq, n_les, filt)
    w_hat = _broadband_omega_hat(n_dns, 31, seed=9) * 30
    true = sampler(w_hat)

    class TruePi(ClosureTerm):
        name = "true"

        def pi(self, omega_hat):
            return true["pi"]

    setup = LESSetup(n=n_les, L=L, re=params.re, mu=params.mu, beta=params.beta, hyperviscosity=0.0,
                     hyper_order=2, forcing="cos-xy", kf=4.0, dt=1e-3, stepper="ab2cn", filter="gaussian",
                     delta=filt.width, sample_interval=1e-3)
    grid, les_eq, _, _ = build_les(setup, make_backend(n_les, threads=1), TruePi)
    w_bar_hat = np.fft.rfft2(true["omega"])
    lhs = np.asarray(les_eq.rhs(w_bar_hat, 0.0))
    kx, ky = grid.host.kx, grid.host.ky
    want = sampler.cg(np.asarray(eq.rhs(w_hat, 0.0))) * filt.transfer(kx, ky)
    below = grid.host.nyquist_free > 0
    scale = np.abs(want[below]).max()
    assert np.abs(lhs - want)[below].max() < 1e-10 * scale
    # the modes above the old 2/3 cut carry a real part of the tendency
    assert np.abs(want * (1 - grid.host.dealias) * below).max() > 0.05 * scale
