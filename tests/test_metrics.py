"""Metrics on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from suite.metrics import cc, cc_masked, enstrophy_transfer, evaluate, rel_l2, spectrum

L = 2 * np.pi


def _grid(n):
    x = np.arange(n) * L / n
    return np.meshgrid(x, x, indexing="xy")


def test_cc_of_affine_maps_and_orthogonal_modes():
    x, y = _grid(32)
    f = np.sin(x) * np.cos(2 * y)
    assert cc(3 * f + 1, f) == pytest.approx(1.0, abs=1e-12)
    assert cc(-f, f) == pytest.approx(-1.0, abs=1e-12)
    assert cc(np.cos(3 * x), f) == pytest.approx(0.0, abs=1e-12)
    # a + b with orthogonal equal-variance parts: CC = 1/sqrt(2)
    assert cc(f + np.cos(3 * x) * np.sin(y) * 2, f) == pytest.approx(1 / np.sqrt(5), abs=1e-12)
    # torch input, per-snapshot average
    both = np.stack([f, f])
    assert cc(torch.tensor(np.stack([f, -f])), both) == pytest.approx(0.0, abs=1e-12)


def test_rel_l2():
    x, y = _grid(16)
    f = np.sin(x + y)
    assert rel_l2(1.5 * f, f) == pytest.approx(0.5, rel=1e-12)
    assert rel_l2(f, f) == 0.0


def test_masked_cc_and_transfer_sign():
    x, y = _grid(32)
    omega = np.sin(x)            # laplacian = -sin x
    pi = np.sin(x)               # T = -sin^2 x < 0 everywhere: backscatter
    assert np.allclose(enstrophy_transfer(pi, omega, L), -np.sin(x) ** 2, atol=1e-12)
    omega = np.sin(x + 0.05)     # no grid point on a zero of omega
    pi = -omega                  # pure diffusion (nu * laplacian)
    t = enstrophy_transfer(pi, omega, L)
    assert (t > 0).all()
    # a prediction exact on one half, anti-correlated on the other
    pred = np.where(x < np.pi, pi, -pi)  # noqa: E501
    assert cc_masked(pred, pi, x < np.pi) == pytest.approx(1.0, abs=1e-12)
    assert cc_masked(pred, pi, x >= np.pi) == pytest.approx(-1.0, abs=1e-12)
    assert np.isnan(cc_masked(pred, pi, np.zeros_like(x, bool)))
    m = evaluate(pi, pi, omega, L)
    assert m["cc"] == pytest.approx(1.0) and m["cc_diffusion"] == pytest.approx(1.0)
    assert np.isnan(m["cc_backscatter"]) and m["backscatter_fraction"] == 0.0


def test_spectrum_single_modes_and_parseval():
    x, y = _grid(32)
    k, e = spectrum(np.cos(3 * x) + 2 * np.sin(4 * y), L)
    assert k[3] == 3 and len(k) == 17
    assert e[3] == pytest.approx(0.5) and e[4] == pytest.approx(2.0)
    assert e.sum() == pytest.approx(2.5)
    rng = np.random.default_rng(0)
    f = rng.standard_normal((3, 32, 32))
    _, e = spectrum(f, L)
    # shells beyond n/2 hold the corners; the returned part is at most the total
    assert e.sum() <= (f ** 2).mean() + 1e-12
    full = spectrum(f, L)[1].sum()
    assert full > 0.7 * (f ** 2).mean()


def test_variance_fraction_above_the_two_thirds_cut():
    """Two Fourier modes of known amplitude: one inside max(|kx|, |ky|) <= k_c, one outside."""
    from suite.metrics import variance_fraction_above
    n = 32
    x = np.arange(n) * 2 * np.pi / n
    X, Y = np.meshgrid(x, x)
    low, high = 2.0 * np.cos(3 * X + Y), 1.0 * np.sin(4 * X + 12 * Y)  # variances 2 and 0.5
    assert variance_fraction_above(low + high + 7.0, (n - 1) // 3) == pytest.approx(0.5 / 2.5, rel=1e-12)
    assert variance_fraction_above(low, 10) == pytest.approx(0.0, abs=1e-20)
    assert variance_fraction_above(np.stack([high, high]), 10) == pytest.approx(1.0, rel=1e-12)
