"""Filters and coarse-graining (solver/filters.py) against independent physical-space facts."""
import numpy as np
import pytest

from solver.filters import CoarseGrain, default_width, make_filter, wavenumbers

L = 2 * np.pi


def _spectral_filter(f, u):
    n = u.shape[-1]
    kx, ky = wavenumbers(n, L)
    return np.fft.irfft2(f.apply(np.fft.rfft2(u), kx, ky), s=u.shape)


def _mode(n, kx, ky, phase=0.3):
    x = np.arange(n) * L / n
    X, Y = np.meshgrid(x, x, indexing="xy")  # arrays are (y, x)
    return np.cos(kx * X + ky * Y + phase)


@pytest.mark.parametrize("kx,ky", [(1, 0), (3, 2), (0, 5), (6, -4), (9, 7)])
def test_gaussian_matches_physical_space_convolution(kx, ky):
    """Filtering spectrally == convolving with the periodic Gaussian kernel of variance Δ²/12."""
    n, n_les = 64, 16
    delta = default_width(L, n_les)
    f = make_filter("gaussian", delta)
    u = _mode(n, kx, ky)
    got = _spectral_filter(f, u)
    # periodised 1D kernel sampled on the grid, variance Δ²/12 (separable in x and y)
    h = L / n
    s = np.arange(n) * h
    s = np.minimum(s, L - s)
    sig2 = delta ** 2 / 12
    g1 = sum(np.exp(-((s + m * L) ** 2) / (2 * sig2)) for m in (-2, -1, 0, 1, 2))
    g1 /= g1.sum()
    # circular convolution in y and x with the 1D kernel (direct sums, no FFT)
    idx = (np.arange(n)[:, None] - np.arange(n)[None, :]) % n
    K = g1[idx]
    want = K @ u @ K.T
    assert np.max(np.abs(got - want)) < 1e-10
    # and the amplitude is the transfer function exp(-k² Δ² / 24)
    amp = np.exp(-(kx ** 2 + ky ** 2) * delta ** 2 / 24)
    assert np.max(np.abs(got - amp * u)) < 1e-12


