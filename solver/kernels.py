"""The elementwise kernels of the solver's hot loop, in two implementations with one interface.

A step is five FFTs plus elementwise work over the kept modes (the four spectral products that
feed the inverse transforms, the physical product u ω_x + v ω_y, the AB2 update). That work is
bound by memory traffic, so what matters is how often each array is streamed through memory:

- :class:`ArrayOps` writes each kernel as a few array operations of the backend's own library
  (numpy or torch; ``xp.multiply(..., out=)``). It works on any backend and any piece shape.
- :class:`NumbaOps` (numpy backend with Numba installed) compiles each kernel into one loop over
  the piece (``nogil``, so the pieces of different threads run at once): every array is read or
  written once per kernel, strided pieces cost nothing extra, temporaries stay in registers.
  Where the process has one OpenMP runtime (:mod:`solver.openmp`) and the backend several
  threads, each call is itself parallel: its rows are dealt out to the OpenMP team that also runs
  FFTW's transforms, so a step hands work between them with no Python thread in between.

Both compute the same operations in the same order (IEEE arithmetic, no fast-math), so results
agree to the last bit in practice and to rounding by contract. ``TURBTL_KERNELS=numpy`` forces
:class:`ArrayOps` (for comparison and benchmarks).

Every kernel takes its arrays whole and a piece ``(rows, cols)`` (slices with step 1) of the last
two axes; leading (ensemble) axes are all processed.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import ParameterError
from .openmp import shared as openmp_shared

KERNELS_ENV = "TURBTL_KERNELS"

try:  # pragma: no cover - exercised by whichever is installed
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None


def numba_version() -> str | None:
    return None if _numba is None else _numba.__version__


def _requested() -> str:
    """``$TURBTL_KERNELS`` ("" when unset); ParameterError unless numba or numpy."""
    want = os.environ.get(KERNELS_ENV, "").strip().lower()
    if want not in ("", "numba", "numpy", "array"):
        raise ParameterError(f"{KERNELS_ENV} = {want!r}: must be numba or numpy", name=KERNELS_ENV)
    return want


def describe() -> str:
    """One line for ``turbtl info``: the numpy backend's hot-loop kernels here."""
    want = _requested()
    if _numba is not None and want not in ("numpy", "array"):
        if parallel_available():
            return f"numba {_numba.__version__} (fused loops, OpenMP-parallel on the team of FFTW's threads)"
        return f"numba {_numba.__version__} (fused loops, GIL released, pieces on a thread team)"
    why = f"{KERNELS_ENV}={want}" if want else "numba not installed"
    return f"numpy array operations ({why})"


