"""Forcings of the vorticity equation (docs/science.md §1).

- ``cos-xy``: F = k_f [cos(k_f x) + cos(k_f y)] (the paper's), steady;
- ``kolmogorov-y``: F = k_f cos(k_f y), steady (Kolmogorov flow);
- ``none``: decaying turbulence (:func:`make_forcing` returns None);
- ``stochastic``: white-in-time forcing on the ring k_f − w/2 <= |k| < k_f + w/2 with a prescribed
  mean energy injection rate ε. Each step the stepper adds an increment ``f̂ = √dt ξ`` whose
  expected energy is exactly ε dt (Euler–Maruyama; independent of ω, so the mean injection is ε).

Steady forcings expose ``hat`` (numpy, local spectral layout, numpy's unnormalised rfft2 scale).
The stochastic forcing is seeded per ensemble member (``SeedSequence(seed).spawn``), draws the
same numbers for the ring's global mode list on every rank, so results do not depend on the rank
count, and its generator state is exported/imported with :meth:`StochasticForcing.get_state`.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError

from .grid import DEALIAS_RULES, Grid

FORCINGS = ("cos-xy", "kolmogorov-y", "none", "stochastic")


def resolved_kmax(grid: Grid, dealias: str = "2/3") -> float:
    """The largest wavenumber (physical units) an equation with dealiasing rule ``dealias`` keeps
    on ``grid``: (n−1)//3 for the 2/3 rule, n/2 − 1 (every mode below Nyquist) for 3/2 padding
    or none."""
    if dealias not in DEALIAS_RULES:
        raise ParameterError(f"dealias = {dealias!r}: must be one of {', '.join(DEALIAS_RULES)}", name="dealias")
    return (grid.kmax_dealias if dealias == "2/3" else grid.n // 2 - 1) * grid.kscale


def _check_kf(grid: Grid, kf: float, kind: str, dealias: str = "2/3") -> None:
    if not (isinstance(kf, (int, float)) and math.isfinite(kf) and kf > 0):
        raise ParameterError(f"kf = {kf!r}: forcing {kind!r} needs kf > 0", name="kf")
    kmax = resolved_kmax(grid, dealias)
    if kf > kmax + 1e-12:
        raise ParameterError(f"kf = {kf}: beyond the resolved range (must be <= {kmax:g} for n = {grid.n}, "
                          f"L = {grid.L:g}, dealias {dealias})", name="kf")


class SteadyForcing:
    """A time-independent forcing field given by its local spectral coefficients ``hat``."""

    stochastic = False

    def __init__(self, grid: Grid, kind: str, kf: float, field: np.ndarray):
        self.kind, self.kf = kind, kf
        be = grid.backend
        self.physical = field[be.y_slice, :]
        hat = np.fft.rfft2(field)
        # the transform's round-off (~1e-16 of the largest coefficient) is zeroed: a cos forcing
        # is then exactly the few modes it is, and the hot loop adds it sparsely
        hat[np.abs(hat) <= 1e-13 * np.abs(hat).max()] = 0
        self.hat = hat[:, be.kx_slice]

    def describe(self) -> dict:
        return {"forcing": self.kind, "kf": self.kf}


class StochasticForcing:
    """White-in-time ring forcing with mean energy injection rate ``eps``.

    ``members``: None for an unbatched state, or the ensemble size (one generator per member,
    member ``i`` seeded by ``SeedSequence(seed).spawn`` child ``member_offset + i``).
    """

    stochastic = True

    def __init__(self, grid: Grid, kf: float, eps: float, seed: int = 0, width: float = 1.0,
                 members: int | None = None, member_offset: int = 0):
        if not (math.isfinite(eps) and eps >= 0):
            raise ParameterError(f"eps = {eps!r}: must be a finite number >= 0", name="eps")
        if not width > 0:
            raise ParameterError(f"forcing width = {width!r}: must be > 0", name="width")
        self.grid, self.kind, self.kf, self.eps, self.width, self.seed = grid, "stochastic", kf, eps, width, seed
        self.members = members
        n, be = grid.n, grid.backend
        # the ring's modes in the global half plane, in a fixed order (kx, then ky)
        kxs, kys = np.meshgrid(np.arange(n // 2), np.arange(-n // 2 + 1, n // 2), indexing="ij")
        kxs, kys = kxs.ravel(), kys.ravel()
        kk = np.hypot(kxs, kys) * grid.kscale
        ring = (kk >= kf - width / 2) & (kk < kf + width / 2) & (kk > 0) & ~((kxs == 0) & (kys < 0))
        self.kx_modes, self.ky_modes = kxs[ring], kys[ring]
        if self.kx_modes.size == 0:
            raise ParameterError(f"kf = {kf}, width = {width}: the forcing ring holds no resolved mode", name="kf")
        k2 = (self.kx_modes**2 + self.ky_modes**2) * grid.kscale**2
        # expected energy of one increment: sum over stored entries (kx=0 pairs stored twice, weight 1;
        # others once, weight 2) of weight |f|^2 / k^2 / (2 n^4) with E|f|^2 = a^2
        weight_sum = float(np.sum(2.0 / k2))
        self._amp_unit = math.sqrt(2.0 * n**4 / weight_sum)  # a = amp_unit * sqrt(eps dt)
        lo = be.kx_slice.start
        local = (self.kx_modes >= be.kx_slice.start) & (self.kx_modes < be.kx_slice.stop)
        self._local = np.nonzero(local)[0]
        self._rows = self.ky_modes[local] % n
        self._cols = self.kx_modes[local] - lo
        mirror = local & (self.kx_modes == 0)
        self._mirror = np.nonzero(mirror[local])[0]
        self._mirror_rows = (-self.ky_modes[mirror]) % n
        nm = 1 if members is None else members
        children = np.random.SeedSequence(seed).spawn(member_offset + nm)[member_offset:]
        self._rngs = [np.random.Generator(np.random.PCG64(c)) for c in children]

    @property
    def modes(self) -> int:
        return int(self.kx_modes.size)

    def increment(self, dt: float):
        """The next increment f̂ (backend array, batch + local spectral shape): E[energy] = eps dt."""
        be = self.grid.backend
        a = self._amp_unit * math.sqrt(self.eps * dt)
        m = self.kx_modes.size
        draws = np.stack([(r.standard_normal(m) + 1j * r.standard_normal(m)) * (a / math.sqrt(2))
                          for r in self._rngs])
        out = np.zeros((len(self._rngs),) + be.spectral_shape, dtype=complex)
        vals = draws[:, self._local]
        out[:, self._rows, self._cols] = vals
        if self._mirror.size:
            out[:, self._mirror_rows, 0] = np.conj(vals[:, self._mirror])
        if self.members is None:
            out = out[0]
        return be.asarray(out, complex=True)

    # --- state for checkpoints ------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Generator states as a uint64 array (members, 6): state hi/lo, inc hi/lo, has_uint32, uinteger."""
        rows = []
        mask = (1 << 64) - 1
        for r in self._rngs:
            s = r.bit_generator.state
            st, inc = s["state"]["state"], s["state"]["inc"]
            rows.append([st >> 64, st & mask, inc >> 64, inc & mask, s["has_uint32"], s["uinteger"]])
        return np.array(rows, dtype=np.uint64)

    def set_state(self, arr) -> None:
        arr = np.asarray(arr, dtype=np.uint64)
        if arr.shape != (len(self._rngs), 6):
            raise ValueError(f"rng state of shape {arr.shape}, expected {(len(self._rngs), 6)}")
        for r, row in zip(self._rngs, arr):
            v = [int(x) for x in row]
            r.bit_generator.state = {"bit_generator": "PCG64",
                                     "state": {"state": (v[0] << 64) | v[1], "inc": (v[2] << 64) | v[3]},
                                     "has_uint32": v[4], "uinteger": v[5]}

    def describe(self) -> dict:
        return {"forcing": "stochastic", "kf": self.kf, "eps": self.eps, "width": self.width, "seed": self.seed}


