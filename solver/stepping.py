"""Time steppers for ∂ω̂/∂t = L ω̂ + N(ω̂, t) (+ white-in-time stochastic forcing).

Each factory takes an :class:`~solver.equation.Equation` and a time step and returns a
:class:`Stepper`: a callable ``step(state)`` that advances a :class:`State` by one step in place.

- :func:`ab2cn`: Adams–Bashforth 2 for N, Crank–Nicolson for L, Euler–CN first step (the paper's
  scheme). Second order; variable dt handled with the variable-step AB2 weights.
- :func:`rk3cn`: the low-storage 3-stage IMEX Runge–Kutta of Spalart, Moser & Rogers (1991):
  RK3 for N, Crank–Nicolson per stage for L. Third order for the explicit part, second order
  for the coupled scheme (the CN stages); it reduces to an explicit RK3 when L = 0.
- :func:`etdrk4`: exponential time differencing RK4 (Cox & Matthews 2002) with the φ-functions
  evaluated by the contour integral of Kassam & Trefethen (2005). Fourth order; L exact.

Stochastic forcing is added after the deterministic update as ``f̂ = √dt ξ`` (Euler–Maruyama).

The stepper contract: a stepper sees of the equation only :class:`SteppedEquation` — L
(``linear_host``, from which it builds its coefficients), ``nonlinear(w, t, out, then)`` and the
performance hook ``update_runner(batch)`` (with its piece ``kernels``), plus ``backend``, the
kept-mode ``mask`` (initial states are projected on it) and the ``stochastic`` forcing.
:class:`solver.equation.Equation` is one; its hot loop lives in :mod:`solver.fastpath`.

The :class:`State` holds everything a restart needs: ``omega_hat``, the stepper's history
(``history``: e.g. AB2's previous N), ``t``, ``step``, ``dt``, ``dt_prev`` and the RNG state of the
stochastic forcing. :meth:`State.export` / :meth:`Stepper.restore` convert it to and from named
numpy arrays + scalars (local blocks under MPI; array names ending in ``_hat`` are spectral).

    >>> step = make_stepper("ab2cn", eq, dt=1e-3)
    >>> state = step.init_state(omega_hat)
    >>> for _ in range(100): step(state)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from .errors import ParameterError

STEPPERS = ("ab2cn", "rk3cn", "etdrk4")
ORDERS = {"ab2cn": 2, "rk3cn": 2, "etdrk4": 4}  # theoretical order of the coupled scheme


class SteppedEquation(Protocol):
    """What a :class:`Stepper` uses of its equation (``solver.equation.Equation`` is one)."""

    backend: Any
    linear_host: np.ndarray   # L, host complex128, local spectral shape
    mask: Any                 # 1 on the modes the equation evolves (backend array)
    stochastic: Any           # a stochastic forcing (get_state, set_state, increment) or None
    kernels: Any              # elementwise kernels for the pieces of update_runner (solver.kernels)

    def nonlinear(self, omega_hat, t: float, out=None, then: Callable | None = None): ...

    def update_runner(self, batch=()) -> Callable: ...


@dataclass
class State:
    """The full restartable state of a simulation (backend arrays, local blocks)."""

    omega_hat: Any
    t: float = 0.0
    step: int = 0
    dt: float = 0.0
    dt_prev: float = 0.0
    stepper: str = ""
    history: dict = field(default_factory=dict)
    rng_state: np.ndarray | None = None

    def export(self, backend) -> tuple[dict[str, np.ndarray], dict[str, float | int | str]]:
        """(arrays, scalars): ``omega_hat``, ``history_<name>_hat`` (spectral, local), ``rng_state``
        (uint64, members x 6, identical on every rank) and the scalars ``t``, ``step``, ``dt``,
        ``dt_prev``, ``stepper``."""
        arrays = {"omega_hat": backend.to_numpy(self.omega_hat).copy()}
        for k, v in self.history.items():
            arrays[f"history_{k}_hat"] = backend.to_numpy(v).copy()
        if self.rng_state is not None:
            arrays["rng_state"] = np.asarray(self.rng_state, dtype=np.uint64).copy()
        scalars = {"t": float(self.t), "step": int(self.step), "dt": float(self.dt),
                   "dt_prev": float(self.dt_prev), "stepper": self.stepper}
        return arrays, scalars


class Stepper:
    """Base class: ``step(state)`` advances one step; ``init_state``, ``restore``, ``set_dt``."""

    name = "abstract"
    order = 0

    def __init__(self, equation: SteppedEquation, dt: float):
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ParameterError(f"dt = {dt!r}: must be a finite number > 0", name="dt")
        self.equation = equation
        self.backend = equation.backend
        self.xp = self.backend.xp
        self.dt = float(dt)
        self._coefficients()

    # -- to implement -------------------------------------------------------------------------
    def _coefficients(self) -> None:
        raise NotImplementedError

    def __call__(self, state: State) -> None:
        raise NotImplementedError

    # -- common --------------------------------------------------------------------------------
    def set_dt(self, dt: float) -> None:
        """Change the time step (coefficients are recomputed; the state's dt follows next step)."""
        if dt != self.dt:
            self.dt = float(dt)
            self._coefficients()

    def _c(self, a):
        return self.backend.asarray(np.broadcast_to(a, self.backend.spectral_shape), complex=True)

    def _c_or_real(self, a):
        """A coefficient array: real when ``a`` has no imaginary part (no β term: half the memory
        traffic of the update), else complex. Products are the same either way."""
        if np.iscomplexobj(a) and np.any(np.imag(a)):
            return self._c(a)
        return self.backend.asarray(np.broadcast_to(np.real(a), self.backend.spectral_shape))

    def init_state(self, omega_hat, t: float = 0.0) -> State:
        """A fresh state from a spectral field (projected on the modes the dealiasing keeps)."""
        w = self.backend.zeros_spectral(omega_hat.shape[:-2])
        w[...] = omega_hat
        self.xp.multiply(w, self.equation.mask, out=w)
        sto = self.equation.stochastic
        return State(omega_hat=w, t=float(t), step=0, dt=self.dt, dt_prev=0.0, stepper=self.name,
                     rng_state=None if sto is None else sto.get_state())

    def restore(self, arrays: dict, scalars: dict) -> State:
        """Rebuild a :class:`State` from :meth:`State.export` output (local blocks)."""
        if scalars.get("stepper", self.name) != self.name:
            raise ParameterError(f"checkpoint stepper = {scalars['stepper']!r}: this run uses {self.name!r}",
                              name="stepper")
        be = self.backend
        w = be.zeros_spectral(np.shape(arrays["omega_hat"])[:-2])
        w[...] = be.asarray(arrays["omega_hat"], complex=True)
        hist = {}
        for k, v in arrays.items():
            if k.startswith("history_") and k.endswith("_hat"):
                h = be.zeros_spectral(np.shape(v)[:-2])
                h[...] = be.asarray(v, complex=True)
                hist[k[len("history_"):-len("_hat")]] = h
        rng = arrays.get("rng_state")
        sto = self.equation.stochastic
        if sto is not None and rng is not None:
            sto.set_state(rng)
        self.set_dt(float(scalars["dt"]))
        return State(omega_hat=w, t=float(scalars["t"]), step=int(scalars["step"]), dt=float(scalars["dt"]),
                     dt_prev=float(scalars.get("dt_prev", 0.0)), stepper=self.name, history=hist,
                     rng_state=None if rng is None else np.asarray(rng, dtype=np.uint64))

    def _finish(self, state: State) -> None:
        sto = self.equation.stochastic
        if sto is not None:
            self.xp.add(state.omega_hat, sto.increment(self.dt), out=state.omega_hat)
            state.rng_state = sto.get_state()
        state.t += self.dt
        state.step += 1
        state.dt_prev = self.dt
        state.dt = self.dt

    def _nl_buffer(self, state, key):
        buf = self._bufs.get(key) if hasattr(self, "_bufs") else None
        shape = tuple(state.omega_hat.shape)
        if buf is None or tuple(buf.shape) != shape:
            buf = self.backend.zeros_spectral(shape[:-2])
            self._bufs = getattr(self, "_bufs", {})
            self._bufs[key] = buf
        return buf


class AB2CN(Stepper):
    """Adams–Bashforth 2 / Crank–Nicolson with an Euler–CN first step (history: ``nl_prev``)."""

    name, order = "ab2cn", 2

    def _coefficients(self):
        L, dt = self.equation.linear_host, self.dt
        den = 1.0 - 0.5 * dt * L
        self.A = self._c_or_real((1.0 + 0.5 * dt * L) / den)
        self._B_np = dt / den
        self.B = self._c_or_real(self._B_np)
        self._Bc = {}

    def _B_scaled(self, c1):
        key = round(c1, 15)
        if key not in self._Bc:
            self._Bc[key] = self._c_or_real(self._B_np * c1)
        return self._Bc[key]

    def __call__(self, state: State) -> None:
        xp, w = self.xp, state.omega_hat
        n_now = self._nl_buffer(state, "n")
        prev = state.history.get("nl_prev")
        A = self.A
        if prev is None:  # Euler (N) - Crank-Nicolson (L) start
            self.equation.nonlinear(w, state.t, out=n_now)
            B = self.B

            def euler(r, c):
                wv = w[..., r, c]
                xp.multiply(wv, A[r, c], out=wv)
                xp.add(wv, B[r, c] * n_now[..., r, c], out=wv)
            self.equation.update_runner(w.shape[:-2])(euler)
            self._bufs["n"] = self.backend.zeros_spectral(w.shape[:-2])
        else:
            ratio = self.dt / state.dt_prev if state.dt_prev > 0 else 1.0
            c1, c0 = 1.0 + 0.5 * ratio, 0.5 * ratio
            Bc, f0 = self._B_scaled(c1), -c0 / c1

            update = self.equation.kernels.ab2

            def ab2(r, c):  # ω̂ <- A ω̂ + B c1 (N - (c0/c1) N_prev), piece by piece as N is finished
                update(w, prev, n_now, A, Bc, f0, r, c)
            ab2.ab2_update = (w, prev, n_now, A, Bc, f0)  # the hot loop may make N and update in one pass
            self.equation.nonlinear(w, state.t, out=n_now, then=ab2)
            self._bufs["n"] = prev  # reuse: zero outside the kept modes, overwritten inside
        state.history["nl_prev"] = n_now
        self._finish(state)


class RK3CN(Stepper):
    """Low-storage IMEX RK3 (Spalart–Moser–Rogers 1991) with Crank–Nicolson stages."""

    name, order = "rk3cn", 2
    gamma = (8 / 15, 5 / 12, 3 / 4)
    zeta = (0.0, -17 / 60, -5 / 12)
    alpha = (29 / 96, -3 / 40, 1 / 6)
    beta = (37 / 160, 5 / 24, 1 / 6)
    c = (0.0, 8 / 15, 2 / 3)

    def _coefficients(self):
        L, dt = self.equation.linear_host, self.dt
        self.stage = []
        for a, b in zip(self.alpha, self.beta):
            den = 1.0 - b * dt * L
            self.stage.append((self._c((1.0 + a * dt * L) / den), self._c(dt / den)))

    def __call__(self, state: State) -> None:
        xp, w = self.xp, state.omega_hat
        n_now = self._nl_buffer(state, "n")
        n_old = self._nl_buffer(state, "n_old")
        run = self.equation.update_runner(w.shape[:-2])
        for k in range(3):
            self.equation.nonlinear(w, state.t + self.c[k] * self.dt, out=n_now)
            A, B = self.stage[k]
            g, z = self.gamma[k], self.zeta[k]

            def stage(r, c, n_now=n_now, A=A, B=B, g=g, z=z):
                rhs = n_now[..., r, c] * g
                if z:
                    rhs = rhs + n_old[..., r, c] * z
                wv = w[..., r, c]
                xp.multiply(wv, A[r, c], out=wv)
                xp.add(wv, B[r, c] * rhs, out=wv)
            run(stage)
            n_now, n_old = n_old, n_now
        self._bufs["n"], self._bufs["n_old"] = n_now, n_old
        self._finish(state)


class ETDRK4(Stepper):
    """Exponential time differencing RK4 (Cox–Matthews), Kassam–Trefethen contour coefficients."""

    name, order = "etdrk4", 4
    contour_points = 32

    def _coefficients(self):
        L, dt = self.equation.linear_host, self.dt
        c = L * dt
        M = self.contour_points
        roots = np.exp(2j * np.pi * (np.arange(1, M + 1) - 0.5) / M)
        q = np.zeros_like(c)
        f1 = np.zeros_like(c)
        f2 = np.zeros_like(c)
        f3 = np.zeros_like(c)
        for r in roots:  # mean over a circle of radius 1 around each c: no cancellation near 0
            z = c + r
            ez = np.exp(z)
            q += (np.exp(z / 2) - 1) / z
            f1 += (-4 - z + ez * (4 - 3 * z + z * z)) / z**3
            f2 += (2 + z + ez * (z - 2)) / z**3
            f3 += (-4 - 3 * z - z * z + ez * (4 - z)) / z**3
        self.E = self._c(np.exp(c))
        self.E2 = self._c(np.exp(c / 2))
        self.Q = self._c(dt * q / M)
        self.f1 = self._c(dt * f1 / M)
        self.f2 = self._c(2 * dt * f2 / M)
        self.f3 = self._c(dt * f3 / M)

    def __call__(self, state: State) -> None:
        eq, xp, w, t, dt = self.equation, self.xp, state.omega_hat, state.t, self.dt
        Nu = eq.nonlinear(w, t)
        Ew = self.E2 * w
        a = Ew + self.Q * Nu
        Na = eq.nonlinear(a, t + dt / 2)
        b = Ew + self.Q * Na
        Nb = eq.nonlinear(b, t + dt / 2)
        cc = self.E2 * a + self.Q * (2 * Nb - Nu)
        Nc = eq.nonlinear(cc, t + dt)
        new = self.E * w + self.f1 * Nu + self.f2 * (Na + Nb) + self.f3 * Nc
        w[...] = new
        self._finish(state)


_FACTORIES = {"ab2cn": AB2CN, "rk3cn": RK3CN, "etdrk4": ETDRK4}


def ab2cn(equation, dt: float) -> AB2CN:
    """AB2–Crank–Nicolson stepper (Euler–CN first step)."""
    return AB2CN(equation, dt)


def rk3cn(equation, dt: float) -> RK3CN:
    """Spalart–Moser–Rogers IMEX RK3 / Crank–Nicolson stepper."""
    return RK3CN(equation, dt)


def etdrk4(equation, dt: float) -> ETDRK4:
    """ETDRK4 stepper."""
    return ETDRK4(equation, dt)


def make_stepper(name: str, equation, dt: float) -> Stepper:
    """The stepper called ``name`` (ab2cn | rk3cn | etdrk4) for ``equation`` with step ``dt``."""
    if name not in _FACTORIES:
        raise ParameterError(f"stepper = {name!r}: must be one of {', '.join(STEPPERS)}", name="stepper")
    return _FACTORIES[name](equation, dt)