class ArrayOps:
    """Kernels as array operations of ``xp`` (numpy or torch)."""

    name = "array"

    def __init__(self, xp):
        self.xp = xp

    def _times_col(self, omega, vec, out, r, c):
        """out = ω vec[cols] (a row vector over kx)."""
        self.xp.multiply(omega[..., r, c], vec[:, c], out=out[..., r, c])

    def _times_row(self, omega, vec, out, r, c):
        """out = ω vec[rows] (a column vector over ky)."""
        self.xp.multiply(omega[..., r, c], vec[r, :], out=out[..., r, c])

    def _times_col_real(self, omega, vec, q, out, r, c):
        """out = ω vec[cols] q (q real, 2D)."""
        s = out[..., r, c]
        self.xp.multiply(omega[..., r, c], vec[:, c], out=s)
        self.xp.multiply(s, q[r, c], out=s)

    def _times_row_real(self, omega, vec, q, out, r, c):
        """out = ω vec[rows] q (q real, 2D)."""
        s = out[..., r, c]
        self.xp.multiply(omega[..., r, c], vec[r, :], out=s)
        self.xp.multiply(s, q[r, c], out=s)

    def pair_x(self, omega, vx, vy, q, out_a, out_b, r, c):
        """out_a = ω vx[cols] (ω̂_x), out_b = ω vy[rows] q (û): one read of ω for two inputs."""
        self._times_col(omega, vx, out_a, r, c)
        self._times_row_real(omega, vy, q, out_b, r, c)

    def pair_y(self, omega, vx, vy, q, out_a, out_b, r, c):
        """out_a = ω vy[rows] (ω̂_y), out_b = ω vx[cols] q (v̂ with q = -1/k²)."""
        self._times_row(omega, vy, out_a, r, c)
        self._times_col_real(omega, vx, q, out_b, r, c)

    def fields4(self, omega, vx, vy, q, nq, s, r, c):
        """The four inputs of the inverse transforms in one pass over ω: :meth:`pair_x` into
        s[0], s[1] (ω̂_x, û), then :meth:`pair_y` with ``q = nq`` into s[2], s[3] (ω̂_y, v̂)."""
        self.pair_x(omega, vx, vy, q, s[0], s[1], r, c)
        self.pair_y(omega, vx, vy, nq, s[2], s[3], r, c)

    def zero(self, out, r, c):
        out[..., r, c] = 0

    def dot2(self, a, b, d, e, r, c):
        """a = a b + d e (d is overwritten)."""
        x, y = a[..., r, c], d[..., r, c]
        self.xp.multiply(x, b[..., r, c], out=x)
        self.xp.multiply(y, e[..., r, c], out=y)
        self.xp.add(x, y, out=x)

    def negate(self, src, out, r, c):
        """out = -src (complex). numpy's complex negative is slow: done on the float view."""
        s, o = src[..., r, c], out[..., r, c]
        if self.xp is np and s.strides[-1] == s.itemsize and o.strides[-1] == o.itemsize:
            real = np.float64 if s.dtype == np.complex128 else np.float32
            np.negative(s.view(real), out=o.view(real))
        else:
            self.xp.negative(s, out=o)

    def negate_add(self, src, f, out, r, c):
        """out = -src + f (f 2D, shared by the ensemble members)."""
        self.negate(src, out, r, c)
        o = out[..., r, c]
        self.xp.add(o, f[r, c], out=o)

    def negate_ab2(self, src, out, w, prev, A, B, f0, r, c):
        """out = -src, then :meth:`ab2` with ``n_now = out``: N and the AB2 update of a piece."""
        self.negate(src, out, r, c)
        self.ab2(w, prev, out, A, B, f0, r, c)

    def ab2(self, w, prev, n_now, A, B, f0, r, c):
        """w = A w + B (n_now + f0 prev) (prev is overwritten with the bracket times B)."""
        xp, p, wv = self.xp, prev[..., r, c], w[..., r, c]
        xp.multiply(p, f0, out=p)
        xp.add(p, n_now[..., r, c], out=p)
        xp.multiply(p, B[r, c], out=p)
        xp.multiply(wv, A[r, c], out=wv)
        xp.add(wv, p, out=wv)


def _stack(a):
    """``a`` as a 3D view (members, rows, cols); leading axes must be collapsible without a copy."""
    if a.ndim == 3:
        return a
    if a.ndim == 2:
        return a[None]
    v = a.reshape((-1,) + a.shape[-2:])
    if not np.shares_memory(v, a):  # pragma: no cover - the solver's buffers are contiguous
        raise ValueError("ensemble array is not contiguous in its leading axes")
    return v


_COMPILED: dict = {}


