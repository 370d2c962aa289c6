"""The vorticity equation of forced 2D turbulence in Fourier space (docs/science.md §1).

    ∂ω/∂t + J(ψ, ω) = ν ∇²ω − μ ω − β v + (−1)^(p+1) ν_p ∇^(2p) ω + F + E(ω, t),   ∇²ψ = −ω

with ν = 1/Re, u = ∂ψ/∂y, v = −∂ψ/∂x, J(ψ, ω) = u ∂ω/∂x + v ∂ω/∂y and E an optional explicit extra
term (e.g. an SGS closure Π̂ for LES). In Fourier space the linear terms are diagonal:

    ∂ω̂/∂t = L ω̂ + N(ω̂, t),   L = −ν k² − μ − ν_p k^(2p) + i β k_x / k²,   N = −Ĵ + F̂ + Ê

(the β term −βv = −β(−∂ψ/∂x) is linear and diagonal, so it is integrated with L). Time steppers
(:mod:`solver.stepping`) treat L implicitly/exactly and N explicitly.

    >>> from solver import Grid, Parameters, Equation, make_forcing
    >>> g = Grid(64)
    >>> eq = Equation(g, Parameters(re=1000, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .errors import ParameterError

from .backends import make_backend
from .grid import DEALIAS_RULES, Grid
from .kernels import choose as choose_kernels
from .workers import ARRAY_PIECE_BYTES, PIECE_BYTES, BlockRunner

JACOBIANS = ("advective", "average")


@dataclass(frozen=True)
class Parameters:
    """Physical parameters: Reynolds number (ν = 1/re; ``math.inf`` = inviscid), linear drag
    ``mu``, β-plane ``beta``, hyperviscosity coefficient ``hyperviscosity`` (ν_p) and order
    ``hyper_order`` (p in (−1)^(p+1) ν_p ∇^(2p))."""

    re: float = math.inf
    mu: float = 0.0
    beta: float = 0.0
    hyperviscosity: float = 0.0
    hyper_order: int = 2

    def __post_init__(self):
        def bad(name, value, accepted):
            raise ParameterError(f"{name} = {value!r}: must be {accepted}", name=name)
        if not isinstance(self.re, (int, float)) or not self.re > 0 or math.isnan(self.re):
            bad("re", self.re, "> 0 (math.inf for inviscid)")
        for name in ("mu", "hyperviscosity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(name, v, "a finite number >= 0")
        if not isinstance(self.beta, (int, float)) or not math.isfinite(self.beta):
            bad("beta", self.beta, "a finite number")
        if not isinstance(self.hyper_order, int) or not 1 <= self.hyper_order <= 8:
            bad("hyper_order", self.hyper_order, "an integer in [1, 8]")

    @property
    def nu(self) -> float:
        return 0.0 if math.isinf(self.re) else 1.0 / self.re

    @classmethod
    def from_system(cls, system) -> "Parameters":
        """From a :class:`suite.config.System` (or any object with the same attributes)."""
        return cls(re=system.re, mu=system.mu, beta=system.beta, hyperviscosity=system.hyperviscosity,
                   hyper_order=system.hyper_order)

    def to_dict(self) -> dict:
        return asdict(self) | {"nu": self.nu}


class Equation:
    """The right-hand side ``L ω̂ + N(ω̂, t)`` on a :class:`~solver.grid.Grid`.

    ``forcing``: a steady forcing from :func:`solver.forcing.make_forcing` (its ``hat`` array is
    added to N) or a stochastic one (applied by the stepper as a white-in-time increment), or None.
    ``dealias``: "2/3" (default; 5 real FFTs per evaluation), "3/2" (zero padding; serial only) or
    "none". ``jacobian``: "advective" (u·∇ω) or "average" (the paper's mean of u·∇ω and ∇·(uω)).
    ``extra``: optional callable ``extra(omega_hat, t) -> spectral array`` added to N.
    """

    def __init__(self, grid: Grid, params: Parameters, forcing=None, dealias: str = "2/3",
                 jacobian: str = "advective", extra: Callable | None = None):
        if dealias not in DEALIAS_RULES:
            raise ParameterError(f"dealias = {dealias!r}: must be one of {', '.join(DEALIAS_RULES)}",
                              name="dealias")
        if jacobian not in JACOBIANS:
            raise ParameterError(f"jacobian = {jacobian!r}: must be one of {', '.join(JACOBIANS)}",
                              name="jacobian")
        be = grid.backend
        if dealias == "3/2" and be.comm is not None and be.comm.Get_size() > 1:
            raise NotImplementedError("dealias = '3/2' (zero padding) is serial only; use '2/3' under MPI")
        self.grid, self.params, self.forcing = grid, params, forcing
        self.dealias, self.jacobian, self.extra = dealias, jacobian, extra
        self.backend = be
        g = grid.np
        nu, mu, nuh, p = params.nu, params.mu, params.hyperviscosity, params.hyper_order
        lin = -(nu * g["k2"] + mu + nuh * g["k2"] ** p) + 1j * params.beta * g["kx"] * g["inv_k2"]
        lin = lin * g["nyquist_free"]  # Nyquist modes carry nothing
        self.linear_np = np.broadcast_to(lin, be.spectral_shape).copy()
        self.linear = be.asarray(self.linear_np, complex=True)
        mask = g["dealias"] if dealias == "2/3" else g["nyquist_free"]
        # the mean vorticity is zero on a periodic domain: k = 0 is masked too (no rounding drift)
        self.mask_np = np.broadcast_to(mask * (g["k2"] > 0), be.spectral_shape).astype(float)
        self.mask = be.asarray(self.mask_np)
        steady = getattr(forcing, "hat", None)
        self.forcing_hat_np = None if steady is None else np.broadcast_to(steady * self.mask_np, be.spectral_shape)
        self.forcing_hat = None if steady is None else be.asarray(self.forcing_hat_np, complex=True)
        self.ops = choose_kernels(be)  # the hot loop's elementwise kernels (solver.kernels)
        # threads and piece size of the hot loop's elementwise work (numpy backend; set before
        # the first step to change them: results are bit-identical for any choice)
        self.threads = be.threads
        self.piece_bytes = None
        self._blocks = self._kept_blocks()
        self._work = {}
        self._pad = None

    # ------------------------------------------------------------------------------------------
    # fields

    def psi_hat(self, omega_hat):
        return omega_hat * self.grid.inv_k2

    def velocity_hat(self, omega_hat):
        """(û, v̂) = (i k_y ψ̂, −i k_x ψ̂)."""
        psi = self.psi_hat(omega_hat)
        return 1j * self.grid.ky * psi, -1j * self.grid.kx * psi

    @property
    def stochastic(self):
        """The stochastic forcing (applied by the stepper) or None."""
        return self.forcing if getattr(self.forcing, "stochastic", False) else None

    # ------------------------------------------------------------------------------------------
    # the nonlinear term

    def _kept_blocks(self):
        """(row slice, column slice) blocks of the local spectral array holding every mode the
        output mask keeps. The 2/3 rule keeps max(|kx|, |ky|) <= kmax: two row blocks (the rows
        between them stay zero) x the columns ``self._kept_cols`` (those right of them are zero
        in every spectral array the hot loop touches). With Numba kernels the blocks are just
        that; with array kernels they span whole rows, because NumPy runs contiguous operations
        several times faster than strided ones (the zero columns come along). Elementwise
        spectral work is done on these blocks only."""
        n = self.grid.n
        ncol = self.backend.spectral_shape[1]
        full = slice(0, ncol)
        if self.dealias != "2/3":
            self._kept_cols = full
            return [(slice(0, n), full)]
        kmax = self.grid.kmax_dealias
        kxi = self.grid.np["kxi"].ravel()
        cols = np.nonzero(kxi <= kmax)[0]
        if cols.size == 0:
            self._kept_cols = slice(0, 0)
            return []
        self._kept_cols = slice(int(cols[0]), int(cols[-1]) + 1)
        c = self._kept_cols if self.ops.name == "numba" else full
        return [(slice(0, kmax + 1), c), (slice(n - kmax, n), c)]

    def runner(self, batch=(), *regions: str):
        """The :class:`~solver.workers.BlockRunner` over ``regions`` (default "kept") for arrays
        with leading dims ``batch``: "kept" (the spectral blocks of :meth:`_kept_blocks`), "exact"
        (those blocks cut to the kept columns), "zero" (the spectral entries beside them that the
        planned inverse destroys) or "physical" (all rows of a physical array).

        ``runner(fn, ...)`` calls each region's ``fn(rows, cols)`` for every piece of it, all in one
        round: the numpy backend spreads the pieces over its FFT threads (bit-identical for any
        count), torch runs each block whole. ``fn`` must touch only ``[..., rows, cols]`` of its
        arrays. Steppers do their elementwise updates through :meth:`update_runner`."""
        regions = regions or ("kept",)
        key = ("runner", tuple(batch), regions)
        if key not in self._work:
            be = self.backend
            members = int(np.prod(batch)) if len(batch) else 1
            numpy_be = not be.is_torch
            specs = []
            for region in regions:
                if region == "physical":
                    ny, nx = be.physical_shape
                    blocks, itemsize = [(slice(0, ny), slice(0, nx))], np.dtype(be.dtype_name).itemsize
                elif region in ("kept", "exact", "zero"):
                    blocks = {"kept": self._blocks, "exact": self._exact_blocks(),
                              "zero": self._zero_blocks()}[region]
                    itemsize = 2 * np.dtype(be.dtype_name).itemsize
                else:
                    raise ValueError(f"region {region!r}: must be kept, exact, zero or physical")
                width = max([c.stop - c.start for _, c in blocks] + [1])
                specs.append((blocks, width * itemsize * members))
            piece = self.piece_bytes or (PIECE_BYTES if self.ops.name == "numba" else ARRAY_PIECE_BYTES)
            self._work[key] = BlockRunner(specs, threads=self.threads if numpy_be else 1,
                                          piece_bytes=piece if numpy_be else None)
        return self._work[key]

    def _exact_blocks(self):
        """The kept blocks cut to the kept columns (``_kept_blocks`` may span whole rows)."""
        return [(r, self._kept_cols) for r, _ in self._blocks]

    def update_runner(self, batch=()):
        """The runner a stepper updates ω̂ through: over the kept blocks, or, when an ``extra``
        term may put something into N right of the kept columns, over exactly the kept modes."""
        if self.extra is None or self.dealias != "2/3":
            return self.runner(batch, "kept")
        return self.runner(batch, "exact")

    def _zero_blocks(self):
        """The spectral entries outside the kept blocks that must be re-zeroed before each planned
        inverse (it destroys its input there): the rows between the two row blocks, in the kept
        columns when the backend ``skips_kx`` (its inverse never writes the others), else in all
        columns and, beside narrow kept blocks, the columns right of them too."""
        if self.dealias != "2/3":
            return []
        n, ncol = self.grid.n, self.backend.spectral_shape[1]
        if not self._blocks:
            return [] if self.backend.skips_kx else [(slice(0, n), slice(0, ncol))]
        kmax = self.grid.kmax_dealias
        if self.backend.skips_kx:
            return [(slice(kmax + 1, n - kmax), self._blocks[0][1])]
        out = [(slice(kmax + 1, n - kmax), slice(0, ncol))]
        if self._blocks[0][1].stop < ncol:
            tail = slice(self._blocks[0][1].stop, ncol)
            out += [(r, tail) for r, _ in self._blocks]
        return out

    def _sparse(self, values: np.ndarray, pieces):
        """Per piece ``(rows.start, cols.start)``: the piece-relative (row, col) indices and the
        values of the nonzero entries of ``values`` (a local spectral numpy array) inside it."""
        out = {}
        be = self.backend
        for _, r, c in pieces:
            sub = values[r, c]
            ri, ci = np.nonzero(sub)
            if ri.size:
                vals = be.asarray(sub[ri, ci], complex=True)
                if be.is_torch:
                    ri, ci = (be.xp.as_tensor(i, device=be.device) for i in (ri, ci))
                out[(r.start, c.start)] = (ri, ci, vals)
        return out

    def _workspace(self, batch):
        key = tuple(batch)
        if key in self._work:
            return self._work[key]
        be, g = self.backend, self.grid
        scale = 1.0 / (g.n * g.n)  # the planned inverse is unnormalised
        # two spectral inputs at a time (one batched inverse each), four physical fields
        spec = be.zeros_spectral((2,) + tuple(batch))
        phys = be.zeros_physical((4,) + tuple(batch))
        # the 2/3 rule zeroes every column kx > kmax: the transforms may skip them
        kx_stop = g.kmax_dealias + 1 if self.dealias == "2/3" else None

        def pair_inverse(dst):
            if be.name == "numpy":  # one batched FFTW plan
                return be.plan_irfft2(spec, dst, kx_stop=kx_stop)
            plans = [be.plan_irfft2(spec[i], dst[i], kx_stop=kx_stop) for i in range(2)]

            def run():  # torch's batched inverse is slower than two single ones
                plans[0]()
                plans[1]()
            return run
        inv = [pair_inverse(phys[0:2]), pair_inverse(phys[2:4])]
        j_hat = be.zeros_spectral(batch)
        fwd = be.plan_rfft2(phys[0], j_hat, kx_stop=kx_stop)
        kept = self.runner(batch, "kept")
        # separable masks: kept columns and kept rows (whole rows are processed, see _kept_blocks)
        if self.dealias == "2/3":
            kmax = g.kmax_dealias
            mx, my = (np.abs(g.np["kxi"]) <= kmax), (np.abs(g.np["kyi"]) <= kmax)
        else:
            mx, my = (np.abs(g.np["kxi"]) < g.n // 2), (np.abs(g.np["kyi"]) < g.n // 2)
        inv_k2 = np.broadcast_to(g.np["inv_k2"] * self.mask_np, be.spectral_shape)
        # entries inside the kept rectangle that the mask removes (k = 0; the Nyquist row and
        # column without the 2/3 rule): zeroed sparsely; the forcing is added sparsely too
        removed = np.zeros(be.spectral_shape)
        removed[:, self._kept_cols] = 1.0 - self.mask_np[:, self._kept_cols]
        ncol = be.spectral_shape[1]
        forcing = self.forcing_hat_np
        ws = dict(
            spec=spec, phys=phys, inv=inv, fwd=fwd, j_hat=j_hat,
            # ω̂_x = ω̂ i kx, ω̂_y = ω̂ i ky, û = ω̂_y / k², v̂ = -ω̂_x / k², scaled for the inverse
            ikx=be.asarray(1j * g.np["kx"] * mx * scale, complex=True),
            iky=be.asarray(1j * g.np["ky"] * my * scale, complex=True),
            inv_k2=be.asarray(inv_k2), neg_inv_k2=be.asarray(-inv_k2),
            removed=self._sparse(removed, kept.pieces),
            # whole-row blocks take in the columns right of the kept ones: N must be zero there
            tail=(slice(self._kept_cols.stop, ncol)
                  if self._blocks and self._blocks[0][1].stop > self._kept_cols.stop else None),
            # a forcing with few nonzero modes is added sparsely, else (an FFT's round-off
            # everywhere) in the same pass as the sign of Ĵ
            forcing=None if forcing is None else self._sparse(forcing, kept.pieces),
            forcing_dense=None,
            kept=kept, spectral=self.runner(batch, "kept", "zero", "zero"),
            physical=self.runner(batch, "physical"))
        if ws["forcing"] is not None:
            nnz = sum(len(v[0]) for v in ws["forcing"].values())
            kept_size = sum((r.stop - r.start) * (c.stop - c.start) for _, r, c in kept.pieces)
            if nnz > 0.01 * kept_size:
                ws["forcing"], ws["forcing_dense"] = None, self.forcing_hat
        self._work[key] = ws
        return ws

    def jacobian_hat(self, omega_hat, out=None):
        """Ĵ(ψ, ω), masked by the dealiasing rule (the transport term, without the minus sign)."""
        if self.dealias == "3/2":
            res = self._jacobian_padded(omega_hat)
        elif self.jacobian == "average":
            res = self._jacobian_average(omega_hat)
        else:
            ws = self._workspace(omega_hat.shape[:-2])
            self._advective_products(omega_hat, ws)
            res = ws["j_hat"]
            res = res * self.mask
        if out is None:
            return res
        out[...] = res
        return out

    def _advective_products(self, omega_hat, ws):
        """Ĵ = FFT(u ω_x + v ω_y) into ``ws['j_hat']`` (meaningful in the kept blocks only): 4 planned
        inverse FFTs and 1 forward, 5 real FFTs in all.

        A pair of spectral buffers feeds two batched inverses, (ω̂_x, û) then (ω̂_y, v̂), each
        pair made in one pass over ω̂; four physical buffers hold the fields, multiplied in one
        pass: four rounds of elementwise work in all, each in pieces (:meth:`runner`, kernels
        :attr:`ops`)."""
        K = self.ops
        (sa, sb), (p0, p1, p2, p3), inv = ws["spec"], ws["phys"], ws["inv"]
        ikx, iky, inv_k2, neg_inv_k2, removed = ws["ikx"], ws["iky"], ws["inv_k2"], ws["neg_inv_k2"], ws["removed"]

        def fix(r, c):  # entries of the piece the mask removes (mean, Nyquist): zero
            m = removed.get((r.start, c.start))
            if m is not None:
                for s in (sa, sb):
                    s[..., r, c][..., m[0], m[1]] = 0

        def zero_a(r, c):
            K.zero(sa, r, c)

        def zero_b(r, c):
            K.zero(sb, r, c)

        def omega_x_and_u(r, c):  # ω̂_x = i kx ω̂, û = i ky ω̂ / k²
            K.pair_x(omega_hat, ikx, iky, inv_k2, sa, sb, r, c)
            fix(r, c)

        def omega_y_and_v(r, c):  # ω̂_y = i ky ω̂, v̂ = -i kx ω̂ / k²
            K.pair_y(omega_hat, ikx, iky, neg_inv_k2, sa, sb, r, c)
            fix(r, c)

        def product(r, c):  # u ω_x + v ω_y
            K.dot2(p0, p1, p2, p3, r, c)

        ws["spectral"](omega_x_and_u, zero_a, zero_b)
        inv[0]()                                          # p0, p1 = ω_x, u
        ws["spectral"](omega_y_and_v, zero_a, zero_b)
        inv[1]()                                          # p2, p3 = ω_y, v
        ws["physical"](product)
        ws["fwd"]()

    def _jacobian_average(self, omega_hat):
        """½ (u·∇ω + ∇·(u ω)), both from the same physical fields; masked."""
        be, g = self.backend, self.grid
        uh, vh = self.velocity_hat(omega_hat)
        u, v = be.irfft2(uh * g.nyquist_free), be.irfft2(vh * g.nyquist_free)
        w = be.irfft2(omega_hat * g.nyquist_free)
        wx = be.irfft2(1j * g.kx * omega_hat * g.nyquist_free)
        wy = be.irfft2(1j * g.ky * omega_hat * g.nyquist_free)
        adv = be.rfft2(u * wx + v * wy)
        cons = 1j * g.kx * be.rfft2(u * w) + 1j * g.ky * be.rfft2(v * w)
        return 0.5 * (adv + cons) * self.mask

    def _jacobian_padded(self, omega_hat):
        """3/2 zero padding: transforms on an m = 3n/2 grid, product there, truncation back."""
        be, g, n = self.backend, self.grid, self.grid.n
        m = 3 * n // 2
        m += m % 2
        if self._pad is None:
            self._pad = make_backend(m, backend=be.name, dtype=be.dtype_name,
                                     device=be.device if be.name == "torch" else "cpu", threads=be.threads)
        pb = self._pad
        h = n // 2
        fac = (m / n) ** 2

        def pad(a):
            out = pb.zeros_spectral(a.shape[:-2])
            out[..., :h, :h] = a[..., :h, :h]
            out[..., m - h + 1:, :h] = a[..., n - h + 1:, :h]
            return out * fac

        def trunc(a):
            out = be.zeros_spectral(a.shape[:-2])
            out[..., :h, :h] = a[..., :h, :h]
            out[..., n - h + 1:, :h] = a[..., m - h + 1:, :h]
            return out / fac

        uh, vh = self.velocity_hat(omega_hat)
        u, v = pb.irfft2(pad(uh)), pb.irfft2(pad(vh))
        if self.jacobian == "average":
            w = pb.irfft2(pad(omega_hat))
            wx = pb.irfft2(pad(1j * g.kx * omega_hat))
            wy = pb.irfft2(pad(1j * g.ky * omega_hat))
            adv = trunc(pb.rfft2(u * wx + v * wy))
            cons = 1j * g.kx * trunc(pb.rfft2(u * w)) + 1j * g.ky * trunc(pb.rfft2(v * w))
            return 0.5 * (adv + cons) * self.mask
        wx = pb.irfft2(pad(1j * g.kx * omega_hat))
        wy = pb.irfft2(pad(1j * g.ky * omega_hat))
        return trunc(pb.rfft2(u * wx + v * wy)) * self.mask

    # ------------------------------------------------------------------------------------------
    # the explicit tendency N and the full right-hand side

    def nonlinear(self, omega_hat, t: float, out=None, then=None):
        """N = −Ĵ + F̂ + Ê(ω̂, t) (the explicit part), written into ``out`` if given.

        With the 2/3 rule only the modes the rule keeps are written: entries of ``out`` outside
        them must be zero already (allocate it with ``backend.zeros_spectral``). Stochastic forcing
        is not part of N (the stepper adds its increments).

        ``then``: an optional ``fn(rows, cols)`` over the pieces of :meth:`update_runner` (batch
        of ``omega_hat``), called on each piece of ``out`` as soon as it is final, while it is
        still in cache (a stepper's update); without an ``extra`` term it runs in the same round,
        else after it."""
        xp = self.backend.xp
        if out is None:
            out = self.backend.zeros_spectral(omega_hat.shape[:-2])
        batch = omega_hat.shape[:-2]
        if self.dealias == "3/2" or self.jacobian == "average":
            out[...] = -self.jacobian_hat(omega_hat)
            if self.forcing_hat is not None:
                for r, c in self._blocks:
                    xp.add(out[..., r, c], self.forcing_hat[r, c], out=out[..., r, c])
            fused = False
        else:
            ws = self._workspace(batch)
            self._advective_products(omega_hat, ws)
            j, removed, forcing, tail, K = ws["j_hat"], ws["removed"], ws["forcing"], ws["tail"], self.ops
            dense = ws["forcing_dense"]
            fused = then is not None and self.extra is None

            def finish(r, c):
                o = out[..., r, c]
                if dense is None:
                    K.negate(j, out, r, c)
                else:
                    K.negate_add(j, dense, out, r, c)
                if tail is not None:  # the columns above the kept ones stay zero
                    o[..., tail] = 0
                key = (r.start, c.start)
                m = removed.get(key)
                if m is not None:
                    o[..., m[0], m[1]] = 0
                f = forcing.get(key) if forcing is not None else None
                if f is not None:
                    o[..., f[0], f[1]] += f[2]
                if fused:
                    then(r, c)

            ws["kept"](finish)
        if self.extra is not None:
            xp.add(out, self.extra(omega_hat, t), out=out)
        if then is not None and not fused:
            self.update_runner(batch)(then)
        return out

    def rhs(self, omega_hat, t: float):
        """∂ω̂/∂t without stochastic forcing: L ω̂ + N(ω̂, t)."""
        return self.linear * omega_hat + self.nonlinear(omega_hat, t)

    def describe(self) -> dict:
        f = self.forcing.describe() if self.forcing is not None else {"forcing": "none"}
        return self.params.to_dict() | f | {"dealias": self.dealias, "jacobian": self.jacobian,
                                            "extra": self.extra is not None}
