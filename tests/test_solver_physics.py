"""Physics of the solver against exact solutions, conservation laws and budgets (both backends)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from solver import Equation, Grid, Parameters, Simulation, make_backend, make_forcing, make_stepper, random_field
from solver import diagnostics as D
from solver.initial import from_physical

BACKENDS = ["numpy", "torch"]
STEPPERS = ["ab2cn", "rk3cn", "etdrk4"]


def grid(n, backend):
    return Grid(n, backend=make_backend(n, backend=backend, threads=1))


def physical(g, w_hat):
    return g.backend.to_numpy(g.backend.irfft2(w_hat))


def run(eq, name, w0_hat, dt, t_end):
    sim = Simulation(eq, make_stepper(name, eq, dt), w0_hat, check_every=10**9)
    sim.run(t_end=t_end)
    return sim


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,rtol", [("ab2cn", 2e-5), ("rk3cn", 2e-5), ("etdrk4", 1e-12)])
def test_taylor_green_decay_with_viscosity_and_drag(backend, name, rtol):
    """ω = 2 sin(2x) sin(3y)·... is an eigenfunction of ∇²: J = 0, decays as exp(−(νk²+μ)t)."""
    g = grid(32, backend)
    X, Y = g.mesh()
    w0 = 2 * np.sin(2 * X) * np.sin(3 * Y) + np.cos(2 * X + 3 * Y)  # |k|² = 13 for both parts
    p = Parameters(re=20.0, mu=0.3)
    eq = Equation(g, p, forcing=None)
    t_end = 1.0
    sim = run(eq, name, from_physical(g, w0), 0.01, t_end)
    exact = w0 * math.exp(-(p.nu * 13 + p.mu) * t_end)
    err = np.abs(physical(g, sim.omega_hat) - exact).max() / np.abs(exact).max()
    assert err < rtol


@pytest.mark.parametrize("backend", BACKENDS)
def test_kolmogorov_flow_converges_to_laminar_state(backend):
    g = grid(32, backend)
    kf, p = 2.0, Parameters(re=2.0, mu=0.1)
    eq = Equation(g, p, forcing=make_forcing(g, "kolmogorov-y", kf=kf))
    w0 = random_field(g, kp=3, energy=0.5, seed=1)
    sim = run(eq, "ab2cn", w0, 0.02, 40.0)
    _, Y = g.mesh()
    laminar = kf * np.cos(kf * Y) / (p.nu * kf**2 + p.mu)
    err = np.abs(physical(g, sim.omega_hat) - laminar).max() / np.abs(laminar).max()
    assert err < 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,tol_e,tol_z", [("etdrk4", 1e-9, 2e-9), ("rk3cn", 3e-6, 6e-6),
                                              ("ab2cn", 5e-4, 1e-3)])
def test_inviscid_dealiased_run_conserves_energy_and_enstrophy(backend, name, tol_e, tol_z):
    """Measured relative drift of E/Z over 200 steps (t = 1, CFL 0.12), 32²: etdrk4 1.5e-10/2.6e-10,
    rk3cn 7.1e-7/1.4e-6, ab2cn 1.2e-4/2.1e-4: the time discretisation's (the spatial scheme
    conserves both to rounding, checked below)."""
    g = grid(32, backend)
    eq = Equation(g, Parameters(), forcing=None)
    w0 = random_field(g, kp=4, energy=0.5, seed=2)
    sim = Simulation(eq, make_stepper(name, eq, 5e-3), w0, check_every=10**9)
    e0, z0 = sim.energy(), sim.enstrophy()
    sim.run(steps=200)
    de, dz = abs(sim.energy() / e0 - 1), abs(sim.enstrophy() / z0 - 1)
    assert de < tol_e and dz < tol_z
    # the spatial discretisation alone conserves both to rounding
    b = D.budget(g, eq, sim.omega_hat)
    assert abs(b["nonlinear_E"]) < 1e-13 * e0 and abs(b["nonlinear_Z"]) < 1e-12 * z0


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_turbulence_budget_closes(backend):
    """dE/dt and dZ/dt (centred differences of a small-dt ETDRK4 run) equal injection − dissipation
    − drag (+ the extra term) to rtol 1e-3."""
    g = grid(32, backend)
    p = Parameters(re=300.0, mu=0.1, hyperviscosity=1e-6, hyper_order=2)
    extra = lambda w, t: -0.05 * w  # noqa: E731 - an explicit extra term (like an SGS closure)
    eq = Equation(g, p, forcing=make_forcing(g, "cos-xy", kf=4), extra=extra)
    sim = run(eq, "etdrk4", random_field(g, kp=6, seed=3), 1e-2, 0.5)
    h = 1e-3
    sim.stepper.set_dt(h)
    e, z, b = [sim.energy()], [sim.enstrophy()], None
    for i in range(2):
        sim.run(steps=1)
        e.append(sim.energy())
        z.append(sim.enstrophy())
        if i == 0:  # the budget at the middle time
            b = D.budget(g, eq, sim.omega_hat, sim.t)
    dedt, dzdt = (e[2] - e[0]) / (2 * h), (z[2] - z[0]) / (2 * h)
    assert b["injection_E"] > 0 and b["viscous_E"] > 0 and b["drag_E"] > 0 and b["hyperviscous_E"] > 0
    assert b["extra_E"] == pytest.approx(-0.1 * e[1], rel=1e-12)
    assert dedt == pytest.approx(b["dEdt"], rel=1e-3)
    assert dzdt == pytest.approx(b["dZdt"], rel=1e-3)
    assert abs(b["nonlinear_E"]) < 1e-12 * b["viscous_E"] * 100


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,rtol", [("ab2cn", 2e-3), ("rk3cn", 2e-3), ("etdrk4", 1e-11)])
def test_rossby_wave_phase_speed(backend, name, rtol):
    """A single Rossby wave ω = cos(k·x − ω t) with ω = −β k_x/|k|² (inviscid, J = 0)."""
    g = grid(32, backend)
    beta, kx, ky = 10.0, 2, 1
    freq = -beta * kx / (kx**2 + ky**2)
    X, Y = g.mesh()
    eq = Equation(g, Parameters(beta=beta), forcing=None)
    t_end = 1.0
    sim = run(eq, name, from_physical(g, np.cos(kx * X + ky * Y)), 0.01, t_end)
    exact = np.cos(kx * X + ky * Y - freq * t_end)
    assert np.abs(physical(g, sim.omega_hat) - exact).max() < rtol
    # and not the wave travelling the other way
    wrong = np.cos(kx * X + ky * Y + freq * t_end)
    assert np.abs(physical(g, sim.omega_hat) - wrong).max() > 0.5


def _order(backend, name, params, dts, t_end=0.2):
    g = grid(32, backend)
    eq = Equation(g, params, forcing=make_forcing(g, "cos-xy", kf=4))
    w0 = random_field(g, kp=4, energy=0.5, seed=4)
    ref = run(eq, "etdrk4", w0, dts[-1] / 8, t_end).omega_hat
    errs = []
    for dt in dts:
        w = run(eq, name, w0, dt, t_end).omega_hat
        errs.append(float(np.abs(g.backend.to_numpy(w - ref)).max()))
    return [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)], errs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,params,dts,expected", [
    ("ab2cn", Parameters(re=50.0, mu=1.0), [0.01, 0.005, 0.0025], 2),
    ("rk3cn", Parameters(re=50.0, mu=1.0), [0.02, 0.01, 0.005], 2),     # CN stages: 2nd order
    ("rk3cn", Parameters(), [0.02, 0.01, 0.005], 3),                    # L = 0: explicit RK3
    ("etdrk4", Parameters(re=50.0, mu=1.0), [0.04, 0.02, 0.01], 4),
])
def test_temporal_convergence_order(backend, name, params, dts, expected):
    orders, errs = _order(backend, name, params, dts)
    assert all(abs(o - expected) < 0.25 for o in orders), (orders, errs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dealias", ["2/3", "none", "3/2"])
def test_hermitian_symmetry_and_nyquist_modes(backend, dealias):
    g = grid(32, backend)
    n = g.n
    eq = Equation(g, Parameters(re=500.0, mu=0.1, beta=3.0), forcing=make_forcing(g, "cos-xy", kf=4),
                  dealias=dealias)
    sim = run(eq, "ab2cn", random_field(g, kp=8, seed=5), 5e-3, 0.25)
    w = g.backend.to_numpy(sim.omega_hat)
    assert np.all(w[n // 2, :] == 0) and np.all(w[:, n // 2] == 0)      # Nyquist row and column
    assert w[0, 0] == 0                                                 # zero mean vorticity
    col = w[:, 0]
    assert np.abs(col[1:] - np.conj(col[1:][::-1])).max() <= 1e-14 * np.abs(w).max()
    # a real field: the round trip through physical space returns the same coefficients
    back = np.fft.rfft2(np.fft.irfft2(w, s=(n, n)))
    assert np.abs(back - w).max() <= 1e-13 * np.abs(w).max()


@pytest.mark.parametrize("dealias", ["2/3", "none"])
@pytest.mark.parametrize("forcing", ["cos-xy", "stochastic"])
def test_numpy_and_torch_agree_after_100_steps(dealias, forcing):
    out = []
    for backend in BACKENDS:
        g = grid(32, backend)
        f = make_forcing(g, forcing, kf=4, eps=0.1, seed=7)
        eq = Equation(g, Parameters(re=1000.0, mu=0.1), forcing=f, dealias=dealias)
        sim = Simulation(eq, make_stepper("ab2cn", eq, 5e-3), random_field(g, kp=3, seed=6))
        sim.run(steps=100)
        out.append(g.backend.to_numpy(sim.omega_hat))
    assert np.abs(out[0] - out[1]).max() <= 1e-12 * np.abs(out[0]).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_dealiasing_rules_and_jacobian_forms_agree_on_band_limited_fields(backend):
    """For a field within the 2/3 band, the 2/3 rule, 3/2 padding and the averaged
    (advective + conservative) form give the same Ĵ on the kept modes, to rounding."""
    g = grid(48, backend)
    w = random_field(g, kp=5, seed=8) * g.dealias
    ref = g.backend.to_numpy(Equation(g, Parameters(), dealias="2/3").jacobian_hat(w))
    scale = np.abs(ref).max()
    for dealias in ("2/3", "3/2"):
        for jac in ("advective", "average"):
            j = g.backend.to_numpy(Equation(g, Parameters(), dealias=dealias, jacobian=jac).jacobian_hat(w))
            assert np.abs((j - ref) * g.host.dealias).max() < 1e-12 * scale
    # without dealiasing the product is exact (all of it) when the field lies within |k| < n/4
    w = w * (g.k < g.n / 4 - 0.5)
    exact = g.backend.to_numpy(Equation(g, Parameters(), dealias="3/2").jacobian_hat(w))
    none = g.backend.to_numpy(Equation(g, Parameters(), dealias="none").jacobian_hat(w))
    assert np.abs(none - exact).max() < 1e-12 * np.abs(exact).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stochastic_forcing_injects_eps_on_average(backend):
    """From rest, inviscid, one step: E = energy of the increment; its ensemble mean is eps dt."""
    g = grid(32, backend)
    members, eps, dt = 400, 0.3, 0.01
    f = make_forcing(g, "stochastic", kf=6, eps=eps, seed=11, members=members)
    eq = Equation(g, Parameters(), forcing=f)
    sim = Simulation(eq, make_stepper("ab2cn", eq, dt), g.backend.zeros_spectral((members,)))
    sim.run(steps=1)
    e = sim.energy()
    # E[e] = eps dt; relative std of the mean ≈ 1/sqrt(members · modes) ≈ 0.7 %
    assert np.mean(e) == pytest.approx(eps * dt, rel=0.04)
    k, Ek = D.energy_spectrum(g, sim.omega_hat)
    shell = np.argmax(Ek.mean(axis=0))
    assert shell == 6
