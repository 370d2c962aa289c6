"""The physics-guided framework (docs/science.md §6.1) on a constructed case with a known answer.

Base and target data are random periodic fields whose spectra are equal except in one band of
shells; a three-layer network has broadband (low-pass) kernels in layers 1 and 3 and band-pass
kernels centred on that band only in layer 2. Step 1 must find the band, step 2 must recommend
layer 2, and step 3 — with the "re-training" done by hand by adding a band-pass component to a few
kernels of layer 2 — must find the change there. The step-4 statistics are checked on tables whose
answer is known.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import framework, spectra
from analysis.classify import gabor_kernel
from analysis.kernels import kernel_spectra

N = 32
BAND = (9, 12)           # shells where the target differs


def _fields(rng, members, snaps, boost):
    """(member, time, n, n) fields with a flat-ish spectrum, times ``boost`` inside BAND."""
    k = np.fft.fftfreq(N, 1.0 / N)
    kk = np.hypot(k[:, None], k[None, :])
    shell = np.rint(kk)
    amp = (1.0 + kk) ** -1.0 * np.where((shell >= BAND[0]) & (shell <= BAND[1]), np.sqrt(boost), 1.0)
    z = rng.standard_normal((members, snaps, N, N)) + 1j * rng.standard_normal((members, snaps, N, N))
    return np.fft.ifft2(z * amp).real


def _gauss(sig):
    c = np.arange(5) - 2.0
    g = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sig * sig))
    return g / g.sum()


def _bandpass(k0, th, rng):
    """An isotropic-ish band-pass 5×5 kernel: sum of Gabors at |k| = k0 in several directions."""
    return sum(gabor_kernel(5, k0, th + a, 1.0, phase=rng.uniform(0, 2 * np.pi), n=N) for a in (0, 60, 120))


def _network(rng, width=6):
    low = lambda o, i: np.stack([[_gauss(rng.uniform(0.9, 1.3)) * rng.choice([-1, 1]) for _ in range(i)]  # noqa: E731
                                 for _ in range(o)])
    mid = np.stack([[_bandpass(np.mean(BAND), rng.uniform(0, 180), rng) for _ in range(width)] for _ in range(width)])
    return [low(width, 2), mid, low(1, width)]


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    base = {v: spectra.field_spectra(_fields(rng, 3, 12, 1.0)) for v in ("x",)}
    target = {v: spectra.field_spectra(_fields(rng, 3, 12, 6.0)) for v in ("x",)}
    r = spectra.bootstrap_ratio(base["x"], target["x"], n_boot=200, seed=0)
    prof = spectra.mismatch_profile({"x": r}, variables=("x",))
    return {"ratio": r, "profile": prof, "weights": _network(rng), "rng": rng}


def test_step1_finds_the_band_and_only_it(case):
    r, prof = case["ratio"], case["profile"]
    k = np.arange(N // 2 + 1)
    inside = (k >= BAND[0]) & (k <= BAND[1])
    assert r["significant"][inside].all()
    assert not r["significant"][~inside].any() or r["significant"][~inside].mean() < 0.15  # 95 % intervals: few false shells
    np.testing.assert_array_equal(np.flatnonzero(prof["in_band"]), np.flatnonzero(inside))
    assert np.all(r["R_lo"][inside] <= r["R"][inside]) and np.all(r["R"][inside] <= r["R_hi"][inside])
    assert abs(np.mean(r["R"][inside]) - np.log10(6.0)) < 0.1


def test_step2_recommends_the_layer_that_passes_the_band(case):
    gains = np.stack([framework.layer_gain(w, N)["G"] for w in case["weights"]])
    sel = framework.selectivity(gains, case["profile"]["M"])
    assert framework.ranking(sel)[0] == 2
    assert sel[1] > 1 > max(sel[0], sel[2])
    boot = framework.selectivity(gains, case["profile"]["M_boot"])
    assert all(framework.ranking(b)[0] == 2 for b in boot)
    # the gain is the shell mean of the peak-normalized |Ŵ|², not a mode-count weighted shell sum
    g = framework.kernel_gain(np.ones((1, 1, 1)), N)[0]          # a delta: flat response
    np.testing.assert_allclose(g, 1.0)


def test_step3_finds_the_hand_made_change_in_the_band(case):
    rng = case["rng"]
    w = case["weights"]
    tl = [x.copy() for x in w]
    # "re-training" by hand: layer 1 is rescaled (a change where its low-pass kernels pass: large
    # scales), layer 2 gets a band-pass component on 3 of its kernels
    tl[0] *= 1.3
    for o, i in ((0, 1), (2, 3), (4, 5)):
        tl[1][o, i] += 0.8 * gabor_kernel(5, np.mean(BAND), rng.uniform(0, 180), 1.0, n=N)
    out = {}
    for li in (0, 1):
        wb, wt = w[li].reshape(-1, 5, 5), tl[li].reshape(-1, 5, 5)
        mb, mt = kernel_spectra(wb, N, magnitude=True), kernel_spectra(wt, N, magnitude=True)
        from analysis.change import kernel_change
        _, ds = kernel_change(wb, wt, mb, mt)
        out[li] = framework.change_profiles(mb, mt, ds, 99.9)
    ch = out[1]
    # threshold per layer of this network: the single largest change is above it, and it is one of the 3
    assert ch["above"].sum() == 1 and np.flatnonzero(ch["above"])[0] in (0 * 6 + 1, 2 * 6 + 3, 4 * 6 + 5)
    share, enrich = framework.band_share(ch["top"], case["profile"]["in_band"])
    # a 5×5 kernel's change is broad in k (about ±3 shells): enriched in the band, peaked inside it
    assert enrich > 1.3 and BAND[0] <= int(np.argmax(ch["top"])) <= BAND[1]
    # the large-scale change of layer 1 lies outside the band
    _, enrich1 = framework.band_share(out[0]["top"], case["profile"]["in_band"])
    assert enrich1 < 0.5 and int(np.argmax(out[0]["top"])) < BAND[0]


def test_agreement_and_null_baselines_on_known_tables():
    L = 4
    score = np.array([0.5, 2.0, 1.0, 0.1])          # ranks layer 2, 3, 1, 4
    cc = np.array([[0.60, 0.80, 0.70, 0.50], [0.61, 0.79, 0.71, 0.52], [0.59, 0.81, 0.69, 0.49]])
    r = framework.test(score, np.tile(score, (5, 1)), cc, np.array([10.0, 100.0, 100.0, 5.0]), n_boot=300)
    v = dict(zip(framework.METHODS, r["value"]))
    lo = dict(zip(framework.METHODS, r["lo"]))
    assert v["framework"].tolist() == [1.0, 1.0, 1.0] and lo["framework"][0] == 1.0
    # random: ρ near 0, top-1 near 1/L, and a wide interval
    assert abs(v["random"][0]) < 0.15 and abs(v["random"][1] - 1 / L) < 0.08
    assert lo["random"][0] < -0.5
    # parameter count ties layers 2 and 3: top-1 counts one half
    assert v["params"][1] == pytest.approx(0.5) and v["params"][2] == pytest.approx(1.0)
    assert v["shallowest"][1] == 0.0
    assert r["n_replicates"] == 3


def test_measured_table_uses_every_seed_and_fraction():
    rows = [dict(kind="tl", n_layers_trained=1, first_trainable=l, cc=c + 0.01 * s, fraction=0.1, seed=s, mask="")
            for s in (0, 1) for l, c in ((1, 0.9), (2, 0.7), (3, 0.8))]
    rows += [dict(kind="base", n_layers_trained=0, first_trainable=0, cc=0.1, fraction=0.1, seed=0, mask="")]
    tab, reps = framework.measured_table(pd.DataFrame(rows), 3)
    assert reps == [(0.1, 0), (0.1, 1)]
    np.testing.assert_allclose(tab, [[0.9, 0.7, 0.8], [0.91, 0.71, 0.81]])
    np.testing.assert_allclose(framework.measured_ranking(pd.DataFrame(rows), 3), [0.905, 0.705, 0.805])
