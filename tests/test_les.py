"""Online LES (suite.les, suite.online): solver equivalence, closure physics, CNN plumbing, metrics."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from solver import Equation, Grid, Parameters, Simulation, diagnostics, make_forcing, make_stepper, random_field
from solver.closures import gradient, strain_rate
from solver.backends import make_backend
from suite.config import load_config
from suite.les import (LESSetup, build_les, closure_metrics, log_spectrum_error, mean_spectra, relative_rms,
                       run_ensemble, skill, spectral_bands, wasserstein1)
from suite.model import ClosureCNN
from solver.sgs import LES_JACOBIAN
from suite.online import CNNClosure, destandardize, make_closure, network_input, standardize

L = 2 * math.pi


def setup(n=32, **kw) -> LESSetup:
    base = dict(n=n, L=L, re=1000.0, mu=0.1, beta=0.0, hyperviscosity=0.0, hyper_order=2, forcing="cos-xy",
                kf=4.0, dt=5e-3, stepper="ab2cn", filter=None,
                delta=2 * L / n, sample_interval=0.05, cfl_max=2.0)
    base.update(kw)
    return LESSetup(**base)


def backend(n):
    return make_backend(n, threads=1)


# --------------------------------------------------------------------------------------------
# the LES is the solver


@pytest.mark.parametrize("stepper,beta", [("ab2cn", 0.0), ("rk3cn", 5.0)])
def test_les_none_on_dns_grid_reproduces_dns(stepper, beta):
    """closure none, n_les = n_dns, no filter: the LES loop gives the fields of the solver run alone
    with the LES Jacobian (exact products, every mode below Nyquist)."""
    s = setup(n=32, stepper=stepper, beta=beta)
    steps = 60
    g = Grid(32, L, backend=backend(32))
    eq = Equation(g, Parameters(re=1000.0, mu=0.1, beta=beta), forcing=make_forcing(g, "cos-xy", kf=4.0),
                  **LES_JACOBIAN)
    w0 = random_field(g, kp=6, energy=2.0, seed=3, members=2)
    sim = Simulation(eq, make_stepper(stepper, eq, dt=s.dt), g.backend.copy(w0))
    sim.run(steps=steps)
    dns = g.backend.irfft2(sim.omega_hat)

    grid, les_eq, les_step, term = build_les(s, backend(32))
    assert term is None
    tr = run_ensemble(grid, les_eq, les_step, w0, steps, [0, steps], series_every=steps)
    assert np.isnan(tr.blowup_time).all()
    np.testing.assert_allclose(tr.omega[:, -1], dns, rtol=0, atol=1e-12 * np.abs(dns).max())
    np.testing.assert_allclose(tr.energy[:, -1], diagnostics.energy(g, sim.omega_hat), rtol=1e-12)
    assert tr.times[-1] == pytest.approx(steps * s.dt)


def test_dt_rule_lands_on_snapshots():
    attrs = dict(re=400.0, mu=0.1, beta=0.0, kf=4.0, forcing="cos-xy", L=L, n_les=16, dt=0.01, filter="gaussian",
                 filter_width=2 * L / 16, sample_interval=0.2)
    for factor, want in ((1.0, 0.01), (2.0, 0.02), (3.0, 0.2 / 7), (50.0, 0.2)):
        s = LESSetup.from_store(attrs, dt_factor=factor)
        assert s.dt == pytest.approx(want)
        assert s.dt <= 0.01 * factor * (1 + 1e-12)
        assert s.sample_interval / s.dt == pytest.approx(s.steps_per_sample)


def test_les_forcing_is_filtered():
    """F̄ = G F: with the Gaussian filter the forcing at k_f is scaled by exp(−k_f² Δ² / 24)."""
    s = setup(n=16, filter="gaussian")
    grid, eq, _, _ = build_les(s, backend(16))
    _, eq0, _, _ = build_les(replace(s, filter=None), backend(16))
    ratio = np.abs(eq.forcing_hat).max() / np.abs(eq0.forcing_hat).max()
    assert ratio == pytest.approx(math.exp(-16 * s.delta ** 2 / 24), rel=1e-12)



def test_les_forcing_above_the_two_thirds_range_is_kept():
    """The LES keeps every mode below Nyquist, so a forcing at k_f = 12 on a 32² LES grid (above
    the 2/3 rule's 10, below Nyquist's 16) is accepted and acts at k_f with the filter's gain; the
    solver's 2/3 check still refuses it for a 2/3-dealiased equation and at Nyquist."""
    from solver import Grid, make_forcing
    from solver.errors import ParameterError
    s = setup(n=32, kf=12.0, filter="gaussian")
    grid, eq, _, _ = build_les(s, backend(32))
    f = np.abs(eq.forcing_hat)
    kx, ky = np.broadcast_arrays(np.abs(grid.host.kxi), np.abs(grid.host.kyi))
    on = f > 1e-12 * f.max()
    assert on.any() and set(zip(kx[on], ky[on])) == {(12, 0), (0, 12)}
    with pytest.raises(ParameterError, match="kf = 12.0: beyond the resolved range"):
        make_forcing(Grid(32, L, backend=backend(32)), "cos-xy", kf=12.0)
    with pytest.raises(ParameterError, match="dealias 3/2"):
        make_forcing(Grid(32, L, backend=backend(32)), "cos-xy", kf=16.0, dealias="3/2")