def test_gaussian_kernel_second_moment_is_delta2_over_12():
    n = 256
    delta = 0.4
    f = make_filter("gaussian", delta)
    kx, ky = wavenumbers(n, L)
    kernel = np.fft.irfft2(f.transfer(kx, ky) * np.ones((n, n // 2 + 1)), s=(n, n)) * 1.0
    x = np.arange(n) * L / n
    x = np.where(x > L / 2, x - L, x)
    w = kernel.sum(axis=0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert (w * x ** 2).sum() / w.sum() == pytest.approx(delta ** 2 / 12, rel=1e-8)


@pytest.mark.parametrize("kx,ky", [(1, 0), (2, 3), (5, -1)])
def test_box_filter_is_the_top_hat_average(kx, ky):
    """Box-filtered mode == the average over a square of side Δ, by fine quadrature."""
    n = 32
    delta = 0.7
    f = make_filter("box", delta)
    u = _mode(n, kx, ky)
    got = _spectral_filter(f, u)
    x = np.arange(n) * L / n
    X, Y = np.meshgrid(x, x, indexing="xy")
    q = (np.arange(60) + 0.5) / 60 * delta - delta / 2  # midpoint rule on [-Δ/2, Δ/2]
    avg = np.zeros_like(u)
    for sy in q:
        avg += np.mean([np.cos(kx * (X + sx) + ky * (Y + sy) + 0.3) for sx in q], axis=0)
    avg /= len(q)
    assert np.max(np.abs(got - avg)) < 1e-3
    # exact analytic form of the top-hat average
    exact = np.sinc(kx * delta / (2 * np.pi)) * np.sinc(ky * delta / (2 * np.pi)) * u
    assert np.max(np.abs(got - exact)) < 1e-12


def test_sharp_filter_passes_inside_and_removes_outside_the_cutoff():
    n, n_les = 64, 32
    f = make_filter("sharp", default_width(L, n_les))
    assert f.cutoff == pytest.approx(n_les / 4)
    inside, outside = _mode(n, 3, 4, 0.1), _mode(n, 7, 5, 0.2)  # |k| = 5 < 8 < |k| = 8.6
    got = _spectral_filter(f, inside + outside)
    assert np.max(np.abs(got - inside)) < 1e-12


def test_every_filter_preserves_the_mean_and_is_even():
    kx = np.linspace(-20, 20, 41)[:, None]
    ky = np.linspace(-20, 20, 41)[None, :]
    for name in ("gaussian", "box", "sharp"):
        f = make_filter(name, 0.5)
        g = f.transfer(kx, ky)
        assert g[20, 20] == 1.0
        assert np.array_equal(g, f.transfer(-kx, ky)) and np.array_equal(g, f.transfer(kx, -ky))
        assert np.all(np.abs(g) <= 1.0)


def test_unknown_filter_and_bad_width_are_rejected():
    with pytest.raises(ValueError, match="accepted are gaussian, box, sharp"):
        make_filter("tophat", 1.0)
    with pytest.raises(ValueError, match="positive"):
        make_filter("gaussian", 0.0)


def _band_limited(n, kmax, rng, batch=()):
    """A random real field with modes |kx|, |ky| <= kmax, evaluated exactly on an n² grid."""
    x = np.arange(n) * L / n
    X, Y = np.meshgrid(x, x, indexing="xy")
    out = np.zeros(batch + (n, n))
    coeffs = rng.standard_normal(batch + (2 * kmax + 1, 2 * kmax + 1, 2))
    for i, ky in enumerate(range(-kmax, kmax + 1)):
        for j, kx in enumerate(range(-kmax, kmax + 1)):
            a, b = coeffs[..., i, j, 0, None, None], coeffs[..., i, j, 1, None, None]
            out += a * np.cos(kx * X + ky * Y) + b * np.sin(kx * X + ky * Y)
    return out


@pytest.mark.parametrize("n_dns,n_les", [(64, 16), (48, 16), (32, 32), (128, 32)])
def test_coarse_graining_of_a_resolved_field_is_exact(n_dns, n_les):
    rng = np.random.default_rng(n_dns + n_les)
    kmax = n_les // 2 - 1
    fine = _band_limited(n_dns, kmax, rng, batch=(2,))
    rng = np.random.default_rng(n_dns + n_les)
    coarse = _band_limited(n_les, kmax, rng, batch=(2,))
    cg = CoarseGrain(n_dns, n_les)
    got = np.fft.irfft2(cg(np.fft.rfft2(fine)), s=(n_les, n_les))
    assert np.max(np.abs(got - coarse)) < 1e-11 * np.max(np.abs(coarse))


def test_coarse_graining_drops_unresolved_modes_and_the_les_nyquist():
    n_dns, n_les = 64, 16
    cg = CoarseGrain(n_dns, n_les)
    u = _mode(n_dns, 8, 0) + _mode(n_dns, 0, 8) + _mode(n_dns, 11, -3)  # none resolved on 16²
    assert np.max(np.abs(cg(np.fft.rfft2(u)))) < 1e-12


def test_local_pieces_assemble_to_the_serial_truncation():
    n_dns, n_les = 64, 16
    rng = np.random.default_rng(0)
    u_hat = np.fft.rfft2(rng.standard_normal((3, n_dns, n_dns)))
    cg = CoarseGrain(n_dns, n_les)
    want = cg(u_hat)
    ncols = n_dns // 2 + 1
    for nranks in (1, 2, 3, 4, 5):
        bounds = np.linspace(0, ncols, nranks + 1).round().astype(int)
        pieces = [cg.local(u_hat[..., a:b], slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        assert np.array_equal(cg.assemble(pieces, (3,)), want)


def test_pad_inverts_coarse_graining_on_les_spectra():
    n_dns, n_les = 64, 16
    rng = np.random.default_rng(1)
    cg = CoarseGrain(n_dns, n_les)
    les_hat = cg(np.fft.rfft2(rng.standard_normal((n_dns, n_dns))))
    assert np.allclose(cg(cg.pad(les_hat)), les_hat, rtol=0, atol=1e-12)
