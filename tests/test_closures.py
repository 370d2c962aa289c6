"""Physics closures: signs, scalings, and the dynamic coefficient against an independent calculation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from solver import closures as C

L = 2 * np.pi
N = 32
DELTA = 2 * L / N


def _field(seed=0, n=N, batch=()):
    """A smooth random periodic vorticity with its streamfunction (∇²ψ = −ω)."""
    rng = np.random.default_rng(seed)
    k1 = np.fft.fftfreq(n, 1 / n)
    k2 = k1[None, :] ** 2 + k1[:, None] ** 2
    amp = np.sqrt(k2) * np.exp(-k2 / 36)
    w_hat = amp * np.exp(2j * np.pi * rng.random(batch + (n, n)))
    omega = np.real(np.fft.ifft2(w_hat)) * n
    psi = np.real(np.fft.ifft2(np.fft.fft2(omega) / np.where(k2 > 0, k2, np.inf)))
    return psi, omega


def test_eddy_viscosity_models_only_drain_enstrophy():
    psi, omega = _field(1, batch=(2,))
    for name in C.MODELS:
        pi = C.predict(name, psi, omega, L, DELTA)
        assert pi.shape == omega.shape
        if name.startswith("d"):  # a random field may give c = 0 (no SGS drain): use the side with c > 0
            c = C.dynamic_coefficient(name[1:], psi, omega, L, DELTA, clip=False)
            pi = C.predict(name, psi * np.sign(c)[:, None, None], omega, L, DELTA)
        assert ((omega * pi).mean(axis=(-2, -1)) < 0).all(), name
        assert ((pi * C.laplacian(omega, L)).mean(axis=(-2, -1)) > 0).all(), name


def test_static_models_scale_with_their_constants_and_match_direct_formulas():
    psi, omega = _field(2)
    s1, s2 = C.smagorinsky(psi, omega, L, DELTA, 0.1), C.smagorinsky(psi, omega, L, DELTA, 0.2)
    assert np.allclose(s2, 4 * s1, rtol=1e-12, atol=1e-14)
    l1, l2 = C.leith(psi, omega, L, DELTA, 0.1), C.leith(psi, omega, L, DELTA, 0.2)
    assert np.allclose(l2, 8 * l1, rtol=1e-12, atol=1e-14)
    # |S| from velocity gradients: S = [[u_x, (u_y+v_x)/2], [.., v_y]], |S| = sqrt(2 S_ij S_ij)
    d = _Deriv(N)
    u, v = d.y(psi), -d.x(psi)
    s11, s22, s12 = d.x(u), d.y(v), 0.5 * (d.y(u) + d.x(v))
    s_abs = np.sqrt(2 * (s11 ** 2 + s22 ** 2 + 2 * s12 ** 2))
    assert np.allclose(C.strain_rate(psi, L), s_abs, atol=1e-10)
    nu = (0.1 * DELTA) ** 2 * s_abs
    assert np.allclose(s1, d.nyquist_free(d.x(nu * d.x(omega)) + d.y(nu * d.y(omega))), atol=1e-10)


class _Deriv:
    """Derivatives with the complex full FFT (independent of the rfft2 code under test)."""

    def __init__(self, n):
        k = np.fft.fftfreq(n, 1 / n) * 2 * np.pi / L
        k[n // 2] = 0.0  # no derivative of the Nyquist mode
        self.kx, self.ky = np.meshgrid(k, k, indexing="xy")

    def x(self, f):
        return np.real(np.fft.ifft2(1j * self.kx * np.fft.fft2(f)))

    def y(self, f):
        return np.real(np.fft.ifft2(1j * self.ky * np.fft.fft2(f)))

    @staticmethod
    def exact(a, b):
        """a·b truncated to the n² grid: complex FFTs zero-padded to a 2n² grid (no aliasing)."""
        n = a.shape[-1]
        idx = np.fft.fftfreq(n, 1 / n).astype(int)
        keep = (np.abs(idx)[:, None] < n // 2) & (np.abs(idx)[None, :] < n // 2)
        rows = np.ix_(idx % (2 * n), idx % (2 * n))

        def pad(f):
            out = np.zeros((2 * n, 2 * n), complex)
            out[rows] = np.fft.fft2(f) * keep
            return np.fft.ifft2(out) * 4
        p_hat = np.fft.fft2(np.real(pad(a) * pad(b)))
        return np.real(np.fft.ifft2(p_hat[rows] / 4 * keep))

    @staticmethod
    def nyquist_free(f):
        """f without its Nyquist row and column (the data convention of Π)."""
        f_hat = np.fft.fft2(f)
        f_hat[f.shape[-2] // 2, :] = 0
        f_hat[:, f.shape[-1] // 2] = 0
        return np.real(np.fft.ifft2(f_hat))

    def test_filter(self, f, width):
        """Gaussian test filter as a real-space periodic convolution (scipy.ndimage, mode='wrap')."""
        k = np.fft.fftfreq(N, 1 / N) * 2 * np.pi / L
        kx, ky = np.meshgrid(k, k, indexing="xy")
        g_hat = np.exp(-(kx ** 2 + ky ** 2) * width ** 2 / 24)
        kernel = np.fft.fftshift(np.real(np.fft.ifft2(g_hat)))
        return ndimage.convolve(f, kernel, mode="wrap", origin=0)


@pytest.mark.parametrize("kind", ["smag", "leith"])
def test_dynamic_coefficient_matches_an_independent_calculation(kind):
    psi, omega = _field(3)
    d = _Deriv(N)
    dh = 2 * DELTA
    tf = lambda f: d.test_filter(f, dh)  # noqa: E731
    # sanity of the independent test filter: it is the spectral Gaussian
    assert np.allclose(tf(omega), C.gaussian_filter(omega, L, dh), atol=1e-10)

    def flux_model(p, w, width):
        if kind == "smag":
            u, v = d.y(p), -d.x(p)
            f = np.sqrt((d.x(u) - d.y(v)) ** 2 + (d.y(u) + d.x(v)) ** 2)
            return width ** 2 * f * d.x(w), width ** 2 * f * d.y(w)
        f = np.hypot(d.x(w), d.y(w))
        return width ** 3 * f * d.x(w), width ** 3 * f * d.y(w)

    u, v = d.y(psi), -d.x(psi)
    pt, wt = tf(psi), tf(omega)
    # resolved fluxes as exact products truncated to the grid (the definition of Π's J(ψ̄, ω̄))
    Lx, Ly = tf(d.exact(u, omega)) - d.exact(d.y(pt), wt), tf(d.exact(v, omega)) + d.exact(d.x(pt), wt)
    ax, ay = flux_model(psi, omega, DELTA)
    bx, by = flux_model(pt, wt, dh)
    Mx, My = tf(ax) - bx, tf(ay) - by
    M = np.concatenate([Mx.ravel(), My.ravel()])
    Lv = np.concatenate([Lx.ravel(), Ly.ravel()])
    c_raw, *_ = np.linalg.lstsq(M[:, None], Lv, rcond=None)  # least squares L ≈ c M
    c_raw = float(c_raw[0])
    assert float(C.dynamic_coefficient(kind, psi, omega, L, DELTA, clip=False)) == pytest.approx(c_raw, rel=1e-8)
    if c_raw < 0:  # L is odd in psi, M even (smag) or independent of psi (leith): flip to c > 0
        psi, c_raw = -psi, -c_raw
    c_ref = c_raw
    c = C.dynamic_coefficient(kind, psi, omega, L, DELTA)
    assert c.shape == ()
    assert c_ref > 0
    assert float(c) == pytest.approx(c_ref, rel=1e-8)
    # per-snapshot in a batch, and the dynamic Π uses it
    pb, wb = np.stack([psi, 2 * psi]), np.stack([omega, 2 * omega])
    pi, cb = C.predict("dsmag" if kind == "smag" else "dleith", pb, wb, L, DELTA), \
        C.dynamic_coefficient(kind, pb, wb, L, DELTA)
    assert cb.shape == (2,) and cb[0] == pytest.approx(c_ref, rel=1e-8)
    static = C.smagorinsky(psi, omega, L, DELTA, np.sqrt(c_ref)) if kind == "smag" else \
        C.leith(psi, omega, L, DELTA, np.cbrt(c_ref))
    assert np.allclose(pi[0], static, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("kind", ["smag", "leith"])
def test_dynamic_coefficient_clipped_at_zero(kind):
    psi, omega = _field(4)
    # L_i is odd in psi (through u), M_i even (|S|) or independent of psi (|grad omega|):
    # flipping psi flips the raw coefficient; the clipped one is max(raw, 0)
    raw = C.dynamic_coefficient(kind, psi, omega, L, DELTA, clip=False)
    flipped = C.dynamic_coefficient(kind, -psi, omega, L, DELTA, clip=False)
    assert raw != 0 and flipped == pytest.approx(-raw, rel=1e-10)
    assert C.dynamic_coefficient(kind, psi, omega, L, DELTA) == max(raw, 0.0)
    assert C.dynamic_coefficient(kind, -psi, omega, L, DELTA) == max(-raw, 0.0)