def _compile(parallel: bool = False) -> dict:
    """The Numba kernels, serial or OpenMP-parallel (compiled lazily, cached on disk next to this
    file when it is writable).

    Long because it holds every kernel: they are compiled together, once per variant, as closures
    over one ``jit`` setting (no fastmath: the same bits as the array operations). Each kernel
    runs one loop over the (member, row) pairs of its piece: ``prange`` in the parallel variant,
    which deals the rows out to the threads of the process's OpenMP team (:mod:`solver.openmp`;
    as many as :func:`numba.set_num_threads` last set on the calling thread), ``range`` in the
    serial one. The loop function is a closure cell, so the two variants are cached apart."""
    if parallel in _COMPILED:
        return _COMPILED[parallel]
    if parallel and _numba.config.THREADING_LAYER == "default":
        _numba.config.THREADING_LAYER = "omp"  # the runtime FFTW shares (solver/openmp.py)
    jit = _numba.njit(nogil=True, cache=True, boundscheck=False, fastmath=False, parallel=parallel)
    loop = _numba.prange if parallel else range  # a closure cell: the variants are cached apart

    # Each row of a piece is handled as 1D views indexed from 0, which LLVM vectorizes (the same
    # IEEE operations in the same order, no contraction: the bits of scalar code). Row t of the
    # flattened loop is member t // R, row r0 + t % R.
    @jit
    def pair_x(omega, vx, vy, q, out_a, out_b, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(omega.shape[0] * R):
            m, i = t // R, r0 + t % R
            x, v = vx[0, c0:c1], vy[i, 0]
            w, qr, a, b = omega[m, i, c0:c1], q[i, c0:c1], out_a[m, i, c0:c1], out_b[m, i, c0:c1]
            for k in range(c1 - c0):
                a[k] = w[k] * x[k]
                b[k] = (w[k] * v) * qr[k]

    @jit
    def pair_y(omega, vx, vy, q, out_a, out_b, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(omega.shape[0] * R):
            m, i = t // R, r0 + t % R
            x, v = vx[0, c0:c1], vy[i, 0]
            w, qr, a, b = omega[m, i, c0:c1], q[i, c0:c1], out_a[m, i, c0:c1], out_b[m, i, c0:c1]
            for k in range(c1 - c0):
                a[k] = w[k] * v
                b[k] = (w[k] * x[k]) * qr[k]

    @jit
    def fields4(omega, vx, vy, q, nq, s0a, s1a, s2a, s3a, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(omega.shape[0] * R):
            m, i = t // R, r0 + t % R
            x, v = vx[0, c0:c1], vy[i, 0]
            w, qr, nqr = omega[m, i, c0:c1], q[i, c0:c1], nq[i, c0:c1]
            s0, s1, s2, s3 = s0a[m, i, c0:c1], s1a[m, i, c0:c1], s2a[m, i, c0:c1], s3a[m, i, c0:c1]
            for k in range(c1 - c0):
                s0[k] = w[k] * x[k]
                s1[k] = (w[k] * v) * qr[k]
                s2[k] = w[k] * v
                s3[k] = (w[k] * x[k]) * nqr[k]

    @jit
    def zero(out, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(out.shape[0] * R):
            o = out[t // R, r0 + t % R, c0:c1]
            for k in range(c1 - c0):
                o[k] = 0

    @jit
    def dot2(a, b, d, e, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(a.shape[0] * R):
            m, i = t // R, r0 + t % R
            ar, br, dr, er = a[m, i, c0:c1], b[m, i, c0:c1], d[m, i, c0:c1], e[m, i, c0:c1]
            for k in range(c1 - c0):
                ar[k] = ar[k] * br[k] + dr[k] * er[k]

    @jit
    def negate(src, out, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(src.shape[0] * R):
            m, i = t // R, r0 + t % R
            sr, o = src[m, i, c0:c1], out[m, i, c0:c1]
            for k in range(c1 - c0):
                o[k] = -sr[k]

    @jit
    def negate_add(src, f, out, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(src.shape[0] * R):
            m, i = t // R, r0 + t % R
            sr, fr, o = src[m, i, c0:c1], f[i, c0:c1], out[m, i, c0:c1]
            for k in range(c1 - c0):
                o[k] = -sr[k] + fr[k]

    @jit
    def ab2(w, prev, n_now, A, B, f0, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(w.shape[0] * R):
            m, i = t // R, r0 + t % R
            wr, pr, nr = w[m, i, c0:c1], prev[m, i, c0:c1], n_now[m, i, c0:c1]
            ar, br = A[i, c0:c1], B[i, c0:c1]
            for k in range(c1 - c0):
                p = (pr[k] * f0 + nr[k]) * br[k]
                wr[k] = wr[k] * ar[k] + p

    @jit
    def negate_ab2(src, out, w, prev, A, B, f0, r0, r1, c0, c1):
        R = r1 - r0
        for t in loop(w.shape[0] * R):
            m, i = t // R, r0 + t % R
            sr, o, wr, pr = src[m, i, c0:c1], out[m, i, c0:c1], w[m, i, c0:c1], prev[m, i, c0:c1]
            ar, br = A[i, c0:c1], B[i, c0:c1]
            for k in range(c1 - c0):
                nk = -sr[k]
                o[k] = nk
                p = (pr[k] * f0 + nk) * br[k]
                wr[k] = wr[k] * ar[k] + p

    # The fused x pass (solver/fftw_rows.py): part t of `parts` takes the blocks t, t + parts, ...
    # of rows; per block, FFTW's c2r of the four fields' rows into the part's buffer tmp[t], the
    # product u ω_x + v ω_y in place (dot2's operations), FFTW's r2c of the product into Ĵ's rows.
    # c2r and r2c are FFTW's new-array executes (ctypes functions, thread-safe), called with
    # addresses (int64). One call runs the parts [t0, t1): in parallel over them, or one by one.
    @jit
    def x_pass(c2r, r2c, plan_c2r, plan_r2c, spec, spec_step, tmp, tmp0, tmp_step, j_hat, blocks,
               t0, t1, parts):
        for u in loop(t1 - t0):
            t = t0 + u
            a, b, d, e = tmp[t, 0], tmp[t, 1], tmp[t, 2], tmp[t, 3]
            buf = tmp0 + t * tmp_step
            for blk in range(t, blocks, parts):
                c2r(plan_c2r, spec + blk * spec_step, buf)
                for i in range(a.shape[0]):
                    ar, br, dr, er = a[i], b[i], d[i], e[i]
                    for k in range(ar.shape[0]):
                        ar[k] = ar[k] * br[k] + dr[k] * er[k]
                r2c(plan_r2c, buf, j_hat + blk * spec_step)

    _COMPILED[parallel] = dict(pair_x=pair_x, pair_y=pair_y, zero=zero, dot2=dot2, negate=negate,
                               negate_add=negate_add, ab2=ab2, fields4=fields4, negate_ab2=negate_ab2,
                               x_pass=x_pass)
    return _COMPILED[parallel]


def parallel_available() -> bool:
    """Whether :class:`NumbaOps` may run its kernels on several threads: Numba is installed, its
    threading layer may be OpenMP, and the process has one OpenMP runtime (:mod:`solver.openmp`;
    next to FFTW's own runtime, parallel kernels would make every step many times slower)."""
    return _numba is not None and openmp_shared() and _numba.config.THREADING_LAYER in ("default", "omp")


class NumbaOps:
    """The same kernels compiled by Numba: one pass over each array, GIL released.

    ``threads`` (:meth:`set_threads`): above 1 (and where :func:`parallel_available`), each call
    deals the rows of its piece out to that many threads of the process's OpenMP team, the team
    FFTW's transforms use; results are the same bits for any count."""

    name = "numba"

    def __init__(self, threads: int = 1):
        self.set_threads(threads)

    def set_threads(self, threads: int) -> None:
        """Threads of every later call: ``threads`` where :func:`parallel_available`, else 1.
        Numba's thread count belongs to a thread: calls from other threads than this one use
        theirs (``NUMBA_NUM_THREADS`` unless set); the results are the same bits."""
        self.threads = threads if threads > 1 and parallel_available() else 1
        self.k = _compile(self.threads > 1)
        if self.threads > 1:
            _numba.set_num_threads(min(self.threads, _numba.config.NUMBA_NUM_THREADS))

    @property
    def parallel(self) -> bool:
        return self.threads > 1

    def pair_x(self, omega, vx, vy, q, out_a, out_b, r, c):
        self.k["pair_x"](_stack(omega), vx, vy, q, _stack(out_a), _stack(out_b),
                         r.start, r.stop, c.start, c.stop)

    def pair_y(self, omega, vx, vy, q, out_a, out_b, r, c):
        self.k["pair_y"](_stack(omega), vx, vy, q, _stack(out_a), _stack(out_b),
                         r.start, r.stop, c.start, c.stop)

    def fields4(self, omega, vx, vy, q, nq, s, r, c):
        """The four inputs of the inverse transforms in one pass over ω: ``s[0..3]`` as
        :meth:`pair_x` (into s[0], s[1]) then :meth:`pair_y` with ``q = nq`` (into s[2], s[3])."""
        self.k["fields4"](_stack(omega), vx, vy, q, nq, _stack(s[0]), _stack(s[1]),
                          _stack(s[2]), _stack(s[3]), r.start, r.stop, c.start, c.stop)

    def zero(self, out, r, c):
        self.k["zero"](_stack(out), r.start, r.stop, c.start, c.stop)

    def dot2(self, a, b, d, e, r, c):
        self.k["dot2"](_stack(a), _stack(b), _stack(d), _stack(e), r.start, r.stop,
                       c.start, c.stop)

    def negate(self, src, out, r, c):
        self.k["negate"](_stack(src), _stack(out), r.start, r.stop, c.start, c.stop)

    def negate_add(self, src, f, out, r, c):
        self.k["negate_add"](_stack(src), f, _stack(out), r.start, r.stop, c.start, c.stop)

    def negate_ab2(self, src, out, w, prev, A, B, f0, r, c):
        """out = -src, then :meth:`ab2` with ``n_now = out``, in one pass over the piece."""
        if A.ndim != 2 or B.ndim != 2:
            raise ValueError("AB2 coefficients must be 2D (rows, cols)")
        f0 = (np.float32 if w.dtype == np.complex64 else np.float64)(f0)  # no float32 -> 64 promotion
        self.k["negate_ab2"](_stack(src), _stack(out), _stack(w), _stack(prev), A, B, f0,
                             r.start, r.stop, c.start, c.stop)

    def ab2(self, w, prev, n_now, A, B, f0, r, c):
        if A.ndim != 2 or B.ndim != 2:
            raise ValueError("AB2 coefficients must be 2D (rows, cols)")
        f0 = (np.float32 if w.dtype == np.complex64 else np.float64)(f0)  # no float32 -> 64 promotion
        self.k["ab2"](_stack(w), _stack(prev), _stack(n_now), A, B, f0,
                      r.start, r.stop, c.start, c.stop)


    def x_pass(self, c2r, r2c, spec, tmp, j_hat, block: int, parts: slice | None = None) -> None:
        """The fused x pass: ``j_hat`` rows = r2c(dot2(c2r(the four fields' rows))) for every block
        of ``block`` rows, with the :class:`~solver.fftw_rows.RowPlan` pair ``c2r``, ``r2c`` (made
        for these shapes); ``spec`` (4, R, ncol), ``tmp`` (P, 4, block, n) and ``j_hat`` (R, ncol)
        C-contiguous. The blocks are dealt out to P parts (part t: blocks t, t + P, ..., in
        ``tmp[t]``); this call runs the parts ``parts`` (default all), on this object's threads
        when parallel. Every block is the same plans' work whoever runs it: the same bits."""
        rows, ncol = spec.shape[1], spec.shape[2]
        step = block * ncol * spec.itemsize
        p = parts or slice(0, tmp.shape[0])
        self.k["x_pass"](c2r.execute, r2c.execute, c2r.ptr, r2c.ptr, spec.ctypes.data, step, tmp,
                         tmp.ctypes.data, tmp[0].nbytes, j_hat.ctypes.data, rows // block,
                         p.start, p.stop, tmp.shape[0])


def host_array(x):
    """A torch tensor's numpy view (same memory); anything else as it is."""
    return x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x


class TensorNumbaOps(NumbaOps):
    """:class:`NumbaOps` for torch tensors on CPU: each tensor argument is passed as the numpy view
    of its memory (about a microsecond per argument), so the torch backend on CPU runs the numpy
    backend's kernels, serial or OpenMP-parallel alike."""


def _on_views(method):
    def call(self, *args):
        return method(self, *[host_array(a) for a in args])
    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


for _name in ("pair_x", "pair_y", "fields4", "zero", "dot2", "negate", "negate_add", "ab2", "negate_ab2"):
    setattr(TensorNumbaOps, _name, _on_views(getattr(NumbaOps, _name)))


def choose(backend):
    """The kernels for ``backend``: when Numba is installed (and ``TURBTL_KERNELS`` is not "numpy"),
    :class:`NumbaOps` for numpy arrays and :class:`TensorNumbaOps` for torch tensors on CPU; else
    :class:`ArrayOps` of the backend's ``xp`` (always on CUDA)."""
    want = _requested()
    if _numba is None or want in ("numpy", "array"):
        return ArrayOps(backend.xp)
    if backend.is_torch:
        return TensorNumbaOps() if str(backend.device) == "cpu" else ArrayOps(backend.xp)
    return NumbaOps()
