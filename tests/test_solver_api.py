"""Solver API: FFT backends, grid, state export/restore, ensembles, blow-up, input errors."""
from __future__ import annotations

import numpy as np
import pytest

from solver import Equation, Grid, Parameters, Simulation, make_backend, make_forcing, make_stepper, random_field
from solver import diagnostics as D
from solver.backends import describe_default_backend
from suite.errors import ConfigError, SimulationBlowUp, solver_fields

BACKENDS = ["numpy", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 1e-5)])
def test_backend_transforms_follow_numpy(backend, dtype, tol):
    be = make_backend(24, backend=backend, dtype=dtype)
    u = np.random.default_rng(0).standard_normal((2, 24, 24))
    ref = np.fft.rfft2(u)
    u_hat = be.rfft2(be.asarray(u))
    assert be.to_numpy(u_hat).shape == (2,) + be.spectral_shape
    assert np.abs(be.to_numpy(u_hat) - ref).max() < tol * np.abs(ref).max()
    assert np.abs(be.to_numpy(be.irfft2(u_hat)) - u).max() < tol * 10
    src, dst = be.empty_spectral((2,)), be.empty_physical((2,))
    src[...] = be.asarray(ref, complex=True)
    be.plan_irfft2(src, dst)()
    assert np.abs(be.to_numpy(dst) / 24**2 - u).max() < tol * 10
    out = be.empty_spectral((2,))
    be.plan_rfft2(dst, out)()
    assert np.abs(be.to_numpy(out) / 24**2 - ref).max() < tol * np.abs(ref).max()
    assert be.allsum(3.0) == 3.0 and be.allmax(2.0) == 2.0
    assert "pyFFTW" in describe_default_backend() or "scipy" in describe_default_backend()