# --------------------------------------------------------------------------------------------
# Smagorinsky: the energy and enstrophy it removes


def test_smagorinsky_removes_energy_at_the_eddy_viscosity_rate():
    """Π = ∇·(ν_e ∇ω̄) gives dE/dt = <ψ Π> = −<ν_e ∇ψ·∇ω> and dZ/dt = <ω Π> = −<ν_e |∇ω|²>, with
    ν_e = (C_s Δ)² |S|; for uniform ν_e, <∇ψ·∇ω> = <ω²> = <|S|²> = 2<S_ij S_ij>."""
    n, cs = 32, 0.17
    s = setup(n=n, re=math.inf, mu=0.0, forcing="none")
    fac = lambda g: make_closure("smag", g, delta=s.delta, cs=cs)  # noqa: E731
    grid, eq, _, term = build_les(s, backend(n), fac)
    w = random_field(grid, kp=5, energy=1.0, seed=7)
    w = w * grid.host.nyquist_free  # a field the LES can hold (every mode below Nyquist)
    psi, omega = (np.asarray(a) for a in term.fields(w))
    nu_e = (cs * s.delta) ** 2 * strain_rate(psi, L)
    px, py = gradient(psi, L)
    wx, wy = gradient(omega, L)
    dE = -np.mean(nu_e * (px * wx + py * wy))
    dZ = -np.mean(nu_e * (wx ** 2 + wy ** 2))
    b = diagnostics.budget(grid, eq, w)
    assert b["extra_E"] == pytest.approx(dE, rel=1e-10)
    assert b["extra_Z"] == pytest.approx(dZ, rel=1e-10)
    assert dE < 0 and dZ < 0
    # uniform ν_e: −ν <|S|²> (the textbook 2 ν <S_ij S_ij>)
    nu = 0.01
    flat = lambda w, t: w * (-nu * grid.k2) * term.mask  # noqa: E731
    eq_u = Equation(grid, Parameters(), extra=flat)
    assert diagnostics.budget(grid, eq_u, w)["extra_E"] == pytest.approx(-nu * np.mean(strain_rate(psi, L) ** 2),
                                                                        rel=1e-10)


