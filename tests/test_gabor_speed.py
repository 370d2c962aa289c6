"""The batched Gabor fit's fast paths (analysis/gabor.py): the separable evaluation, the normal
matrix and the vectorized solve against their plain forms, variable projection, the pool, and the
derivative-of-Gaussian kernels on which the fit of all seven parameters used to crawl."""
import numpy as np
import pytest

from analysis import gabor
from analysis.classify import CLASSES, gabor_kernel, synthetic_kernels


def _params(m: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=m), rng.uniform(-0.5, k - 0.5, m), rng.uniform(-0.5, k - 0.5, m),
                            rng.uniform(0.3, 2 * k, m), rng.uniform(-np.pi, np.pi, m), rng.uniform(-np.pi, np.pi, m),
                            rng.normal(0, 5, m)])


def _taps(k: int):
    y, x = np.mgrid[0:k, 0:k]
    return x.ravel().astype(float), y.ravel().astype(float)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_separable_taps_and_normal_matrix_equal_the_plain_model(k):
    m = 40
    p = _params(m, k)
    x, y = _taps(k)
    f, J = gabor.model(p, x, y, jac=True)
    Z, d = gabor._taps(p.T, k)
    gc = Z.real.reshape(k * k, m).T
    np.testing.assert_allclose(p[:, :1] * gc, f, rtol=0, atol=1e-13 * np.abs(p[:, :1]).max())
    r = np.random.default_rng(1).normal(size=(k, k, m))
    G = gabor._gram(p.T, Z.real, Z.imag, d, r)
    Jr = np.concatenate([J, r.reshape(k * k, m).T[..., None]], axis=2)
    ref = Jr.transpose(0, 2, 1) @ Jr
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_vectorized_solve_equals_lapack():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 7, 12))
    A = X @ X.transpose(0, 2, 1) + 1e-3 * np.eye(7)
    b = rng.normal(size=(50, 7))
    U = np.concatenate([A.transpose(1, 2, 0), b.T[:, None]], axis=1)
    np.testing.assert_allclose(gabor._solve(U).T, np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-9, atol=1e-9)


def test_fit_amplitude_and_phase_are_the_best_for_its_geometry():
    w, lab = synthetic_kernels(6, 5, 64, noise=0.3, seed=5)
    w = w[lab == CLASSES.index("oriented")]
    p, cost, _ = gabor.levenberg_marquardt(w, gabor.starts(w, 64))
    x, y = _taps(5)
    f, J = gabor.model(p, x, y, jac=True)
    r = f - w.reshape(len(w), -1)
    np.testing.assert_allclose(0.5 * np.sum(r * r, axis=1), cost, rtol=1e-12)
    # the gradient of the cost in A and φ vanishes: they solve the linear part exactly
    g = np.einsum("mij,mi->mj", J, r)
    scale = np.linalg.norm(J, axis=1) * np.linalg.norm(r, axis=1)[:, None]
    assert np.all(np.abs(g[:, [0, 6]]) <= 1e-9 * scale[:, [0, 6]])


def test_fits_do_not_depend_on_the_pool():
    rng = np.random.default_rng(4)
    ws = [gabor_kernel(5, rng.uniform(4, 20), rng.uniform(0, 180), rng.uniform(0.8, 2), phase=rng.uniform(0, 6.3), n=64)
          + 0.4 * rng.normal(size=(5, 5)) for _ in range(30)]
    ws = np.array(ws)
    a = gabor.fit_gabor_batch(ws, 64)
    b = gabor.fit_gabor_batch(ws, 64, chunk=7)
    assert np.any(a["rel_residual"] > gabor.RETRY)            # some kernels take the restarts
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_derivative_of_gaussian_kernels_converge():
    """An odd Gaussian derivative is the limit k → 0, A → ∞ of the model: the fit of all seven
    parameters crawled along it to the iteration cap (relative residual ~6e-4); projected, the
    geometry converges."""
    y, x = np.mgrid[0:5, 0:5].astype(float)
    ws = []
    for th in (0.0, 0.7, 2.0):
        for s in (0.9, 1.3):
            dx, dy = x - 2.1, y - 1.8
            ws.append((np.cos(th) * dx + np.sin(th) * dy) * np.exp(-(dx ** 2 + dy ** 2) / (2 * s * s)))
    out = gabor.fit_gabor_batch(np.array(ws), 64)
    assert np.all(out["rel_residual"] < 1e-5)
    assert np.all(out["iterations"] < gabor.MAX_ITER / 2)
    assert np.all(out["k0"] < 0.05)


def test_degenerate_inputs():
    out = gabor.fit_gabor_batch(np.zeros((0, 5, 5)), 64)
    assert all(v.shape == (0,) for v in out.values())
    out = gabor.fit_gabor_batch(np.zeros((2, 5, 5)), 64)
    np.testing.assert_array_equal(out["rel_residual"], 0.0)
    assert np.all(np.isfinite(out["k0"])) and np.all(out["iterations"] < gabor.MAX_ITER)