def make_forcing(grid: Grid, kind: str, kf: float = 4.0, eps: float = 0.0, seed: int = 0,
                 width: float = 1.0, members: int | None = None, member_offset: int = 0, dealias: str = "2/3"):
    """The forcing of ``kind`` (cos-xy | kolmogorov-y | none | stochastic) on ``grid``.

    Returns None for ``none``; ``eps``, ``seed``, ``width``, ``members`` and ``member_offset``
    concern the stochastic forcing only. ``kf`` must lie in the range the equation's dealiasing
    rule ``dealias`` keeps (:func:`resolved_kmax`; an LES with the exact Jacobian keeps every mode
    below Nyquist)."""
    if kind not in FORCINGS:
        raise ParameterError(f"forcing = {kind!r}: must be one of {', '.join(FORCINGS)}", name="forcing")
    if kind == "none":
        return None
    _check_kf(grid, kf, kind, dealias)
    if kind == "stochastic":
        return StochasticForcing(grid, kf, eps, seed=seed, width=width, members=members,
                                 member_offset=member_offset)
    periods = kf * grid.L / (2 * math.pi)
    if abs(periods - round(periods)) > 1e-9:
        raise ParameterError(f"kf = {kf}: k_f L / 2π = {periods:g} must be an integer on a periodic domain "
                          f"of side L = {grid.L:g}", name="kf")
    n = grid.n
    x = np.arange(n) * grid.dx
    X, Y = np.meshgrid(x, x)  # (y, x) layout
    if kind == "cos-xy":
        field = kf * (np.cos(kf * X) + np.cos(kf * Y))
    else:
        field = kf * np.cos(kf * Y)
    return SteadyForcing(grid, kind, kf, field)