def test_smagorinsky_les_energy_decays_at_predicted_rate():
    """Inviscid, unforced LES with Smagorinsky only: the measured dE/dt over two short steps equals
    −<ν_e ∇ψ·∇ω> (the exact LES Jacobian conserves E)."""
    n, dt = 32, 2e-4
    s = setup(n=n, re=math.inf, mu=0.0, forcing="none", stepper="rk3cn", dt=dt)
    fac = lambda g: make_closure("smag", g, delta=s.delta, cs=0.3)  # noqa: E731
    grid, eq, stepper, term = build_les(s, backend(n), fac)
    w0 = random_field(grid, kp=5, energy=1.0, seed=11)
    tr = run_ensemble(grid, eq, stepper, w0[None], 2, [0, 1, 2], series_every=1, term=term)
    e = tr.energy[0]
    measured = (e[2] - e[0]) / (2 * dt)
    w1 = np.fft.rfft2(tr.omega[0, 1])
    predicted = diagnostics.budget(grid, eq, w1)["extra_E"]
    assert predicted < 0
    assert measured == pytest.approx(predicted, rel=2e-3)
    # and the part of dE/dt that is not the closure is ~0
    assert abs(measured - predicted) < 1e-2 * abs(predicted)


# --------------------------------------------------------------------------------------------
# CNN closure: normalization of training, stability online


NORM = {"mean": {"psi": 0.3, "omega": -1.2, "pi": 0.7}, "std": {"psi": 0.8, "omega": 6.5, "pi": 2.5}}


def test_normalization_round_trip():
    x = torch.randn(3, 8, 8, dtype=torch.float64) * 4 + 2
    for name in ("psi", "omega", "pi"):
        z = standardize(x, NORM, name)
        assert torch.allclose(destandardize(z, NORM, name), x, rtol=0, atol=1e-13)
        assert abs(float(z.mean()) - (float(x.mean()) - NORM["mean"][name]) / NORM["std"][name]) < 1e-12


def test_cnn_term_scaling_matches_training():
    """The online term feeds the network exactly what suite.dataset gives the training, and turns its
    output into Π exactly as suite.dataset.denormalize does."""
    from suite.dataset import denormalize, to_tensors

    n = 16
    torch.manual_seed(0)
    model = ClosureCNN(3, 4, 3)
    grid = Grid(n, L, backend=backend(n))
    w = random_field(grid, kp=4, energy=3.0, seed=2, members=3) * grid.host.nyquist_free
    term = make_closure("cnn", grid, model=model, norm=NORM)
    assert isinstance(term, CNNClosure)
    psi, omega = (np.asarray(a) for a in term.fields(w))
    train = to_tensors({"psi": psi, "omega": omega, "pi": np.zeros_like(psi)}, NORM, np.zeros((3, 2), int), L, 1.0)
    x_online = network_input(torch.from_numpy(psi), torch.from_numpy(omega), NORM)
    assert x_online.dtype == torch.float32 and torch.equal(x_online, train.x)
    with torch.no_grad():
        pi_train = denormalize(model(train.x)[:, 0], NORM, "pi")
    pi_online = term.pi(w)
    np.testing.assert_allclose(pi_online, pi_train, rtol=0, atol=1e-12)
    # and the term is that Π in spectral space on the kept modes, without a mean
    hat = term(w, 0.0)
    np.testing.assert_allclose(hat, np.fft.rfft2(pi_online) * term.mask, atol=1e-9)
    assert np.all(hat[..., 0, 0] == 0)


def laplacian_cnn(nu_c: float, h: float, norm: dict) -> ClosureCNN:
    """A 3-layer CNN computing Π = ν_c ∇²_h ω̄ (the 5-point Laplacian) in physical units, whatever the
    normalization: conv1 → (z⁺, z⁻) of the ω channel, conv2 identity, conv3 the stencil on z⁺ − z⁻."""
    m = ClosureCNN(3, 2, 3)
    S = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    a = nu_c * norm["std"]["omega"] / (norm["std"]["pi"] * h * h)
    with torch.no_grad():
        for c in m.convs:
            c.weight.zero_()
            c.bias.zero_()
        m.conv1.weight[0, 1, 1, 1] = 1.0
        m.conv1.weight[1, 1, 1, 1] = -1.0
        m.conv2.weight[0, 0, 1, 1] = 1.0
        m.conv2.weight[1, 1, 1, 1] = 1.0
        m.conv3.weight[0, 0] = a * S
        m.conv3.weight[0, 1] = -a * S
        m.conv3.bias[0] = -norm["mean"]["pi"] / norm["std"]["pi"]
    return m


