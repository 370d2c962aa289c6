"""turbtl.solver — pseudo-spectral DNS of forced 2D turbulence (vorticity–streamfunction form).

Ten lines from a notebook::

    from solver import Grid, Parameters, Equation, make_forcing, make_stepper, random_field, Simulation
    from solver import diagnostics
    g = Grid(128)                                              # L = 2π, numpy/pyFFTW, float64
    eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    step = make_stepper("ab2cn", eq, dt=2e-3)                  # or "rk3cn", "etdrk4"
    sim = Simulation(eq, step, random_field(g, kp=10, seed=0))
    sim.run(t_end=2.0, callbacks=[(100, lambda s: print(s.t, s.energy(), s.enstrophy()))])
    k, Ek = diagnostics.energy_spectrum(g, sim.omega_hat)

Pieces: :mod:`solver.backends` (FFT backends: numpy/pyFFTW, torch CPU/CUDA, MPI slabs via
``make_backend(comm=...)``), :mod:`solver.grid`, :mod:`solver.equation`, :mod:`solver.forcing`,
:mod:`solver.stepping`, :mod:`solver.initial`, :mod:`solver.diagnostics`, :mod:`solver.simulation`;
the hot loop of the nonlinear term in :mod:`solver.fastpath`, the shell binning of spectra in
:mod:`solver.spectra`.
"""
from .equation import Equation, Parameters
from .backends import FFTBackend, make_backend
from .forcing import make_forcing
from .grid import Grid
from .initial import from_physical, random_field
from .simulation import Simulation
from .stepping import State, make_stepper

__all__ = ["Equation", "Parameters", "FFTBackend", "make_backend", "make_forcing", "Grid",
           "from_physical", "random_field", "Simulation", "State", "make_stepper"]