def test_grid_wavenumbers_masks_and_weights():
    g = Grid(12, L=4.0)
    assert np.allclose(g.host.kx.ravel(), np.arange(7) * 2 * np.pi / 4)
    assert g.host.kyi.ravel().tolist() == [0, 1, 2, 3, 4, 5, -6, -5, -4, -3, -2, -1]
    assert g.host.inv_k2[0, 0] == 0
    assert g.kmax_dealias == 3 and g.host.dealias.sum() == 7 * 4
    u = np.random.default_rng(1).standard_normal((12, 12))
    full = np.abs(np.fft.fft2(u)) ** 2
    half = np.abs(np.fft.rfft2(u)) ** 2
    assert np.sum(half * g.host.weights) == pytest.approx(full.sum(), rel=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_field_energy_and_spectrum(backend):
    g = Grid(64, backend=make_backend(64, backend=backend))
    w = random_field(g, kp=8, energy=0.7, seed=3)
    assert D.energy(g, w) == pytest.approx(0.7, rel=1e-12)
    k, Ek = D.energy_spectrum(g, w)
    assert Ek.sum() == pytest.approx(0.7, rel=1e-12)
    assert abs(k[np.argmax(Ek)] - np.sqrt(2) * 8) <= 1   # k^4 exp(-(k/kp)^2) peaks at sqrt(2) kp
    law = k[4:21] ** 4 * np.exp(-(k[4:21] / 8) ** 2)
    ratio = Ek[4:21] / law
    assert ratio.max() / ratio.min() < 1.5                 # shell counts fluctuate around 2πk
    again = random_field(g, kp=8, energy=0.7, seed=3)
    assert np.array_equal(g.backend.to_numpy(w), g.backend.to_numpy(again))
    ens = random_field(g, kp=8, energy=0.7, seed=3, members=3)
    assert np.array_equal(g.backend.to_numpy(ens[0]), g.backend.to_numpy(w))


def test_fluxes_and_transfer_sum_to_zero():
    g = Grid(48)
    eq = Equation(g, Parameters(re=1e3))
    w = random_field(g, kp=6, seed=4)
    k, te, tz = D.transfer(g, eq, w)
    assert abs(te.sum()) < 1e-12 * np.abs(te).max() and abs(tz.sum()) < 1e-11 * np.abs(tz).max()
    k, pe, pz = D.fluxes(g, eq, w)
    assert abs(pz[-1]) < 1e-11 * np.abs(pz).max()
    assert D.palinstrophy(g, w) > 0 and D.enstrophy(g, w) > 0


@pytest.mark.parametrize("name", ["ab2cn", "rk3cn", "etdrk4"])
@pytest.mark.parametrize("forcing", ["cos-xy", "stochastic"])
def test_restart_from_exported_state_is_bit_identical(name, forcing):
    def build():
        g = Grid(32)
        eq = Equation(g, Parameters(re=500.0, mu=0.1), forcing=make_forcing(g, forcing, kf=4, eps=0.2, seed=9))
        return g, eq, make_stepper(name, eq, 4e-3)

    g, eq, st = build()
    s = st.init_state(random_field(g, kp=4, seed=1))
    for _ in range(10):
        st(s)
    arrays, scalars = s.export(g.backend)
    for _ in range(10):
        st(s)
    g2, eq2, st2 = build()                      # a fresh process would do the same
    s2 = st2.restore(arrays, scalars)
    for _ in range(10):
        st2(s2)
    assert np.array_equal(g.backend.to_numpy(s.omega_hat), g2.backend.to_numpy(s2.omega_hat))
    assert (s2.step, s2.t) == (s.step, s.t)
    if name == "ab2cn":
        assert "history_nl_prev_hat" in arrays
    if forcing == "stochastic":
        assert arrays["rng_state"].dtype == np.uint64


@pytest.mark.parametrize("backend", BACKENDS)
def test_ensemble_members_step_together_like_alone(backend):
    g = Grid(32, backend=make_backend(32, backend=backend))
    eq = Equation(g, Parameters(re=500.0, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    w = random_field(g, kp=4, seed=2, members=2)
    sim = Simulation(eq, make_stepper("ab2cn", eq, 5e-3), w)
    sim.run(steps=20)
    for m in range(2):
        one = Simulation(eq, make_stepper("ab2cn", eq, 5e-3), random_field(g, kp=4, seed=2, members=1,
                                                                         member_offset=m)[0])
        one.run(steps=20)
        a, b = g.backend.to_numpy(sim.omega_hat[m]), g.backend.to_numpy(one.omega_hat)
        assert np.abs(a - b).max() <= 1e-13 * np.abs(b).max()
    assert np.shape(sim.energy()) == (2,)


def test_blow_up_is_reported_with_step_and_time():
    g = Grid(32)
    eq = Equation(g, Parameters(re=1e5, mu=0.0), forcing=make_forcing(g, "cos-xy", kf=4))
    sim = Simulation(eq, make_stepper("ab2cn", eq, 0.5), random_field(g, kp=4, seed=0), check_every=5)
    with pytest.raises(SimulationBlowUp, match=r"at step \d+, t = "):
        sim.run(steps=200)
    sim = Simulation(eq, make_stepper("ab2cn", eq, 1e-3), random_field(g, kp=4, seed=0), check_every=2)
    sim.state.omega_hat[3, 2] = np.nan
    with pytest.raises(SimulationBlowUp, match="non-finite vorticity at step 2, t = 0.002"):
        sim.run(steps=4)


def test_adaptive_dt_and_t_end_landing():
    g = Grid(32)
    eq = Equation(g, Parameters(re=500.0, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    sim = Simulation(eq, make_stepper("ab2cn", eq, 1e-4), random_field(g, kp=4, seed=0), check_every=5,
                     adaptive=True, cfl_target=0.4)
    seen = []
    sim.run(t_end=0.3, callbacks=[(5, lambda s: seen.append(s.stepper.dt))])
    assert sim.t == pytest.approx(0.3, abs=1e-12)
    assert max(seen) > 1e-4 and 0.25 < sim.last_cfl < 0.5


def test_bad_input_raises_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="dns.backend"), solver_fields():
        make_backend(32, backend="jax")
    with pytest.raises(ConfigError, match="dns.device"), solver_fields():
        make_backend(32, backend="numpy", device="cuda")
    with pytest.raises(ConfigError, match="dns.dtype"), solver_fields():
        make_backend(32, dtype="float16")
    with pytest.raises(ConfigError, match="re = -1"), solver_fields():
        Parameters(re=-1)
    g = Grid(32)
    with pytest.raises(ConfigError, match="forcing"), solver_fields():
        make_forcing(g, "tidal")
    with pytest.raises(ConfigError, match="kf = 20"), solver_fields():
        make_forcing(g, "cos-xy", kf=20)
    with pytest.raises(ConfigError, match="dns.stepper"), solver_fields():
        make_stepper("euler", Equation(g, Parameters()), 1e-3)
    with pytest.raises(ConfigError, match="dns.dt"), solver_fields():
        make_stepper("ab2cn", Equation(g, Parameters()), -1.0)
    with pytest.raises(ConfigError, match="dns.dealias"), solver_fields():
        Equation(g, Parameters(), dealias="1/2")


def test_extra_term_enters_the_equation():
    g = Grid(32)
    calls = []

    def extra(w, t):
        calls.append(t)
        return -1.0 * w

    eq = Equation(g, Parameters(), extra=extra)
    w = random_field(g, kp=4, seed=0)
    base = Equation(g, Parameters(mu=1.0))
    assert np.allclose(eq.rhs(w, 0.5), base.rhs(w, 0.5), atol=1e-12 * float(np.abs(w).max()))
    assert calls == [0.5]


def test_backend_describe_is_data_and_summary_one_line():
    import json

    for be in (make_backend(16, backend="numpy", threads=1), make_backend(16, backend="torch", threads=1)):
        d = be.describe()
        assert isinstance(d, dict) and json.loads(json.dumps(d)) == d
        assert {d["backend"], d["n"], d["dtype"], d["device"]} == {be.name, 16, "float64", "cpu"}
        assert "library" in d and isinstance(be.summary(), str) and "\n" not in be.summary()
        assert be.summary() in repr(be) and be.summary() in repr(Grid(16, backend=be))