def test_cnn_closure_runs_stably_for_ci_duration_and_equals_its_linear_operator():
    """A CNN that is exactly a discrete Laplacian diffusion, run online for the ci preset's LES
    duration with the ci LES grid and dt: stable, and the same fields as the LES with that linear
    operator as a spectral term (to float32 precision); it removes energy relative to no closure."""
    cfg = load_config(preset="ci")
    n, nu_c = cfg.grid.n_les, 0.05
    s = setup(n=n, re=cfg.system("base").re, dt=cfg.dns.dt * cfg.les.dt_factor, sample_interval=cfg.dns.dt,
              filter="gaussian")
    h = L / n
    steps = int(round(cfg.les.duration / s.dt))
    model = laplacian_cnn(nu_c, h, NORM)
    fac = lambda g: make_closure("cnn", g, model=model, norm=NORM)  # noqa: E731
    grid, eq, stepper, term = build_les(s, backend(n), fac)
    w0 = random_field(grid, kp=4, energy=2.0, seed=5, members=2)
    tr = run_ensemble(grid, eq, stepper, w0, steps, [0, steps], series_every=1, term=term)
    assert np.isnan(tr.blowup_time).all() and np.isfinite(tr.omega).all()

    kx, ky = grid.host.kx, grid.host.ky
    symbol = -nu_c * 4 / h ** 2 * (np.sin(kx * h / 2) ** 2 + np.sin(ky * h / 2) ** 2)
    lin = lambda g: (lambda w, t: w * symbol * term.mask)  # noqa: E731
    grid2, eq2, st2, _ = build_les(s, backend(n), lin)
    ref = run_ensemble(grid2, eq2, st2, w0, steps, [0, steps], series_every=1)
    scale = np.abs(ref.omega[:, -1]).max()
    assert np.abs(tr.omega[:, -1] - ref.omega[:, -1]).max() < 1e-5 * scale
    grid3, eq3, st3, _ = build_les(s, backend(n))
    none = run_ensemble(grid3, eq3, st3, w0, steps, [0, steps], series_every=1)
    assert (tr.energy[:, -1] < none.energy[:, -1]).all()
    assert (tr.backscatter[:, -1] < 0.5).all()  # a diffusion: T = ν ∇²ω ∇²ω >= 0 mostly


def test_blown_up_member_is_recorded_and_the_others_go_on():
    n = 16
    s = setup(n=n, dt=0.01)
    grid, eq, stepper, _ = build_les(s, backend(n))
    w = random_field(grid, kp=4, energy=1.0, seed=1, members=3)
    w[1] *= 200.0  # CFL far above cfl_max
    tr = run_ensemble(grid, eq, stepper, w, 40, [0, 20, 40], series_every=10, check_every=10)
    assert np.isfinite(tr.blowup_time[1]) and tr.blowup_time[1] <= 0.1
    assert np.isnan(tr.blowup_time[[0, 2]]).all()
    assert np.isnan(tr.omega[1, 1:]).all() and np.isfinite(tr.omega[[0, 2]]).all()
    grid2, eq2, st2, _ = build_les(s, backend(n))
    alone = run_ensemble(grid2, eq2, st2, w[[0, 2]], 40, [0, 20, 40], series_every=10)
    np.testing.assert_allclose(tr.omega[[0, 2], -1], alone.omega[:, -1], rtol=0, atol=1e-11)


# --------------------------------------------------------------------------------------------
# metrics on analytic cases


def test_wasserstein_known_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(5000)
    assert wasserstein1(a, a) == 0.0
    assert wasserstein1(a, a + 0.75) == pytest.approx(0.75, rel=1e-12)
    # two uniform distributions U(0,1), U(c,1+c): W1 = c, also with samples of different sizes
    u = (np.arange(4000) + 0.5) / 4000
    v = (np.arange(1000) + 0.5) / 1000 + 0.3
    assert wasserstein1(u, v) == pytest.approx(0.3, abs=1e-3)
    assert wasserstein1(np.r_[a, np.nan], a) == 0.0


