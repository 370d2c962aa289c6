"""MPI parallelism of the DNS: ensemble groups of ranks and the slab-decomposed 2D real FFT.

Two levels (DESIGN.md, "Parallelism"):

1. :class:`Decomposition` splits the ranks of a communicator into *groups* of ``ranks_per_member``
   consecutive ranks (``comm.Split``). Ensemble members are spread over the groups in contiguous,
   balanced blocks: with ``M`` members and ``G`` groups, group ``g`` holds members
   ``[g*M//G + min(g, M%G) ...)``, i.e. the first ``M % G`` groups hold one member more (the
   ``numpy.array_split`` rule). A group runs its members together as one leading batch dimension.
   More groups than members is allowed: the surplus groups are *idle* (``decomp.idle``), hold no
   member and only take part in the world-wide agreements (blow-up checks, barriers).
2. :class:`SlabFFT` slab-decomposes each member over the ranks of its group: physical rows (y) are
   split in equal blocks, spectral ``kx`` columns of the ``rfft2`` layout in contiguous balanced
   blocks (docs/CONTRACTS.md). ``rfft2`` = local 1D real FFT along x, a global transpose
   (``Alltoallv`` on numpy buffers), local 1D FFT along y; ``irfft2`` runs the same steps
   backwards. The torch backend does its 1D transforms on the rank's device and stages the
   transposes through host memory.

Reductions (:meth:`SlabFFT.allsum`, :meth:`SlabFFT.allmax`) gather every rank's contribution and
combine them in rank order, so every rank gets the *bit-identical* number (not just what the MPI
library's reduction tree happens to give).

:func:`agree_or_raise` and :func:`abort_on_error` make failures collective: a blow-up detected on
one rank is raised on every rank with the same message, and an unexpected exception on one rank
aborts the whole job instead of leaving its partners waiting in a collective forever.

Benchmark (one thread per rank)::

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m solver.parallel --bench 1024 20
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from math import prod

import numpy as np

from suite.errors import ConfigError, SimulationBlowUp

__all__ = ["block_range", "Decomposition", "SlabFFT", "agree_or_raise", "abort_on_error",
           "local_device", "bench"]


def block_range(n_items: int, n_parts: int, part: int) -> tuple[int, int]:
    """``[start, stop)`` of block ``part`` when ``n_items`` are split into ``n_parts`` contiguous
    blocks, the first ``n_items % n_parts`` blocks one item longer (``numpy.array_split``)."""
    q, r = divmod(n_items, n_parts)
    start = part * q + min(part, r)
    return start, start + q + (1 if part < r else 0)


def _size(comm) -> int:
    return 1 if comm is None else comm.Get_size()


def _rank(comm) -> int:
    return 0 if comm is None else comm.Get_rank()


# --------------------------------------------------------------------------------------------
# two-level decomposition


class Decomposition:
    """Ranks of ``comm`` in groups of ``ranks_per_member``; ``members`` spread over the groups.

    Attributes: ``world`` (the given communicator, or None when serial), ``n_groups``, ``group``
    (this rank's group), ``group_comm`` (the ranks of this group; None when serial), ``members``
    (the global member indices this group holds, a ``range``), ``idle``.

    Raises :class:`ConfigError` (field ``dns.ranks_per_member``) when the rank count is not a
    multiple of ``ranks_per_member``.
    """

    def __init__(self, comm, members: int, ranks_per_member: int = 1):
        size = _size(comm)
        if members < 1:
            raise ConfigError(f"members = {members}: must be >= 1", field="dns.members")
        if ranks_per_member < 1 or size % ranks_per_member:
            raise ConfigError(
                f"dns.ranks_per_member = {ranks_per_member}: must be >= 1 and divide the number of "
                f"MPI ranks ({size}); accepted here: "
                f"{', '.join(str(d) for d in range(1, size + 1) if size % d == 0)}",
                field="dns.ranks_per_member")
        self.world = comm
        self.n_members = members
        self.ranks_per_member = ranks_per_member
        self.n_groups = size // ranks_per_member
        rank = _rank(comm)
        self.group = rank // ranks_per_member
        if comm is None:
            self.group_comm = None
        else:
            self.group_comm = comm.Split(self.group, rank)
        self.members = range(*block_range(members, self.n_groups, self.group))
        self.idle = len(self.members) == 0

    def owner(self, member: int) -> int:
        """The group that holds global member ``member``."""
        for g in range(self.n_groups):
            a, b = block_range(self.n_members, self.n_groups, g)
            if a <= member < b:
                return g
        raise ConfigError(f"member = {member}: must be in [0, {self.n_members - 1}]", field="member")

    @property
    def group_rank(self) -> int:
        return _rank(self.group_comm)

    @property
    def is_group_root(self) -> bool:
        return self.group_rank == 0

    def check_grid(self, n: int) -> None:
        """Raise ConfigError unless an ``n``² grid can be slab-decomposed over a group."""
        check_slab_grid(n, self.ranks_per_member)

    def free(self) -> None:
        if self.group_comm is not None:
            self.group_comm.Free()
            self.group_comm = None

    def __repr__(self):
        return (f"Decomposition(ranks={_size(self.world)}, groups={self.n_groups}, "
                f"ranks_per_member={self.ranks_per_member}, members={self.n_members}, "
                f"group={self.group}, local_members={list(self.members)})")


def check_slab_grid(n: int, ranks: int) -> None:
    """Raise ConfigError unless ``n`` rows split evenly over ``ranks`` and every rank gets at least
    one of the ``n//2+1`` spectral columns."""
    if n % ranks or n // 2 + 1 < ranks:
        ok = [d for d in range(1, n + 1) if n % d == 0 and n // 2 + 1 >= d]
        raise ConfigError(
            f"grid.n_dns = {n} cannot be slab-decomposed over {ranks} ranks per member: n must be a "
            f"multiple of the ranks per member and n//2+1 >= ranks; ranks per member accepted for "
            f"n = {n}: {', '.join(map(str, ok))}", field="grid.n_dns")


# --------------------------------------------------------------------------------------------
# local 1D transforms (numpy / pyFFTW / torch)


class _NumpyLines:
    """1D transforms along x (last axis) and y (second to last) with numpy.fft (pocketfft)."""

    host = True

    def rfft_x(self, a):
        return np.fft.rfft(a, axis=-1)

    def irfft_x(self, a, n):
        return np.fft.irfft(a, n=n, axis=-1)

    def fft_y(self, a):
        return np.fft.fft(a, axis=-2)

    def ifft_y(self, a):
        return np.fft.ifft(a, axis=-2)

    def to_host(self, a):
        return a

    def from_host(self, a):
        return a


class _FFTWLines(_NumpyLines):
    """The same transforms planned with pyFFTW (plans cached per shape and dtype)."""

    def __init__(self, threads: int):
        import pyfftw
        import pyfftw.builders as b
        pyfftw.interfaces.cache.enable()
        self._b = b
        self._threads = max(1, threads)
        self._plans = {}

    def _plan(self, kind, a, **kw):
        key = (kind, a.shape, a.dtype.str, tuple(sorted(kw.items())))
        plan = self._plans.get(key)
        if plan is None:
            builder = getattr(self._b, kind)
            plan = builder(np.empty_like(a), threads=self._threads, planner_effort="FFTW_ESTIMATE",
                           avoid_copy=False, **kw)
            self._plans[key] = plan
        return plan

    def rfft_x(self, a):
        return self._plan("rfft", a, axis=-1)(a).copy()

    def irfft_x(self, a, n):
        return self._plan("irfft", a, n=n, axis=-1)(a).copy()

    def fft_y(self, a):
        return self._plan("fft", a, axis=-2)(a).copy()

    def ifft_y(self, a):
        return self._plan("ifft", a, axis=-2)(a).copy()


class _TorchLines:
    """1D transforms with torch.fft on the rank's device; transposes are staged through the host."""

    host = False

    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = torch.device(device)

    def rfft_x(self, a):
        return self.torch.fft.rfft(a, dim=-1)

    def irfft_x(self, a, n):
        return self.torch.fft.irfft(a, n=n, dim=-1)

    def fft_y(self, a):
        return self.torch.fft.fft(a, dim=-2)

    def ifft_y(self, a):
        return self.torch.fft.ifft(a, dim=-2)

    def to_host(self, a):
        return a.detach().contiguous().cpu().numpy()

    def from_host(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)


def local_device(comm, device: str = "cuda") -> str:
    """``cuda:<local rank mod #GPUs>`` for one rank per GPU; ``cpu`` when no GPU is asked or seen."""
    if device == "cpu":
        return "cpu"
    import torch
    if not torch.cuda.is_available():
        if device == "cuda":
            raise ConfigError("dns.device = 'cuda': no CUDA device is visible on this node; "
                              "accepted here: cpu, auto", field="dns.device")
        return "cpu"
    if device.startswith("cuda:"):
        return device
    local = 0
    if comm is not None:
        from mpi4py import MPI
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, comm.Get_rank())
        local = node.Get_rank()
        node.Free()
    return f"cuda:{local % torch.cuda.device_count()}"


# --------------------------------------------------------------------------------------------
# slab FFT


def _mpi_real(dtype):
    from mpi4py import MPI
    return MPI.DOUBLE if np.dtype(dtype) == np.float64 else MPI.FLOAT


class SlabFFT:
    """Real-to-complex 2D FFT of an ``n``² periodic grid slab-decomposed over ``comm``.

    Follows the FFT-backend contract (docs/CONTRACTS.md): physical arrays ``(..., n//p, n)`` hold
    rows ``y_slice``; spectral arrays ``(..., n, nkx_local)`` hold the ``kx`` columns ``kx_slice``
    of numpy's ``rfft2`` layout; ``rfft2``/``irfft2`` follow numpy's normalization; leading batch
    dimensions are carried through. ``comm`` may be None or have one rank (then this is a plain
    serial FFT built from the same 1D transforms).

    ``backend`` is ``"numpy"`` (``fft="numpy"`` pocketfft or ``fft="pyfftw"``) or ``"torch"``
    (transforms on ``device``, transposes staged through host memory).
    """

    def __init__(self, n: int, comm=None, *, backend: str = "numpy", dtype="float64",
                 device: str = "cpu", threads: int = 1, fft: str = "numpy"):
        self.comm = comm
        self.size = _size(comm)
        self.rank = _rank(comm)
        check_slab_grid(n, self.size)
        self.n = n
        self.nkx = n // 2 + 1
        self.ny_local = n // self.size
        self.y_slice = slice(self.rank * self.ny_local, (self.rank + 1) * self.ny_local)
        self._kx_blocks = [block_range(self.nkx, self.size, r) for r in range(self.size)]
        self.kx_slice = slice(*self._kx_blocks[self.rank])
        self.nkx_local = self.kx_slice.stop - self.kx_slice.start
        self.physical_shape = (self.ny_local, n)
        self.spectral_shape = (n, self.nkx_local)
        self.backend = backend
        self.np_dtype = np.dtype(dtype)
        if self.np_dtype not in (np.float64, np.float32):
            raise ConfigError(f"dns.dtype = {dtype!r}: accepted are float64, float32", field="dns.dtype")
        self.np_cdtype = np.result_type(self.np_dtype, np.complex64)
        if backend == "numpy":
            if device not in ("cpu", "auto"):
                raise ConfigError(f"dns.device = {device!r} with backend numpy: accepted is cpu",
                                  field="dns.device")
            self.lines = _FFTWLines(threads) if fft == "pyfftw" else _NumpyLines()
            self.xp = np
            self.device = "cpu"
            self.dtype, self.cdtype = self.np_dtype, self.np_cdtype
        elif backend == "torch":
            import torch
            self.device = local_device(comm, device) if device in ("cuda", "auto") else device
            self.lines = _TorchLines(self.device)
            self.xp = torch
            self.dtype = getattr(torch, self.np_dtype.name)
            self.cdtype = torch.complex128 if self.np_dtype == np.float64 else torch.complex64
        else:
            raise ConfigError(f"dns.backend = {backend!r}: accepted are numpy, torch", field="dns.backend")
        kx = np.arange(self.kx_slice.start, self.kx_slice.stop, dtype=self.np_dtype)[None, :]
        ky = (np.fft.fftfreq(n) * n).astype(self.np_dtype)[:, None]
        self.kx = self.lines.from_host(kx)
        self.ky = self.lines.from_host(ky)

    # -- transposes ------------------------------------------------------------------------

    def _alltoallv(self, send: np.ndarray, send_counts, recv: np.ndarray, recv_counts) -> None:
        """Complex Alltoallv; counts are in complex elements."""
        real = _mpi_real(self.np_dtype)
        sc = np.asarray(send_counts, dtype=np.int64) * 2
        rc = np.asarray(recv_counts, dtype=np.int64) * 2
        sd = np.concatenate(([0], np.cumsum(sc)[:-1]))
        rd = np.concatenate(([0], np.cumsum(rc)[:-1]))
        self.comm.Alltoallv([send.view(self.np_dtype), (sc, sd), real],
                            [recv.view(self.np_dtype), (rc, rd), real])

    def _rows_to_columns(self, a: np.ndarray) -> np.ndarray:
        """(B, ny_local, nkx) with all columns -> (B, n, nkx_local) with all rows."""
        bn, ny, p = a.shape[0], self.ny_local, self.size
        widths = [b - s for s, b in self._kx_blocks]
        send = np.concatenate([a[:, :, s:e].reshape(-1) for s, e in self._kx_blocks])
        recv = np.empty(bn * self.n * self.nkx_local, dtype=self.np_cdtype)
        self._alltoallv(send, [bn * ny * w for w in widths], recv, [bn * ny * self.nkx_local] * p)
        out = recv.reshape(p, bn, ny, self.nkx_local)
        if bn == 1:
            return out.reshape(1, self.n, self.nkx_local)
        return out.transpose(1, 0, 2, 3).reshape(bn, self.n, self.nkx_local)

    def _columns_to_rows(self, a: np.ndarray) -> np.ndarray:
        """(B, n, nkx_local) with all rows -> (B, ny_local, nkx) with all columns."""
        bn, ny, p = a.shape[0], self.ny_local, self.size
        send = np.ascontiguousarray(a.reshape(bn, p, ny, self.nkx_local).transpose(1, 0, 2, 3))
        widths = [b - s for s, b in self._kx_blocks]
        recv = np.empty(bn * ny * self.nkx, dtype=self.np_cdtype)
        self._alltoallv(send.reshape(-1), [bn * ny * self.nkx_local] * p, recv, [bn * ny * w for w in widths])
        out = np.empty((bn, ny, self.nkx), dtype=self.np_cdtype)
        off = 0
        for (s, e), w in zip(self._kx_blocks, widths):
            out[:, :, s:e] = recv[off:off + bn * ny * w].reshape(bn, ny, w)
            off += bn * ny * w
        return out

    # -- transforms -------------------------------------------------------------------------

    def rfft2(self, u):
        """Unnormalized forward real 2D FFT of local rows ``(..., ny_local, n)`` ->
        ``(..., n, nkx_local)`` (numpy.fft.rfft2 convention)."""
        batch = tuple(u.shape[:-2])
        a = self.lines.rfft_x(u)
        if self.size == 1:
            return self.lines.fft_y(a)
        h = self.lines.to_host(a).reshape((prod(batch), self.ny_local, self.nkx))
        h = self._rows_to_columns(h).reshape(batch + self.spectral_shape)
        return self.lines.fft_y(self.lines.from_host(h))

    def irfft2(self, u_hat):
        """Normalized inverse of :meth:`rfft2` (numpy.fft.irfft2 convention)."""
        batch = tuple(u_hat.shape[:-2])
        a = self.lines.ifft_y(u_hat)
        if self.size > 1:
            h = self.lines.to_host(a).reshape((prod(batch), self.n, self.nkx_local))
            h = self._columns_to_rows(h).reshape(batch + (self.ny_local, self.nkx))
            a = self.lines.from_host(h)
        return self.lines.irfft_x(a, self.n)

    # -- reductions -------------------------------------------------------------------------

    def _allgather(self, x) -> tuple[np.ndarray, object]:
        """Every rank's value of ``x`` stacked in rank order (numpy), and how to convert back."""
        is_tensor = not isinstance(x, (np.ndarray, np.generic, float, int, complex))
        h = self.lines.to_host(x) if is_tensor else np.asarray(x)
        h = np.ascontiguousarray(h)
        out = np.empty((self.size,) + h.shape, dtype=h.dtype)
        self.comm.Allgather(h, out)

        def back(r):
            if is_tensor:
                return self.lines.from_host(np.asarray(r))
            return r if isinstance(x, np.ndarray) else r[()] if np.ndim(r) == 0 else r
        return out, back

    def allsum(self, x):
        """Sum of ``x`` over the ranks of the group, combined in rank order: bit-identical on
        every rank (identity when serial). Accepts Python/numpy scalars, arrays and tensors."""
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

    # -- global arrays ----------------------------------------------------------------------

    def _gather(self, local, axis: int, root: int):
        h = np.ascontiguousarray(self.lines.to_host(local))
        if self.size == 1:
            return h.copy()
        parts = self.comm.gather(h, root=root)  # pickle-5 out-of-band buffers: no extra copy
        if self.rank != root:
            return None
        return np.concatenate(parts, axis=axis)

    def gather_spectral(self, u_hat, root: int = 0):
        """The global spectral array ``(..., n, n//2+1)`` (numpy) on ``root``; None elsewhere."""
        return self._gather(u_hat, -1, root)

    def gather_physical(self, u, root: int = 0):
        """The global physical array ``(..., n, n)`` (numpy) on ``root``; None elsewhere."""
        return self._gather(u, -2, root)

    def _scatter(self, global_array, slices, root: int):
        if self.size == 1:
            h = np.asarray(global_array)
        else:
            parts = None
            if self.rank == root:
                g = np.asarray(global_array)
                parts = [np.ascontiguousarray(g[(Ellipsis,) + s]) for s in slices]
            h = self.comm.scatter(parts, root=root)
        return self.lines.from_host(np.ascontiguousarray(h))

    def scatter_spectral(self, global_hat, root: int = 0):
        """This rank's columns of a global spectral array given on ``root`` (ignored elsewhere)."""
        return self._scatter(global_hat, [(slice(None), slice(s, e)) for s, e in self._kx_blocks], root)

    def scatter_physical(self, u, root: int = 0):
        """This rank's rows of a global physical array given on ``root`` (ignored elsewhere)."""
        ny = self.ny_local
        return self._scatter(u, [(slice(r * ny, (r + 1) * ny), slice(None)) for r in range(self.size)], root)

    def __repr__(self):
        return (f"SlabFFT(n={self.n}, ranks={self.size}, rank={self.rank}, backend={self.backend}, "
                f"dtype={self.np_dtype.name}, device={self.device}, y={self.y_slice}, kx={self.kx_slice})")


# --------------------------------------------------------------------------------------------
# collective failure handling


def agree_or_raise(comm, problem: str | None, *, exc=SimulationBlowUp) -> None:
    """Collective: if any rank of ``comm`` reports a ``problem`` (a message; None = all good), raise
    ``exc`` on *every* rank with the messages of all ranks that reported one.

    One small allgather; call it at the same points on every rank (e.g. every few steps)."""
    if comm is None or comm.Get_size() == 1:
        if problem:
            raise _collective(exc(problem))
        return
    problems = comm.allgather(problem)
    bad = [(r, p) for r, p in enumerate(problems) if p]
    if bad:
        if len({p for _, p in bad}) == 1:
            msg = bad[0][1] + f" (on rank{'s' if len(bad) > 1 else ''} {', '.join(str(r) for r, _ in bad)})"
        else:
            msg = "; ".join(f"rank {r}: {p}" for r, p in bad)
        raise _collective(exc(msg))


def _collective(e: BaseException) -> BaseException:
    e.collective = True  # raised identically on every rank: no need to abort the job
    return e


@contextlib.contextmanager
def abort_on_error(comm, exit_code: int = 1):
    """Run the block; if it raises on one rank of a multi-rank job, print the traceback with the
    rank and call ``comm.Abort`` so that no partner waits forever in a collective.

    Exceptions raised identically on every rank (``e.collective``, set by :func:`agree_or_raise`)
    propagate normally, so every rank exits with its own clean message and non-zero status."""
    try:
        yield
    except BaseException as e:  # noqa: BLE001 - every escape from a rank must abort the job
        if comm is None or comm.Get_size() == 1 or getattr(e, "collective", False) \
                or isinstance(e, (SystemExit, GeneratorExit)) and not getattr(e, "code", 0):
            raise
        rank = comm.Get_rank()
        sys.stderr.write(f"[rank {rank}] aborting the MPI job after an error:\n"
                         + "".join(traceback.format_exception(e)))
        sys.stderr.flush()
        comm.Abort(exit_code)


# --------------------------------------------------------------------------------------------
# benchmark


def bench(n: int, steps: int, comm=None, *, members: int = 1, ranks_per_member: int | None = None,
          repeats: int = 3, fft: str = "numpy") -> dict:
    """Time ``steps`` forward+inverse transform pairs of ``members`` fields of ``n``² (best of
    ``repeats``). Returns seconds per pair, members*pairs/s and Mpoints*pairs/s."""
    size = _size(comm)
    rpm = size if ranks_per_member is None else ranks_per_member
    dec = Decomposition(comm, members, rpm)
    fft_ = SlabFFT(n, dec.group_comm, fft=fft)
    nloc = max(len(dec.members), 1)
    rng = np.random.default_rng(fft_.rank)
    u = rng.standard_normal((nloc,) + fft_.physical_shape)
    u_hat = fft_.rfft2(u)
    u = fft_.irfft2(u_hat)
    best = np.inf
    for _ in range(repeats):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            u = fft_.irfft2(fft_.rfft2(u))
        if comm is not None:
            comm.Barrier()
        best = min(best, time.perf_counter() - t0)
    per = best / steps
    return {"n": n, "ranks": size, "ranks_per_member": rpm, "members": members, "s_per_pair": per,
            "members_pairs_per_s": members / per, "mpoints_pairs_per_s": members * n * n / per / 1e6}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m solver.parallel", description=__doc__.split("\n")[0])
    p.add_argument("--bench", nargs=2, type=int, metavar=("N", "STEPS"), required=True)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--ranks-per-member", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fft", choices=("numpy", "pyfftw"), default="numpy")
    p.add_argument("--solver", action="store_true", help="time full solver steps instead of FFT pairs")
    a = p.parse_args(argv)
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    with abort_on_error(comm):
        n, steps = a.bench
        if a.solver:
            from .parallel_bench import bench_solver  # noqa: F401  (optional, see report)
            r = bench_solver(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                             repeats=a.repeats)
        else:
            r = bench(n, steps, comm, members=a.members, ranks_per_member=a.ranks_per_member,
                      repeats=a.repeats, fft=a.fft)
        if comm.Get_rank() == 0:
            print(" ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
