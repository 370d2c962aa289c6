"""Kernel spectra, the filter classifier, Gabor fits, change metrics, data bands and the framework."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import change, classify, framework, kernels, spectra
from analysis.radial import half_plane


@pytest.mark.parametrize("method", kernels.METHODS)
@pytest.mark.parametrize("k,n", [(5, 128), (3, 16), (5, 32)])
def test_batched_spectra_equal_numpy_zero_padded_fft(method, k, n):
    w = np.random.default_rng(k * n).standard_normal((3, 70, k, k))   # 210 kernels: several chunks
    ref = np.fft.rfft2(w, s=(n, n))
    got = kernels.kernel_spectra(w, n, method=method, chunk=64)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 1e-12 * max(1.0, np.max(np.abs(ref)))
    mag = kernels.kernel_spectra(w, n, method=method, magnitude=True)
    assert np.max(np.abs(mag - np.abs(ref))) <= 1e-12


def test_bad_kernel_shapes_are_refused():
    with pytest.raises(ValueError, match="exceeds"):
        kernels.kernel_spectra(np.zeros((7, 7)), 4)
    with pytest.raises(ValueError, match="method"):
        kernels.kernel_spectra(np.zeros((3, 3)), 8, method="fftw")


def test_shells_count_modes_and_parseval():
    g = half_plane(32)
    u = np.random.default_rng(0).standard_normal((32, 32))
    p = np.abs(np.fft.rfft2(u)) ** 2
    # full-plane sum over all modes (disk and corners) = n² Σ u²
    assert np.isclose((p * g.weight).sum(), 32 ** 2 * (u ** 2).sum())
    k1 = np.fft.fftfreq(32, 1 / 32)
    shell = np.rint(np.hypot(k1[:, None], k1[None, :])).astype(int)     # brute force over the full plane
    np.testing.assert_array_equal(g.shell_counts, np.bincount(shell.ravel())[:17])
    np.testing.assert_allclose(g.shell_sum(p), np.bincount(shell.ravel(), np.abs(np.fft.fft2(u)).ravel() ** 2)[:17])


@pytest.mark.parametrize("noise", [0.05, 0.1])
def test_classifier_accuracy_on_labelled_noisy_kernels(noise):
    r = classify.validate(n_per_class=60, k=5, n=128, noise=noise, seed=11)
    assert r["accuracy"] >= 0.95, r["confusion"]
    # every class is recognised on its own, not just on average
    conf = r["confusion"]
    assert np.all(np.diag(conf) / conf.sum(axis=1) >= 0.9), conf


def test_textbook_filters_get_their_classes():
    n = 64
    gauss = np.exp(-((np.arange(5) - 2.0)[:, None] ** 2 + (np.arange(5) - 2.0)[None, :] ** 2) / 2)
    lap = np.zeros((5, 5))
    lap[2, 2], lap[1, 2], lap[3, 2], lap[2, 1], lap[2, 3] = -4, 1, 1, 1, 1
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    sobel = np.zeros((5, 5))
    sobel[1:4, 1:4] = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]      # d/dx: wavevector along x
    cls, f = classify.classify_kernels(np.stack([gauss, lap, delta, sobel]), n)
    assert [classify.CLASSES[c] for c in cls] == ["low-pass", "high-pass", "other", "oriented"]
    assert min(f["orientation"][3], 180 - f["orientation"][3]) < 1.0


def test_gabor_fit_recovers_wavevector_and_orientation():
    rng = np.random.default_rng(5)
    n = 128
    for _ in range(6):
        k0, th, sig = rng.uniform(28, 45), rng.uniform(0, 180), rng.uniform(1.0, 1.4)
        w = classify.gabor_kernel(5, k0, th, sig, phase=rng.uniform(0, 2 * np.pi), n=n)
        w += 0.02 * np.sqrt(np.mean(w * w)) * rng.standard_normal(w.shape)
        fit = classify.fit_gabor(w, n)
        assert abs(fit["k0"] - k0) < 0.03 * k0
        d = abs(fit["orientation"] - th) % 180
        assert min(d, 180 - d) < 2.0
        assert fit["rel_residual"] < 0.05


def test_change_metrics_satisfy_parseval_bound_with_equality_for_rescaling():
    rng = np.random.default_rng(2)
    n = 32
    wb = rng.standard_normal((40, 5, 5))
    wt = wb + 0.3 * rng.standard_normal(wb.shape)
    mb, mt = (kernels.kernel_spectra(w, n, magnitude=True) for w in (wb, wt))
    dw, ds = change.kernel_change(wb, wt, mb, mt)
    assert np.all(ds <= n * dw * (1 + 1e-12)) and np.all(ds > 0)
    ws = 1.7 * wb          # a positive rescaling: |Ŵ| changes by exactly 0.7 |Ŵ_b|
    dw2, ds2 = change.kernel_change(wb, ws, mb, kernels.kernel_spectra(ws, n, magnitude=True))
    np.testing.assert_allclose(ds2, n * dw2, rtol=1e-12)
    thr, above = change.above_percentile(ds, 90.0)
    assert above.sum() == 4 and np.all(ds[above] > thr)


def test_transitions_and_fractions_count_every_kernel():
    layer = np.array([1, 1, 1, 2, 2])
    before, after = np.array([0, 0, 1, 2, 3]), np.array([0, 2, 1, 2, 2])
    t = change.transitions(before, after, layer, 2)
    assert t.sum() == 5 and t[0, 0, 2] == 1 and t[1, 3, 2] == 1
    f = change.class_fractions(after, layer, 2)
    np.testing.assert_allclose(f.sum(axis=1), 1.0)
    assert f[1, 2] == 1.0


def test_difference_band_brackets_the_largest_difference():
    k = np.arange(33)
    eb = np.maximum(k, 1.0) ** -3.0
    et = eb * (1 + 99 * np.exp(-0.5 * ((k - 12) / 2.0) ** 2))
    lo, hi, kmax = spectra.difference_bands(spectra.log_difference(eb, et), k)
    assert kmax == 12 and lo < 12 < hi and hi - lo <= 8


# the layer recommendation on a constructed case with a known answer: tests/test_framework.py


def test_measured_ranking_and_comparison():
    rows = [dict(kind="tl", n_layers_trained=1, first_trainable=l, cc=c, fraction=0.1, seed=0)
            for l, c in ((1, 0.9), (2, 0.7), (3, 0.8))]
    rows += [dict(kind="base", n_layers_trained=0, first_trainable=0, cc=0.1, fraction=0.1, seed=0)]
    cc = framework.measured_ranking(pd.DataFrame(rows), 3)
    np.testing.assert_allclose(cc, [0.9, 0.7, 0.8])
    same = framework.compare(np.array([3.0, 1.0, 2.0]), cc)
    assert same["spearman_rho"] == pytest.approx(1.0) and same["disagreements"] == []
    assert same["recommended"] == same["measured_best"] == 1
    swapped = framework.compare(np.array([1.0, 3.0, 2.0]), cc)
    assert swapped["recommended"] == 2 and swapped["measured_best"] == 1
    assert {d["layer"] for d in swapped["disagreements"]} == {1, 2}


# -- per-kernel statistics without n² spectra, batched Gabor fits (issue 21) ---------------------


@pytest.mark.parametrize("k,n", [(5, 128), (3, 16), (4, 32), (1, 8)])
def test_symmetric_dft_and_autocorrelation_equal_the_zero_padded_fft(k, n):
    from analysis.kernel_stats import sym_dft
    w = np.random.default_rng(k + n).standard_normal((70, k, k))
    S, g = sym_dft(k, n), half_plane(n)
    ref = np.abs(np.fft.rfft2(w, s=(n, n))).reshape(70, -1)
    X = S.magnitudes(w)
    np.testing.assert_allclose(X[S.valid], ref[:, S.hp_index[S.valid]].T, atol=1e-12)
    np.testing.assert_allclose(S.shell_mean(X), g.shell_mean(ref.reshape(70, n, -1)), atol=1e-12)
    p = ref ** 2
    pf = S.power_functionals(w)
    scale = p.sum(axis=1).max()
    for key, vec in (("c", g.cos2), ("s", g.sin2), ("p", g.wdisk0)):
        np.testing.assert_allclose(pf[key], p @ vec, atol=1e-12 * scale)
    np.testing.assert_allclose(pf["shell_mean"], g.shell_mean(p.reshape(70, n, -1)), atol=1e-12 * scale)
    kx, ky = S.peak(X.copy())
    i = np.argmax(np.where(g.in_disk.ravel()[None], ref, 0.0), axis=1)
    np.testing.assert_array_equal(kx, g.kx.ravel()[i])
    np.testing.assert_array_equal(ky, g.ky.ravel()[i])


def test_layer_change_equals_the_spectra_of_the_whole_layer():
    from analysis.aggregate import layer_change
    rng = np.random.default_rng(4)
    n = 32
    wb = rng.standard_normal((300, 5, 5))
    wt = wb + 0.1 * rng.standard_normal(wb.shape)
    got = layer_change(wb, wt, n, 99.0, fit=False)
    mb, mt = (kernels.kernel_spectra(w, n, magnitude=True) for w in (wb, wt))
    f = classify.spectral_features(mt)
    np.testing.assert_array_equal(got["cls"], classify.classify_features(f))
    for key in classify.FEATURES:
        np.testing.assert_allclose(got[key], f[key].astype(np.float32), rtol=1e-6, atol=1e-6)
    dw, ds = change.kernel_change(wb, wt, mb, mt)
    np.testing.assert_allclose(got["dW"], dw, rtol=1e-12)
    np.testing.assert_allclose(got["dspec"], ds, rtol=1e-10)
    ch = framework.change_profiles(mb, mt, ds, 99.0)
    np.testing.assert_array_equal(got["above"], ch["above"])
    np.testing.assert_allclose(got["top"], ch["top"], rtol=1e-10)


def test_batched_gabor_fits_do_not_depend_on_the_batch():
    from analysis.gabor import fit_gabor_batch
    w, lab = classify.synthetic_kernels(12, 5, 128, noise=0.05, seed=3)
    w = w[lab == classify.CLASSES.index("oriented")]
    together = fit_gabor_batch(w, 128)
    for i in range(len(w)):
        alone = classify.fit_gabor(w[i], 128)
        for key in ("k0", "orientation", "sigma", "rel_residual"):
            assert alone[key] == pytest.approx(together[key][i], rel=1e-9, abs=1e-9)
    assert np.all(together["rel_residual"] < 0.1)