def test_log_spectrum_error_and_bands():
    k = np.arange(0, 43, dtype=float)
    s = np.exp(-k / 5) + 1e-3
    bands = spectral_bands(42)
    assert log_spectrum_error(k, s, s, bands["all"]) == 0.0
    for b in ("low", "mid", "high", "all"):
        assert log_spectrum_error(k, 10 * s, s, bands[b]) == pytest.approx(1.0)
        assert log_spectrum_error(k, s / 100, s, bands[b]) == pytest.approx(2.0)
    # the three bands partition the shells 1..kmax
    count = np.zeros(len(k))
    for b in ("low", "mid", "high"):
        lo, hi = bands[b]
        count += ((k > lo) | ((lo <= 1) & (k >= lo))) & (k <= hi + 1e-9)
    assert (count[1:] == 1).all() and count[0] == 0


def test_series_and_skill():
    x = np.linspace(1, 2, 10)
    assert relative_rms(x, x) == 0.0
    assert relative_rms(1.1 * x, x) == pytest.approx(0.1)
    assert skill(0.3, 0.3) == 0.0 and skill(0.0, 0.3) == 1.0 and skill(0.6, 0.3) == -1.0
    assert np.isnan(skill(0.1, 0.0))


def test_closure_metrics_identical_fields_are_at_distance_zero():
    n = 16
    g = Grid(n, L, backend=backend(n))
    w = np.stack([np.asarray(g.backend.irfft2(random_field(g, kp=4, seed=i, members=3))) for i in range(2)])
    bs = np.full(w.shape[:2], 0.3)
    m = closure_metrics(g, w, w, bs, bs)
    for key in ("e_spec_low", "e_spec_mid", "e_spec_high", "e_spec_all", "z_spec_all", "pdf_w1", "energy_err",
                "enstrophy_err"):
        assert m[key] == 0.0, key
    # a field scaled by 2: energy spectra 4x everywhere -> log10 4 in every band; PDF distance = E|ω|/σ
    m2 = closure_metrics(g, 2 * w, w, bs, bs)
    assert m2["e_spec_all"] == pytest.approx(math.log10(4))
    assert m2["energy_err"] == pytest.approx(3.0)
    assert m2["pdf_w1"] > 0
    k, e, z = mean_spectra(g, w)
    energy = np.mean([diagnostics.energy(g, np.fft.rfft2(x)) for x in w.reshape(-1, n, n)])
    assert e.sum() == pytest.approx(energy, rel=1e-12)


def test_torch_backend_gives_the_numpy_backend_les():
    """The same LES (Smagorinsky, then the CNN; one member blown up on the way) on the torch backend
    (CPU here; the solver's device in general) and on the numpy backend."""
    n = 16
    s = setup(n=n, dt=0.01, filter="gaussian")
    torch.manual_seed(1)
    model = laplacian_cnn(0.05, L / n, NORM)
    factories = {"smag": lambda g: make_closure("smag", g, delta=s.delta),
                 "cnn": lambda g: make_closure("cnn", g, model=model, norm=NORM)}
    for name, fac in factories.items():
        out = []
        for be in (backend(n), make_backend(n, backend="torch", device="cpu")):
            grid, eq, stepper, term = build_les(s, be, fac)
            w = np.asarray(random_field(Grid(n, L, backend=backend(n)), kp=4, energy=1.0, seed=4, members=3))
            w[2] *= 300.0
            tr = run_ensemble(grid, eq, stepper, be.asarray(w, complex=True), 30, [0, 15, 30], series_every=5,
                              check_every=5, term=term)
            out.append(tr)
        a, b = out
        assert np.isnan(a.blowup_time[:2]).all() and np.isfinite(a.blowup_time[2])
        np.testing.assert_array_equal(a.blowup_time, b.blowup_time)
        np.testing.assert_allclose(b.omega[:2], a.omega[:2], rtol=0, atol=1e-9 * np.abs(a.omega[:2]).max())
        np.testing.assert_allclose(b.backscatter, a.backscatter, atol=2.0 / n ** 2, equal_nan=True)  # a point or two
