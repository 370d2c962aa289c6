"""The slab-decomposed 2D real FFT over the ranks of an MPI group (docs/CONTRACTS.md).

Physical rows (y) are split in equal blocks, spectral ``kx`` columns of the ``rfft2`` layout in
contiguous blocks balanced over the columns the 2/3 rule keeps (:func:`kx_blocks`). ``rfft2`` =
local 1D real FFT along x, a global transpose (one ``Alltoallw``), local 1D FFT along y;
``irfft2`` runs the same steps backwards; see :mod:`solver.parallel` for the decomposition of
the ranks into groups. mpi4py is imported where a transpose needs it (an optional dependency).
"""
from __future__ import annotations

from math import prod

import numpy as np

from ..errors import ParameterError
from ..parallel import _rank, _size, block_range, check_slab_grid, local_device
from .base import FFTBackend, fftw_plan
from .numpy_fft import NumpyFFT
from .torch_fft import TorchFFT


def kept_columns(n: int) -> int:
    """How many leading ``kx`` columns (``0 <= kx <= (n-1)//3``) the 2/3 rule keeps on an ``n``² grid
    (``solver.grid.Grid.kmax_dealias`` + 1)."""
    return (n - 1) // 3 + 1


def kx_blocks(n: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of the spectral ``kx`` columns of each of ``parts`` ranks (contiguous, in
    rank order, covering ``0 ... n//2``).

    The columns the 2/3 rule keeps (:func:`kept_columns`) are split as :func:`block_range` does
    (kept-column counts differ by at most one); the last rank also holds the always-zero columns
    above them, which the dealiased hot-loop transforms skip. Where fewer columns are kept than
    there are ranks, all ``n//2+1`` columns are split by :func:`block_range`."""
    nkx, keep = n // 2 + 1, kept_columns(n)
    if keep < parts:
        return [block_range(nkx, parts, r) for r in range(parts)]
    blocks = [block_range(keep, parts, r) for r in range(parts)]
    blocks[-1] = (blocks[-1][0], nkx)
    return blocks


# --------------------------------------------------------------------------------------------
# the global transpose


def _mpi_real(dtype):
    from mpi4py import MPI  # optional dependency: serial runs never load MPI
    return MPI.DOUBLE if np.dtype(dtype) == np.float64 else MPI.FLOAT


class _Transpose:
    """The global transpose for one batch shape: one ``Alltoallw`` with derived datatypes, so the
    MPI library moves the strided blocks itself (no packing copies in Python).

    ``rows`` ``(*batch, ny_local, nkx)``: x-transformed local rows, every kx column.
    ``cols`` ``(*batch, n, nkx_local)``: every row, the local kx columns.
    To/from rank q travels the block ``(*batch, ny_local, kx_slice(q))`` of ``rows`` and the block
    ``(*batch, y_slice(q), nkx_local)`` of ``cols``; with ``kx_stop`` only the global columns
    ``kx < kx_stop`` of those blocks travel (the others are neither read nor written). Both arrays
    must be C-contiguous numpy arrays.
    """

    def __init__(self, fft: "SlabFFT", batch: tuple, kx_stop: int | None = None):
        B, n, ny, nkx, nkl = prod(batch), fft.n, fft.ny_local, fft.nkx, fft.nkx_local
        self.rows_shape, self.cols_shape = tuple(batch) + (ny, nkx), tuple(batch) + (n, nkl)
        self.comm, self.p = fft.comm, fft.size
        self.row_types = self.col_types = []
        stop = nkx if kx_stop is None else min(int(kx_stop), nkx)
        self.width = [max(0, min(e, stop) - s) for s, e in fft._kx_blocks]  # columns sent per rank
        if fft.comm is None:
            return
        real = _mpi_real(fft.np_dtype)
        size = np.dtype(fft.np_cdtype).itemsize
        self.row_types = [real.Create_vector(B * ny, 2 * w, 2 * nkx).Commit() for w in self.width]
        self.row_disp = [size * s for s, _ in fft._kx_blocks]
        kl = self.width[fft.rank]
        if kl == nkl:
            col_type = real.Create_vector(B, 2 * ny * nkl, 2 * n * nkl).Commit()
        else:
            inner = real.Create_vector(ny, 2 * kl, 2 * nkl)
            col_type = inner.Create_hvector(B, 1, size * n * nkl).Commit()
            inner.Free()
        self.col_types = [col_type] * self.p
        self.col_disp = [size * r * ny * nkl for r in range(self.p)]
        self.row_counts = [1 if w else 0 for w in self.width]
        self.col_counts = [1 if kl else 0] * self.p

    @staticmethod
    def _args(a, shape, counts, types, disp):
        if a.shape != shape or not a.flags.c_contiguous:
            raise ValueError(f"transpose buffer must be C-contiguous of shape {shape}, got {a.shape}")
        return [a, (counts, disp), types]

    def rows_to_cols(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Fill ``cols`` from ``rows`` (the forward transpose)."""
        if self.comm is None:
            w = self.width[0]
            np.copyto(cols[..., :w], rows[..., :w])
            return
        self.comm.Alltoallw(self._args(rows, self.rows_shape, self.row_counts, self.row_types, self.row_disp),
                            self._args(cols, self.cols_shape, self.col_counts, self.col_types, self.col_disp))

    def cols_to_rows(self, cols: np.ndarray, rows: np.ndarray) -> None:
        """Fill ``rows`` from ``cols`` (the inverse transpose)."""
        if self.comm is None:
            w = self.width[0]
            np.copyto(rows[..., :w], cols[..., :w])
            return
        self.comm.Alltoallw(self._args(cols, self.cols_shape, self.col_counts, self.col_types, self.col_disp),
                            self._args(rows, self.rows_shape, self.row_counts, self.row_types, self.row_disp))

    def free(self) -> None:
        for t in set(self.row_types + self.col_types):
            t.Free()
        self.row_types = self.col_types = []


# --------------------------------------------------------------------------------------------
# slab FFT


class SlabFFT(FFTBackend):
    """Real-to-complex 2D FFT of an ``n``² periodic grid slab-decomposed over the ranks of ``comm``.

    Implements the FFT-backend contract (docs/CONTRACTS.md; base class
    :class:`solver.backends.base.FFTBackend`): physical arrays ``(..., n//p, n)`` hold rows ``y_slice``;
    spectral arrays ``(..., n, nkx_local)`` hold the ``kx`` columns ``kx_slice`` of numpy's ``rfft2``
    layout (contiguous blocks of :func:`kx_blocks`: the kept columns of the 2/3 rule balanced, the
    last rank also holding the columns above them); ``rfft2``/``irfft2`` follow numpy's
    normalisation; leading batch dimensions are carried through. ``comm`` may have a single rank
    (then no messages are sent).

    ``plan_rfft2``/``plan_irfft2`` take ``kx_stop`` (the equation passes the 2/3 rule's
    :func:`kept_columns`): the columns ``kx >= kx_stop`` are not transposed or transformed (the
    inverse takes them to be zero, the forward leaves them as they were), so the dealiased step's
    work is split evenly.

    ``backend="numpy"``: 1D FFTW plans (pyFFTW, same planner as the serial backend: see
    ``solver.backends.base.DEFAULT_PLANNER``; numpy.fft if pyFFTW is missing) on aligned buffers, x transforms
    on the local rows, in-place y transforms on the local columns. ``backend="torch"``: torch.fft
    on this rank's device (``device="cuda"`` = the node-local rank's GPU), transposes staged through
    host memory. Array helpers (``xp``, ``empty``, ``asarray`` ...) are those of the serial backend.
    """

    def __init__(self, n: int, comm=None, *, backend: str = "numpy", dtype: str = "float64",
                 device: str = "cpu", threads: int = 0):
        self.comm = comm
        self.size = _size(comm)
        self.rank = _rank(comm)
        if not (isinstance(n, int) and n >= 4 and n % 2 == 0):
            raise ParameterError(f"n = {n!r}: must be an even integer >= 4", name="n")
        check_slab_grid(n, self.size)
        if backend == "numpy":
            self.local = NumpyFFT(n, dtype=dtype, threads=threads)
        elif backend == "torch":
            self.local = TorchFFT(n, dtype=dtype, device=local_device(comm, device), threads=threads)
        else:
            raise ParameterError(f"backend = {backend!r}: accepted are numpy, torch", name="backend")
        loc = self.local
        self.name, self.xp, self.device, self.threads = loc.name, loc.xp, loc.device, loc.threads
        self.dtype, self.cdtype, self.dtype_name = loc.dtype, loc.cdtype, loc.dtype_name
        self.np_dtype = np.dtype(dtype)
        self.np_cdtype = np.dtype("complex128" if dtype == "float64" else "complex64")
        self.nkx = n // 2 + 1
        self.ny_local = n // self.size
        self._kx_blocks = kx_blocks(n, self.size)
        self.nkx_local = self._kx_blocks[self.rank][1] - self._kx_blocks[self.rank][0]
        self._setup_layout(n, slice(self.rank * self.ny_local, (self.rank + 1) * self.ny_local),
                           slice(*self._kx_blocks[self.rank]))
        self._fftw = getattr(loc, "_fftw", None) if backend == "numpy" else None
        self.skips_kx = backend == "numpy"
        self.planner = getattr(loc, "planner", None)
        self._pipes: dict = {}

    # -- array helpers: the serial backend's ------------------------------------------------
    def empty(self, shape, complex=False):
        return self.local.empty(shape, complex)

    def zeros(self, shape, complex=False):
        return self.local.zeros(shape, complex)

    def asarray(self, x, complex=False):
        return self.local.asarray(x, complex)

    def to_numpy(self, x):
        return self.local.to_numpy(x)

    def copy(self, x):
        return self.local.copy(x)

    def synchronize(self):
        self.local.synchronize()

    def describe(self) -> dict:
        local = self.local.describe()
        return local | {"n": self.n, "decomposition": "slab", "ranks": self.size, "rank": self.rank,
                        "rows": [self.y_slice.start, self.y_slice.stop],
                        "kx": [self.kx_slice.start, self.kx_slice.stop]}

    def summary(self) -> str:
        lib = self.local.summary().split(": ", 1)[-1] if self.name == "numpy" else self.local.summary()
        return (f"slab {self.name} n={self.n} {self.dtype_name} over {self.size} ranks "
                f"(rank {self.rank}: rows {self.y_slice.start}:{self.y_slice.stop}, "
                f"kx {self.kx_slice.start}:{self.kx_slice.stop}); {lib}")

    # -- numpy pipelines ----------------------------------------------------------------------
    def _host_alloc(self, shape, complex=True):
        dt = self.np_cdtype if complex else self.np_dtype
        if self._fftw is not None:
            return self._fftw.empty_aligned(tuple(shape), dtype=dt)
        return np.empty(tuple(shape), dtype=dt)

    def _plan(self, src, dst, axis: int, forward: bool):
        """A zero-argument callable: unnormalised 1D transform of ``src`` along ``axis`` into
        ``dst`` (may be ``src`` for complex in-place); r2c/c2r when one side is real."""
        if self._fftw is not None:
            return fftw_plan(src, dst, (axis,), forward, self.planner, self.threads).execute
        real_in, real_out = not np.iscomplexobj(src), not np.iscomplexobj(dst)
        if real_in:
            return lambda: np.copyto(dst, np.fft.rfft(src, axis=axis))
        if real_out:
            return lambda: np.copyto(dst, np.fft.irfft(src, n=self.n, axis=axis, norm="forward"))
        f = np.fft.fft if forward else np.fft.ifft
        return lambda: np.copyto(dst, f(src, axis=axis, norm="backward" if forward else "forward"))

    def _transpose(self, batch, kx_stop=None) -> _Transpose:
        key = ("transpose", tuple(batch), kx_stop)
        if key not in self._pipes:
            self._pipes[key] = _Transpose(self, tuple(batch), kx_stop)
        return self._pipes[key]

    def _kx_stop(self, kx_stop):
        """``kx_stop`` as an int in [1, nkx], or None when every column takes part."""
        if kx_stop is None or kx_stop >= self.nkx:
            return None
        if not (isinstance(kx_stop, (int, np.integer)) and kx_stop >= 1):
            raise ValueError(f"kx_stop = {kx_stop!r}: must be an integer >= 1 (or None)")
        return int(kx_stop)

    def _forward(self, batch, src=None, dst=None, kx_stop=None):
        """Planned forward pipeline for ``batch``: returns (run, src, dst); run() leaves
        ``dst = rfft2(src)`` (only the columns ``kx < kx_stop``, when given). x transforms into a
        row buffer, transpose straight into ``dst``, in-place y transforms there. Buffers not given
        are allocated here."""
        t = self._transpose(batch, kx_stop)
        src = self._host_alloc(batch + self.physical_shape, complex=False) if src is None else src
        dst = self._host_alloc(batch + self.spectral_shape) if dst is None else dst
        rows = self._host_alloc(t.rows_shape)
        fx = self._plan(src, rows, -1, True)
        kl = t.width[self.rank]
        fy = self._plan(dst[..., :kl], dst[..., :kl], -2, True) if kl else (lambda: None)

        def run():
            fx()
            t.rows_to_cols(rows, dst)
            fy()
        return run, src, dst

    def _backward(self, batch, src=None, dst=None, kx_stop=None):
        """Planned inverse pipeline: run() leaves ``dst = n**2 * irfft2(src)`` (unnormalised)
        and overwrites ``src`` (in-place y transforms, transposed from there). With ``kx_stop``
        the columns ``kx >= kx_stop`` of ``src`` are taken to be zero and not read."""
        t = self._transpose(batch, kx_stop)
        src = self._host_alloc(batch + self.spectral_shape) if src is None else src
        dst = self._host_alloc(batch + self.physical_shape, complex=False) if dst is None else dst
        rows = self._host_alloc(t.rows_shape)
        rows[...] = 0
        kl = t.width[self.rank]
        by = self._plan(src[..., :kl], src[..., :kl], -2, False) if kl else (lambda: None)
        bx = self._plan(rows, dst, -1, False)
        tail = rows[..., kx_stop:] if kx_stop is not None else None

        def run():
            by()
            t.cols_to_rows(src, rows)
            if tail is not None:
                tail.fill(0)  # the c2r transform destroys its input
            bx()
        return run, src, dst

    def _pipe(self, batch, forward):
        key = (tuple(batch), forward)
        if key not in self._pipes:
            self._pipes[key] = (self._forward if forward else self._backward)(tuple(batch))
        return self._pipes[key]

    # -- torch path ---------------------------------------------------------------------------
    def _torch_rfft2(self, u):
        torch = self.local.torch
        a = torch.fft.rfft(u, dim=-1)
        if self.size == 1:
            return torch.fft.fft(a, dim=-2)
        t = self._transpose(tuple(u.shape[:-2]))
        cols = np.empty(t.cols_shape, self.np_cdtype)
        t.rows_to_cols(np.ascontiguousarray(a.detach().cpu().numpy()), cols)
        return torch.fft.fft(torch.from_numpy(cols).to(self.device), dim=-2)

    def _torch_irfft2(self, u_hat, norm):
        torch = self.local.torch
        a = torch.fft.ifft(u_hat, dim=-2, norm=norm)
        if self.size > 1:
            t = self._transpose(tuple(u_hat.shape[:-2]))
            rows = np.empty(t.rows_shape, self.np_cdtype)
            t.cols_to_rows(np.ascontiguousarray(a.detach().cpu().numpy()), rows)
            a = torch.from_numpy(rows).to(self.device)
        return torch.fft.irfft(a, n=self.n, dim=-1, norm=norm)

    # -- transforms ---------------------------------------------------------------------------
    def _check(self, a, spectral):
        shape = self.spectral_shape if spectral else self.physical_shape
        if tuple(a.shape[-2:]) != shape:
            raise ValueError(f"expected trailing shape {shape} on rank {self.rank}, got {tuple(a.shape)}")

    def rfft2(self, u, out=None):
        """Unnormalised forward real 2D FFT: local rows ``(..., ny_local, n)`` -> local columns
        ``(..., n, nkx_local)`` of numpy.fft.rfft2 of the global array."""
        self._check(u, False)
        if self.name == "torch":
            res = self._torch_rfft2(u)
            return res if out is None else out.copy_(res)
        run, src, dst = self._pipe(u.shape[:-2], True)
        np.copyto(src, u)
        run()
        if out is None:
            return self.copy(dst)
        np.copyto(out, dst)
        return out

    def irfft2(self, u_hat, out=None):
        """Inverse of :meth:`rfft2`, normalised by 1/n² (numpy.fft.irfft2); the input is kept."""
        self._check(u_hat, True)
        if self.name == "torch":
            res = self._torch_irfft2(u_hat, "backward")
            return res if out is None else out.copy_(res)
        run, src, dst = self._pipe(u_hat.shape[:-2], False)
        np.copyto(src, u_hat)
        run()
        if out is None:
            out = self.empty(dst.shape)
        np.multiply(dst, 1.0 / (self.n * self.n), out=out)
        return out

    def plan_rfft2(self, src, dst, kx_stop=None):
        """``dst[...] = rfft2(src)`` as a zero-argument callable bound to these buffers; with
        ``kx_stop`` only the global columns ``kx < kx_stop`` of ``dst`` are computed (numpy
        backend: the others are left as they were)."""
        self._check(src, False)
        self._check(dst, True)
        if self.name == "torch":
            return lambda: dst.copy_(self._torch_rfft2(src))
        return self._forward(tuple(src.shape[:-2]), src, dst, self._kx_stop(kx_stop))[0]

    def plan_irfft2(self, src, dst, kx_stop=None):
        """``dst[...] = n**2 * irfft2(src)`` (unnormalised) as a zero-argument callable; ``src``
        may be overwritten. With ``kx_stop``, ``src`` must be zero in the global columns
        ``kx >= kx_stop`` (numpy backend: they are not read)."""
        self._check(src, True)
        self._check(dst, False)
        if self.name == "torch":
            return lambda: dst.copy_(self._torch_irfft2(src, "forward"))
        return self._backward(tuple(src.shape[:-2]), src, dst, self._kx_stop(kx_stop))[0]

    # -- reductions ---------------------------------------------------------------------------
    def _allgather(self, x):
        """Every rank's value of ``x`` stacked in rank order (numpy), and how to convert back."""
        is_host = isinstance(x, (np.ndarray, np.generic, float, int, complex, bool))
        h0 = np.asarray(x) if is_host else self.to_numpy(x)
        h = np.ascontiguousarray(h0).reshape(h0.shape)  # ascontiguousarray makes 0-d arrays 1-d
        out = np.empty((self.size,) + h.shape, dtype=h.dtype)
        self.comm.Allgather(h, out)

        def back(r):
            if not is_host:
                return self.local.xp.asarray(r).to(self.device) if self.name == "torch" else r
            if isinstance(x, np.ndarray):
                return r
            return r[()].item() if isinstance(x, (float, int, complex, bool)) else r[()]
        return out, back

    def allsum(self, x):
        """Sum of ``x`` over the ranks of the group, added in rank order, so every rank gets the
        bit-identical result (identity when serial). Scalars, numpy arrays or tensors."""
        if self.size == 1:
            return x
        stack, back = self._allgather(x)
        acc = stack[0].copy()
        for r in range(1, self.size):
            acc += stack[r]
        return back(acc)

    def allmax(self, x):
        """Maximum of ``x`` over the ranks of the group (identity when serial)."""
        if self.size == 1:
            return x
        stack, back = self._allgather(x)
        return back(stack.max(axis=0))

    # -- global arrays in the serial layout --------------------------------------------------
    def _gather(self, local, axis: int, root: int):
        h = np.ascontiguousarray(self.to_numpy(local))
        if self.size == 1:
            return h.copy()
        parts = self.comm.gather(h, root=root)
        return np.concatenate(parts, axis=axis) if self.rank == root else None

    def _scatter(self, global_array, index, complex: bool, root: int):
        if self.size == 1:
            return self.asarray(np.asarray(global_array), complex=complex)
        parts = None
        if self.rank == root:
            g = np.asarray(global_array)
            parts = [np.ascontiguousarray(g[(Ellipsis,) + index(r)]) for r in range(self.size)]
        return self.asarray(self.comm.scatter(parts, root=root), complex=complex)

    def gather_spectral(self, u_hat, root: int = 0):
        """The global spectral array ``(..., n, n//2+1)`` (numpy) on ``root``; None elsewhere."""
        return self._gather(u_hat, -1, root)

    def gather_physical(self, u, root: int = 0):
        """The global physical array ``(..., n, n)`` (numpy) on ``root``; None elsewhere."""
        return self._gather(u, -2, root)

    def scatter_spectral(self, global_hat, root: int = 0):
        """This rank's kx columns of a global spectral array given on ``root`` (ignored elsewhere)."""
        return self._scatter(global_hat, lambda r: (slice(None), slice(*self._kx_blocks[r])), True, root)

    def scatter_physical(self, u, root: int = 0):
        """This rank's rows of a global physical array given on ``root`` (ignored elsewhere)."""
        ny = self.ny_local
        return self._scatter(u, lambda r: (slice(r * ny, (r + 1) * ny), slice(None)), False, root)
