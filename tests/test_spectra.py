"""One shell binning (solver/spectra.py) and one mask builder (Grid.mask): every caller agrees."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from solver import Grid, spectra
from solver import diagnostics as D
from solver.sgs import enstrophy_transfer as sgs_transfer


def test_doctest():
    assert doctest.testmod(spectra).failed == 0


def test_shell_edges_and_count():
    # |k| in [s - 1/2, s + 1/2): (1, 1) at 1.414 -> 1, (1, 2) at 2.236 -> 2, (2, 2) at 2.83 -> 3
    assert spectra.shell_index(np.array([0, 1, 1, 2, 3]), np.array([0, 1, 2, 2, 3])).tolist() == [0, 1, 2, 3, 4]
    for n in (8, 12, 64, 100):
        corner = spectra.shell_index(n // 2, n // 2)
        assert corner < spectra.shell_count(n) - 1  # every mode has a shell; the last stays empty
        assert spectra.disk_shells(n) == n // 2 + 1


@pytest.mark.parametrize("n", [16, 24])
def test_parseval_over_all_shells_full_and_half_plane(n):
    """Σ_s S(s) = <f²> (corners kept); the full fft2 plane and the weighted rfft2 half plane give
    the same shells."""
    f = np.random.default_rng(1).standard_normal((2, n, n))
    k1 = np.fft.fftfreq(n, 1.0 / n)
    full = spectra.shell_sum(np.abs(np.fft.fft2(f)) ** 2 / n**4, spectra.shell_index(k1[None, :], k1[:, None]),
                             spectra.shell_count(n))
    kx = np.arange(n // 2 + 1)[None, :]
    half = spectra.shell_sum(np.abs(np.fft.rfft2(f)) ** 2 * spectra.half_plane_weights(kx, n) / n**4,
                             spectra.shell_index(kx, k1[:, None]), spectra.shell_count(n))
    np.testing.assert_allclose(full, half, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(full.sum(axis=-1), (f**2).mean(axis=(-2, -1)), rtol=1e-12)
    assert full[..., spectra.disk_shells(n):].sum() > 0  # the corners hold something


def test_diagnostics_metrics_and_radial_bin_alike():
    from analysis.radial import half_plane
    from suite.metrics import spectrum

    n = 32
    g = Grid(n)
    f = np.random.default_rng(2).standard_normal((3, n, n))
    fh = np.fft.rfft2(f)
    _, diag = D.shell_sum(g, np.abs(fh) ** 2)                       # all shells, corners kept
    k, met = spectrum(f, g.L)                                         # the disk, snapshot mean
    rad = half_plane(n).shell_sum((np.abs(fh) ** 2).mean(axis=0)) / n**4
    disk = spectra.disk_shells(n)
    assert diag.shape == (3, spectra.shell_count(n)) and k.tolist() == list(range(disk))
    np.testing.assert_allclose(diag.mean(axis=0)[:disk], met, rtol=1e-12)
    np.testing.assert_allclose(rad, met, rtol=1e-12)
    np.testing.assert_allclose(diag.sum(axis=-1), (f**2).mean(axis=(-2, -1)), rtol=1e-12)


def test_one_enstrophy_transfer():
    from suite import metrics

    n, L = 16, 2 * math.pi
    rng = np.random.default_rng(3)
    pi, om = rng.standard_normal((2, n, n)), rng.standard_normal((2, n, n))
    assert np.array_equal(metrics.enstrophy_transfer(pi, om, L), sgs_transfer(pi, om, L))


def test_grid_masks_are_the_only_masks():
    from solver import Equation, Parameters

    g = Grid(12)
    h = g.host
    for rule in ("2/3", "3/2", "none"):
        mx, my = g.mask_factors(rule)
        m = g.mask(rule, host=True)
        assert np.array_equal(m, (mx & my) * (h.k2 > 0) * 1.0)
        assert np.array_equal(Equation(g, Parameters(), dealias=rule).mask_host, m)
    assert np.array_equal(g.mask("2/3", host=True), h.dealias * (h.k2 > 0))
    assert np.array_equal(g.mask("3/2", host=True), h.nyquist_free * (h.k2 > 0))
    assert not hasattr(g, "np")  # grid.host, not a dict named like the numpy module


def test_online_closure_mask_is_the_les_equation_mask():
    pytest.importorskip("torch")
    from solver.sgs import les_equation
    from suite.online import PhysicsClosure

    g = Grid(16)
    term = PhysicsClosure(g, "smag", delta=0.5)
    assert np.array_equal(term.mask, les_equation(g).mask)
    assert np.array_equal(term.mask, g.host.nyquist_free * (g.host.k2 > 0))
