"""The hot loop of the nonlinear term: kept blocks, runners and the planned workspace.

:class:`solver.equation.Equation` states the physics; this module makes its advective Jacobian
(2/3 rule or none) fast. Nothing here changes a result: the same 5 real FFTs and the same
elementwise operations as the reference formula, done in place on preallocated buffers, on the
blocks of the spectral array that hold kept modes, with the kernels of :mod:`solver.kernels`:
OpenMP-parallel kernels on the team of FFTW's threads where the process has one OpenMP runtime
(:mod:`solver.openmp`), else serial kernels in cache-sized pieces on a thread team of the
runner's own (:mod:`solver.workers`). The torch backend on CPU runs the same on its tensors'
memory (numpy views: :attr:`NonlinearPlan.host`). Where it can (:attr:`NonlinearPlan.fused_x`),
the x passes of the transforms and the physical product run block of rows by block of rows in one
kernel calling FFTW (:mod:`solver.fftw_rows`): no physical field is ever held whole.

- :class:`FastPath` (one per equation): the kept blocks of the local spectral array, the
  :class:`~solver.workers.BlockRunner` of any region (:meth:`FastPath.runner`), the runner
  steppers update through (:meth:`FastPath.update_runner`) and one :class:`NonlinearPlan` per
  batch shape (:meth:`FastPath.plan`). Set ``threads``/``piece_bytes`` before the first step to
  change how the elementwise work is cut (``threads`` None, the default: parallel kernels where
  :meth:`FastPath.parallel_kernels`, else the runner's team on the backend's threads for large
  arrays and one thread for small ones, :meth:`FastPath.team_threads`; a number: serial kernels
  on a team of that many threads): results are bit-identical for any choice.
- :class:`NonlinearPlan` (``equation``, ``batch``): the :class:`Workspace` (FFT plans, buffers,
  coefficient vectors, sparse corrections) and the two hot operations: :meth:`~NonlinearPlan.jacobian`
  (Ĵ into the workspace) and :meth:`~NonlinearPlan.minus_jacobian` (N = −Ĵ + F̂ into ``out``,
  piece by piece, optionally followed on each piece by a stepper's update).

Invariant of every spectral array the hot loop touches (docs/CONTRACTS.md "Solver hot loop"): zero
outside the kept rows and right of the kept columns (:attr:`FastPath.kept_cols`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import fftw_rows
from .backends.numpy_fft import NumpyFFT, fftw_y_plan
from .kernels import choose as choose_kernels, host_array, parallel_available
from .workers import ARRAY_PIECE_BYTES, PIECE_BYTES, BlockRunner, team

#: with ``FastPath.threads`` None, the elementwise work of arrays with fewer spectral entries than
#: this (all members together) runs on the calling thread alone: a round of the thread team costs
#: more than it saves there (measured: 128², 256², 6 x 128² faster on one thread; 512² alike)
TEAM_MIN_ENTRIES = 100_000

#: a forcing with more nonzero kept modes than this fraction is added densely (one pass with −Ĵ)
DENSE_FORCING_FRACTION = 0.01


class FastPath:
    """Blocks, runners and plans of one :class:`~solver.equation.Equation` (see the module doc)."""

    def __init__(self, equation):
        self.equation, self.grid, self.backend = equation, equation.grid, equation.backend
        self.dealias = equation.dealias
        self.ops = choose_kernels(self.backend)  # the hot loop's elementwise kernels
        #: the hot loop works on host (numpy) memory: numpy arrays, or CPU tensors' numpy views
        #: (Numba kernels on a torch backend); torch's own array operations (CUDA) work on tensors
        self.host = self.ops.name == "numba" or not self.backend.is_torch
        # threads and piece size of the elementwise work (numpy backend); threads None: automatic
        # (:meth:`team_threads`)
        self.threads = None
        self.piece_bytes = None
        self.kept_cols = slice(0, 0)
        self.blocks = self._kept_blocks()
        self._runners: dict = {}
        self._plans: dict = {}

    # -- geometry --------------------------------------------------------------------------------
    def _kept_blocks(self):
        """(row slice, column slice) blocks of the local spectral array holding every mode the
        output mask keeps. The 2/3 rule keeps max(|kx|, |ky|) <= kmax: two row blocks (the rows
        between them stay zero) x the columns :attr:`kept_cols` (those right of them are zero
        in every spectral array the hot loop touches). With Numba kernels the blocks are just
        that; with array kernels they span whole rows, because NumPy runs contiguous operations
        several times faster than strided ones (the zero columns come along). Sets
        :attr:`kept_cols`."""
        n = self.grid.n
        full = slice(0, self.backend.spectral_shape[1])
        if self.dealias != "2/3":
            self.kept_cols = full
            return [(slice(0, n), full)]
        kmax = self.grid.kmax_dealias
        cols = np.nonzero(self.grid.host.kxi.ravel() <= kmax)[0]
        if cols.size == 0:
            self.kept_cols = slice(0, 0)
            return []
        self.kept_cols = slice(int(cols[0]), int(cols[-1]) + 1)
        c = self.kept_cols if self.ops.name == "numba" else full
        return [(slice(0, kmax + 1), c), (slice(n - kmax, n), c)]

    def exact_blocks(self):
        """The kept blocks cut to the kept columns (:attr:`blocks` may span whole rows)."""
        return [(r, self.kept_cols) for r, _ in self.blocks]

    def zero_blocks(self):
        """The spectral entries outside the kept blocks that must be re-zeroed before each planned
        inverse (it destroys its input there): the rows between the two row blocks, in the kept
        columns when the backend ``skips_kx`` (its inverse never writes the others), else in all
        columns and, beside narrow kept blocks, the columns right of them too."""
        if self.dealias != "2/3":
            return []
        n, ncol = self.grid.n, self.backend.spectral_shape[1]
        if not self.blocks:
            return [] if self.backend.skips_kx else [(slice(0, n), slice(0, ncol))]
        kmax = self.grid.kmax_dealias
        if self.backend.skips_kx:
            return [(slice(kmax + 1, n - kmax), self.blocks[0][1])]
        out = [(slice(kmax + 1, n - kmax), slice(0, ncol))]
        if self.blocks[0][1].stop < ncol:
            tail = slice(self.blocks[0][1].stop, ncol)
            out += [(r, tail) for r, _ in self.blocks]
        return out

    # -- runners ---------------------------------------------------------------------------------
    def parallel_kernels(self) -> bool:
        """Whether the elementwise work runs inside OpenMP-parallel Numba kernels, on the team FFTW's
        transforms use (:mod:`solver.openmp`): numpy backend with several threads, Numba kernels,
        :func:`~solver.kernels.parallel_available`, and :attr:`threads` left None. Otherwise the
        kernels are serial and :meth:`runner` shares pieces out to a thread team of its own."""
        return (self.threads is None and self.ops.name == "numba" and self.backend.threads > 1
                and parallel_available())

    def team_threads(self, batch=()) -> int:
        """Threads of the runners' own team on arrays with leading dims ``batch``: :attr:`threads`
        if set; 1 with :meth:`parallel_kernels` (the kernels are parallel); else the backend's
        threads for arrays of at least :data:`TEAM_MIN_ENTRIES` spectral entries and 1 below.
        Results are the same bits for any choice."""
        if self.threads is not None:
            return self.threads
        if self.parallel_kernels():
            return 1
        members = int(np.prod(batch)) if len(batch) else 1
        entries = members * int(np.prod(self.backend.spectral_shape))
        return self.backend.threads if entries >= TEAM_MIN_ENTRIES else 1

    def runner(self, batch=(), *regions: str) -> BlockRunner:
        """The :class:`~solver.workers.BlockRunner` over ``regions`` (default "kept") for arrays
        with leading dims ``batch``: "kept" (:attr:`blocks`), "exact" (those blocks cut to the kept
        columns), "zero" (:meth:`zero_blocks`) or "physical" (all rows of a physical array).

        ``runner(fn, ...)`` calls each region's ``fn(rows, cols)`` for every piece of it, all in one
        round: the numpy backend spreads the pieces over :meth:`team_threads` threads
        (bit-identical for any count), torch runs each block whole. ``fn`` must touch only ``[..., rows, cols]``."""
        regions = regions or ("kept",)
        key = (tuple(batch), regions)
        if key not in self._runners:
            be = self.backend
            members = int(np.prod(batch)) if len(batch) else 1
            specs = []
            for region in regions:
                if region == "physical":
                    ny, nx = be.physical_shape
                    blocks, itemsize = [(slice(0, ny), slice(0, nx))], np.dtype(be.dtype_name).itemsize
                elif region in ("kept", "exact", "zero"):
                    blocks = {"kept": self.blocks, "exact": self.exact_blocks(),
                              "zero": self.zero_blocks()}[region]
                    itemsize = 2 * np.dtype(be.dtype_name).itemsize
                else:
                    raise ValueError(f"region {region!r}: must be kept, exact, zero or physical")
                width = max([c.stop - c.start for _, c in blocks] + [1])
                specs.append((blocks, width * itemsize * members))
            piece = self.piece_bytes or (PIECE_BYTES if self.ops.name == "numba" else ARRAY_PIECE_BYTES)
            numpy_be = self.host  # elementwise work on host memory: pieces and threads apply
            parallel = self.parallel_kernels()
            if self.ops.name == "numba":  # parallel kernels take whole blocks, one call each
                self.ops.set_threads(be.threads if parallel else 1)
            self._runners[key] = BlockRunner(specs, threads=self.team_threads(batch) if numpy_be else 1,
                                             piece_bytes=piece if numpy_be and not parallel else None)
        return self._runners[key]

    def update_runner(self, batch=()) -> BlockRunner:
        """The runner a stepper updates ω̂ through: over the kept blocks, or, when an ``extra``
        term may put something into N right of the kept columns, over exactly the kept modes."""
        if self.equation.extra is None or self.dealias != "2/3":
            return self.runner(batch, "kept")
        return self.runner(batch, "exact")

    def plan(self, batch=()) -> "NonlinearPlan":
        """The :class:`NonlinearPlan` for arrays with leading dims ``batch`` (built once)."""
        key = tuple(batch)
        if key not in self._plans:
            self._plans[key] = NonlinearPlan(self.equation, key)
        return self._plans[key]

    def add_on_blocks(self, out, term) -> None:
        """``out += term`` on the kept blocks (``term`` zero outside them), unbatched ``term``."""
        add = self.backend.xp.add
        for r, c in self.blocks:
            add(out[..., r, c], term[r, c], out=out[..., r, c])


def _entries(backend, values: np.ndarray, host: bool = False):
    """The nonzero entries of ``values`` (a local spectral numpy array): (row indices, column
    indices, values) as backend arrays (``host``: numpy, values of the backend's complex dtype), or
    None when there are none. They index the last two axes of any (batched) spectral array."""
    ri, ci = np.nonzero(values)
    if ri.size == 0:
        return None
    vals = backend.asarray(values[ri, ci], complex=True)
    if host:
        return ri, ci, host_array(vals)
    if backend.is_torch:
        ri, ci = (backend.xp.as_tensor(i, device=backend.device) for i in (ri, ci))
    return ri, ci, vals


@dataclass
class Workspace:
    """Everything :class:`NonlinearPlan` reuses from one evaluation to the next."""

    spec: Any                 # the inputs of one batched inverse: (4, *batch, ...) ω̂_x, û, ω̂_y, v̂
                              # (NonlinearPlan.quad), else (2, *batch, ...) two at a time
    phys: Any                 # four physical buffers (4, *batch, ...): ω_x, u, ω_y, v (None with x_pass)
    inverse: list             # zero-argument plans: [spec -> phys] (quad), else
                              # [spec -> phys[0:2], spec -> phys[2:4]]; with x_pass: [the y pass of spec]
    forward: Callable         # phys[0] -> j_hat; with x_pass: the y pass of j_hat
    x_pass: Callable | None   # the fused x pass: spec (after its y pass) -> j_hat (before its y pass)
    j_hat: Any                # Ĵ (meaningful in the kept blocks only)
    ikx: Any                  # i kx (masked column factor) / n², for ω̂_x and v̂
    iky: Any                  # i ky (masked row factor) / n², for ω̂_y and û
    inv_k2: Any               # mask / k²
    neg_inv_k2: Any           # −mask / k²
    removed: tuple | None     # (rows, cols, ·) of the entries inside the kept blocks the mask removes
                              # (k = 0; the Nyquist row and column without the 2/3 rule)
    tail: slice | None        # columns right of the kept ones that whole-row blocks take in
    forcing: tuple | None     # a sparse steady forcing: (rows, cols, values)
    forcing_dense: Any        # a dense steady forcing (backend array) or None
    kept: BlockRunner         # pieces of the kept blocks
    spectral: BlockRunner     # kept, zero (quad) or kept, zero, zero: one round making the inputs
    physical: BlockRunner     # pieces of the physical rows


class NonlinearPlan:
    """The advective Ĵ and N = −Ĵ + F̂ of ``equation`` for arrays with leading dims ``batch``
    (:attr:`ws`: the :class:`Workspace`)."""

    def __init__(self, equation, batch=()):
        self.equation, self.batch = equation, tuple(batch)
        self.fast: FastPath = equation.fast
        self.ops = self.fast.ops
        #: the workspace holds numpy arrays (:attr:`FastPath.host`): the numpy backend's, or the
        #: numpy views of a CPU torch backend's tensors (Numba kernels, ``TensorNumbaOps``)
        self.host = self.fast.host
        #: all four inverse inputs in one round and one batched inverse (serial numpy backend, and
        #: torch on CPU with Numba kernels)
        self.quad = isinstance(equation.backend, NumpyFFT) or (self.host and equation.backend.is_torch)
        #: the x passes of the transforms and the product fused, block of rows by block of rows
        #: (:mod:`solver.fftw_rows`): quad, Numba kernels, pruned FFTW plans, pyFFTW's FFTW found
        be = equation.backend
        self.fused_x = bool(
            self.quad and self.ops.name == "numba" and self.fast.dealias == "2/3"
            and be._pruned(equation.grid.kmax_dealias + 1) is not None and fftw_rows.available(be.dtype_name))
        self.j_hat_backend = None  # Ĵ as the backend's array (set by _workspace)
        self.ws = self._workspace()

    def _transforms(self, batch):
        """(spec, phys, inverse plans, forward, j_hat, x_pass) on fresh buffers. The serial numpy
        backend makes all four inverse inputs at once and transforms them in one batched FFTW plan
        (:attr:`quad`); the others two at a time, (ω̂_x, û) then (ω̂_y, v̂). With :attr:`fused_x`
        the plans are the y passes and ``x_pass`` does the rest (:meth:`_fused_x_pass`)."""
        be, g = self.equation.backend, self.equation.grid
        # the 2/3 rule zeroes every column kx > kmax: the transforms may skip them
        kx_stop = g.kmax_dealias + 1 if self.fast.dealias == "2/3" else None
        if self.fused_x:
            spec, j_hat = be.zeros_spectral((4,) + batch), be.zeros_spectral(batch)
            hs, hj, ks = host_array(spec), host_array(j_hat), be._pruned(kx_stop)
            inverse = [fftw_y_plan(hs, ks, False, be.planner, be.threads)]
            forward = fftw_y_plan(hj, ks, True, be.planner, be.threads)
            return spec, None, inverse, forward, j_hat, self._fused_x_pass(hs, hj)
        phys = be.zeros_physical((4,) + batch)  # four physical fields: ω_x, u, ω_y, v
        if self.quad:
            spec = be.zeros_spectral((4,) + batch)
            inverse = [be.plan_irfft2(spec, phys, kx_stop=kx_stop)]
        else:
            spec = be.zeros_spectral((2,) + batch)

            def pair_inverse(dst):
                if be.name == "numpy":  # one batched FFTW plan
                    return be.plan_irfft2(spec, dst, kx_stop=kx_stop)
                plans = [be.plan_irfft2(spec[i], dst[i], kx_stop=kx_stop) for i in range(2)]

                def run():  # torch's batched inverse is slower than two single ones
                    plans[0]()
                    plans[1]()
                return run
            inverse = [pair_inverse(phys[0:2]), pair_inverse(phys[2:4])]
        j_hat = be.zeros_spectral(batch)
        forward = be.plan_rfft2(phys[0], j_hat, kx_stop=kx_stop)
        return spec, phys, inverse, forward, j_hat, None

    def _fused_x_pass(self, spec, j_hat) -> Callable:
        """The fused x pass on the host arrays ``spec`` (4, *batch, n, ncol) and ``j_hat``: blocks
        of rows (all members' rows in a row, :func:`~solver.fftw_rows.block_rows`) dealt out to as
        many parts as the elementwise work has threads (the parallel kernels' OpenMP team, else the
        runners' own team: :meth:`FastPath.team_threads`), one buffer of four physical blocks per
        part, the two row plans of :func:`~solver.fftw_rows.row_plans`; ``NumbaOps.x_pass`` runs
        them. The same bits for any number of parts."""
        import pyfftw  # fused_x implies it
        be, ops = self.equation.backend, self.ops
        ncol, n = spec.shape[-1], be.physical_shape[-1]
        spec3, j2 = spec.reshape(4, -1, ncol), j_hat.reshape(-1, ncol)
        real = np.dtype(be.dtype_name)
        block = fftw_rows.block_rows(spec3.shape[1], n, real.itemsize)
        self.fast.runner(self.batch)  # sets the kernels' threads (FastPath.runner)
        parts = ops.threads if ops.parallel else self.fast.team_threads(self.batch)
        parts = max(1, min(parts, spec3.shape[1] // block))
        tmp = pyfftw.zeros_aligned((parts, 4, block, n), dtype=real, n=64)
        c2r, r2c = fftw_rows.row_plans(spec3, tmp, j2, block, be.planner)
        crew = None if ops.parallel else team(parts)

        if crew is None:
            def run():
                ops.x_pass(c2r, r2c, spec3, tmp, j2, block)
        else:
            def part(t):
                ops.x_pass(c2r, r2c, spec3, tmp, j2, block, slice(t, t + 1))

            def run():
                crew.run(part, range(parts))
        run.block, run.parts = block, parts
        return run

    def _spectral_regions(self) -> tuple:
        """The regions of the round making the inverse inputs: the kept blocks, and the entries
        the inverse destroys (once per buffer; none without the 2/3 rule)."""
        if not self.fast.zero_blocks():
            return ("kept",)
        return ("kept", "zero") if self.quad else ("kept", "zero", "zero")

    def _workspace(self) -> Workspace:
        eq, fast, batch = self.equation, self.fast, self.batch
        be, g = eq.backend, eq.grid
        scale = 1.0 / (g.n * g.n)  # the planned inverse is unnormalised
        self.spectral_regions = self._spectral_regions()
        spec, phys, inverse, forward, j_hat, x_pass = self._transforms(batch)
        self.j_hat_backend = j_hat
        host = host_array if self.host else (lambda x: x)  # numpy views of CPU tensors (same memory)
        spec, phys, j_hat = host(spec), (None if phys is None else host(phys)), host(j_hat)
        kept = fast.runner(batch, "kept")
        # separable masks: kept columns and kept rows (whole rows are processed, see FastPath)
        mx, my = g.mask_factors(eq.dealias)
        mask = eq.mask_host
        inv_k2 = np.broadcast_to(g.host.inv_k2 * mask, be.spectral_shape)
        # entries inside the kept rectangle that the mask removes (k = 0; the Nyquist row and
        # column without the 2/3 rule): zeroed sparsely; the forcing is added sparsely too
        removed = np.zeros(be.spectral_shape)
        for r, c in fast.exact_blocks():  # the kept rows and columns (not the rows between them)
            removed[r, c] = 1.0 - mask[r, c]
        ncol = be.spectral_shape[1]
        forcing = eq.forcing_hat_host
        ws = Workspace(
            spec=spec, phys=phys, inverse=inverse, forward=forward, x_pass=x_pass, j_hat=j_hat,
            # ω̂_x = ω̂ i kx, ω̂_y = ω̂ i ky, û = ω̂_y / k², v̂ = -ω̂_x / k², scaled for the inverse
            ikx=host(be.asarray(1j * g.host.kx * mx * scale, complex=True)),
            iky=host(be.asarray(1j * g.host.ky * my * scale, complex=True)),
            inv_k2=host(be.asarray(inv_k2)), neg_inv_k2=host(be.asarray(-inv_k2)),
            removed=_entries(be, removed, self.host),
            # whole-row blocks take in the columns right of the kept ones: N must be zero there
            tail=(slice(fast.kept_cols.stop, ncol)
                  if fast.blocks and fast.blocks[0][1].stop > fast.kept_cols.stop else None),
            # a forcing with few nonzero modes is added sparsely, else (an FFT's round-off
            # everywhere) in the same pass as the sign of Ĵ
            forcing=None if forcing is None else _entries(be, forcing, self.host),
            forcing_dense=None,
            kept=kept, spectral=fast.runner(batch, *self.spectral_regions),
            physical=fast.runner(batch, "physical"))
        if ws.forcing is not None:
            nnz = len(ws.forcing[0])
            kept_size = sum((r.stop - r.start) * (c.stop - c.start) for _, r, c in kept.pieces)
            if nnz > DENSE_FORCING_FRACTION * kept_size:
                ws.forcing, ws.forcing_dense = None, host(eq.forcing_hat)
        return ws

    def jacobian(self, omega_hat):
        """Ĵ = FFT(u ω_x + v ω_y) into ``ws.j_hat`` (meaningful in the kept blocks only), returned
        as the backend's array (:attr:`j_hat_backend`, the same memory):
        4 planned inverse FFTs and 1 forward, 5 real FFTs in all.

        :attr:`quad`: the four spectral inputs made in one pass over ω̂, one batched inverse of all
        four; else a pair of spectral buffers feeds two batched inverses, (ω̂_x, û) then (ω̂_y, v̂),
        each pair made in one pass over ω̂. Four physical buffers hold the fields, multiplied in
        one pass: three (quad) or four rounds of elementwise work in all, each in pieces. With
        :attr:`fused_x` the inverse and the forward are their y passes, and ``ws.x_pass`` does the
        x passes and the product between them, block of rows by block of rows."""
        K, ws = self.ops, self.ws
        if self.host:
            omega_hat = host_array(omega_hat)
        spec, inv = ws.spec, ws.inverse
        ikx, iky, inv_k2, neg_inv_k2, removed = ws.ikx, ws.iky, ws.inv_k2, ws.neg_inv_k2, ws.removed

        def fix():  # the entries the mask removes (mean; Nyquist): zero, after each round
            if removed is not None:
                spec[..., removed[0], removed[1]] = 0

        def product(r, c):  # u ω_x + v ω_y
            p0, p1, p2, p3 = ws.phys
            K.dot2(p0, p1, p2, p3, r, c)

        if self.quad:
            def inputs(r, c):  # ω̂_x = i kx ω̂, û = i ky ω̂ / k², ω̂_y = i ky ω̂, v̂ = -i kx ω̂ / k²
                K.fields4(omega_hat, ikx, iky, inv_k2, neg_inv_k2, spec, r, c)

            def zero(r, c):
                K.zero(spec, r, c)

            ws.spectral(inputs, *[zero] * (len(self.spectral_regions) - 1))
            fix()
            inv[0]()                                      # p0, p1, p2, p3 = ω_x, u, ω_y, v
            if ws.x_pass is None:
                ws.physical(product)
            else:  # inv and forward are the y passes; the x passes and the product, fused
                ws.x_pass()
            ws.forward()
            return self.j_hat_backend
        sa, sb = spec

        def zero_a(r, c):
            K.zero(sa, r, c)

        def zero_b(r, c):
            K.zero(sb, r, c)

        def omega_x_and_u(r, c):  # ω̂_x = i kx ω̂, û = i ky ω̂ / k²
            K.pair_x(omega_hat, ikx, iky, inv_k2, sa, sb, r, c)

        def omega_y_and_v(r, c):  # ω̂_y = i ky ω̂, v̂ = -i kx ω̂ / k²
            K.pair_y(omega_hat, ikx, iky, neg_inv_k2, sa, sb, r, c)

        zeros = [zero_a, zero_b] if len(self.spectral_regions) == 3 else []
        ws.spectral(omega_x_and_u, *zeros)
        fix()
        inv[0]()                                          # p0, p1 = ω_x, u
        ws.spectral(omega_y_and_v, *zeros)
        fix()
        inv[1]()                                          # p2, p3 = ω_y, v
        ws.physical(product)
        ws.forward()
        return self.j_hat_backend

    def minus_jacobian(self, omega_hat, out, then: Callable | None = None) -> None:
        """``out`` = −Ĵ + F̂ (steady forcing) on the kept modes, zero on the other entries of the
        kept blocks; ``then(rows, cols)`` called on each piece as soon as it is final.

        The removed entries and a sparse forcing are put into Ĵ first, so that one negation per
        piece gives N: Ĵ = −0 there (N = +0), Ĵ − F̂ at the forced modes (N = F̂ − Ĵ, the same
        value as −Ĵ + F̂). When ``then`` carries ``ab2_update`` = (w, prev, out, A, B, f0) (the AB2
        update into this ``out``, :class:`solver.stepping.AB2CN`), N and the update are one pass
        over each piece (``kernels.negate_ab2``): the same operations, one read of N fewer."""
        self.jacobian(omega_hat)
        ws, K = self.ws, self.ops
        args = getattr(then, "ab2_update", None)
        fused = None
        if args is not None and args[2] is out and ws.forcing_dense is None and ws.tail is None:
            fused = args[:2] + args[3:]  # w, prev, A, B, f0
        if self.host:
            out = host_array(out)
        j, removed, forcing, tail, dense = ws.j_hat, ws.removed, ws.forcing, ws.tail, ws.forcing_dense
        if removed is not None:
            j[..., removed[0], removed[1]] = -0.0
        if forcing is not None:
            j[..., forcing[0], forcing[1]] -= forcing[2]

        def finish(r, c):
            if fused is not None:
                K.negate_ab2(j, out, *fused, r, c)
                return
            if dense is None:
                K.negate(j, out, r, c)
            else:
                K.negate_add(j, dense, out, r, c)
            if tail is not None:  # the columns above the kept ones stay zero
                out[..., r, c][..., tail] = 0
            if then is not None:
                then(r, c)

        ws.kept(finish)
