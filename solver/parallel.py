"""MPI parallelism of the DNS: ensemble groups of ranks, the slab layout, collective failures.

Two levels (docs/CONTRACTS.md, "MPI ensemble runs and checkpoints"; docs/architecture.md):

1. :class:`Decomposition` splits the ranks of a communicator into *groups* of ``ranks_per_member``
   consecutive ranks (``comm.Split``). Ensemble members are spread over the groups in contiguous,
   balanced blocks: with ``M`` members and ``G`` groups, group ``g`` holds members
   ``[g*M//G + min(g, M%G) ...)``, i.e. the first ``M % G`` groups hold one member more (the
   ``numpy.array_split`` rule). A group runs its members together as one leading batch dimension.
   More groups than members is allowed: the surplus groups are *idle* (``decomp.idle``), hold no
   member and only take part in the world-wide agreements (blow-up checks, barriers).
2. :class:`solver.backends.slab.SlabFFT` slab-decomposes each member over the ranks of its group: physical rows (y) are
   split in equal blocks, spectral ``kx`` columns of the ``rfft2`` layout in contiguous blocks
   balanced over the columns the 2/3 rule keeps (:func:`solver.backends.slab.kx_blocks`; docs/CONTRACTS.md). ``rfft2``
   = local 1D real FFT along x, a global transpose (one ``Alltoallw``), local 1D FFT along y;
   ``irfft2`` runs the same steps backwards. The hot-loop transforms of the equation
   (``plan_rfft2``/``plan_irfft2`` with ``kx_stop``) skip the columns the 2/3 rule always zeroes:
   they are neither sent nor transformed, so every rank does an equal share of the work. The torch
   backend does its 1D transforms on the rank's device and stages the transposes through host
   memory.

Its reductions (``allsum``, ``allmax``) gather every rank's contribution and
combine them in rank order, so every rank gets the *bit-identical* number (not just what the MPI
library's reduction tree happens to give).

:func:`agree_or_raise` and :func:`abort_on_error` make failures collective: a blow-up detected on
one rank is raised on every rank with the same message, and an unexpected exception on one rank
aborts the whole job instead of leaving its partners waiting in a collective forever.

Benchmarks of the slab FFT and of MPI ensemble steps: ``bench/solver_harness.py``.
"""
from __future__ import annotations

import contextlib
import sys
import time
import traceback

from .errors import ParameterError, SimulationBlowUp

#: seconds a failing rank waits between printing its error and aborting the job (see abort_on_error)
ABORT_GRACE_S = 1.0

__all__ = ["block_range", "check_slab_grid", "Decomposition", "agree_or_raise", "collective", "abort_on_error",
           "local_device"]


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

    Raises :class:`ParameterError` (field ``ranks_per_member``) when the rank count is not a
    multiple of ``ranks_per_member``.
    """

    def __init__(self, comm, members: int, ranks_per_member: int = 1):
        size = _size(comm)
        if members < 1:
            raise collective(ParameterError(f"members = {members}: must be >= 1", name="members"))
        if ranks_per_member < 1 or size % ranks_per_member:
            raise collective(ParameterError(
                f"ranks_per_member = {ranks_per_member}: must be >= 1 and divide the number of "
                f"MPI ranks ({size}); accepted here: "
                f"{', '.join(str(d) for d in range(1, size + 1) if size % d == 0)}",
                name="ranks_per_member"))
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
        raise ParameterError(f"member = {member}: must be in [0, {self.n_members - 1}]", name="member")

    @property
    def group_rank(self) -> int:
        return _rank(self.group_comm)

    @property
    def is_group_root(self) -> bool:
        return self.group_rank == 0

    def check_grid(self, n: int) -> None:
        """Raise ParameterError unless an ``n``² grid can be slab-decomposed over a group."""
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
    """Raise ParameterError unless ``n`` rows split evenly over ``ranks`` and every rank gets at least
    one of the ``n//2+1`` spectral columns."""
    if n % ranks or n // 2 + 1 < ranks:
        ok = [d for d in range(1, n + 1) if n % d == 0 and n // 2 + 1 >= d]
        raise collective(ParameterError(
            f"n = {n} cannot be slab-decomposed over {ranks} ranks per member: n must be a "
            f"multiple of the ranks per member and n//2+1 >= ranks; ranks per member accepted for "
            f"n = {n}: {', '.join(map(str, ok))}", name="n"))


# --------------------------------------------------------------------------------------------
# device of a rank


def local_device(comm, device: str = "cuda") -> str:
    """The torch device of this rank: ``cuda:<node-local rank mod #GPUs>`` (one rank per GPU) for
    ``cuda``/``auto``, ``cpu`` for ``cpu`` (and for ``auto`` without a GPU); ``cuda:<i>`` as given."""
    if device == "cpu" or device.startswith("cuda:"):
        return device
    import torch  # heavy: only for a CUDA device choice
    if not torch.cuda.is_available():
        if device == "cuda":
            raise ParameterError("device = 'cuda': no CUDA device is visible on this node; "
                              "accepted here: cpu, auto", name="device")
        return "cpu"
    local = 0
    if comm is not None and comm.Get_size() > 1:
        from mpi4py import MPI  # optional dependency
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, comm.Get_rank())
        local = node.Get_rank()
        node.Free()
    return f"cuda:{local % torch.cuda.device_count()}"


# --------------------------------------------------------------------------------------------
# collective failure handling


def agree_or_raise(comm, problem: str | None, *, exc=SimulationBlowUp) -> None:
    """Collective: if any rank of ``comm`` reports a ``problem`` (a message; None = all good), raise
    ``exc`` on *every* rank with the messages of all ranks that reported one.

    One small allgather; call it at the same points on every rank (e.g. every few steps)."""
    if comm is None or comm.Get_size() == 1:
        if problem:
            raise collective(exc(problem))
        return
    problems = comm.allgather(problem)
    bad = [(r, p) for r, p in enumerate(problems) if p]
    if bad:
        if len({p for _, p in bad}) == 1:
            msg = bad[0][1] + f" (on rank{'s' if len(bad) > 1 else ''} {', '.join(str(r) for r, _ in bad)})"
        else:
            msg = "; ".join(f"rank {r}: {p}" for r, p in bad)
        raise collective(exc(msg))


def collective(e: BaseException) -> BaseException:
    """Mark ``e`` as raised identically on every rank (so :func:`abort_on_error` lets it
    propagate instead of aborting the job); returns ``e``."""
    e.collective = True
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
        # The launcher forwards a rank's stderr asynchronously, and on an abort it kills every rank
        # at once: output still in the pipe can be lost (CI once saw an empty stderr here). A
        # moment's pause lets the message out first; it costs nothing on the success path.
        time.sleep(ABORT_GRACE_S)
        comm.Abort(exit_code)
