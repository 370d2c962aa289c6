"""Elementwise work of the numpy backend on a team of threads, in cache-sized pieces.

A step of the solver is five FFTs (threaded by FFTW) and a dozen elementwise array operations on
the modes the 2/3 rule keeps (NumPy runs each of them on one thread). Memory traffic, not
arithmetic, bounds those operations here, so they are

- cut into *pieces* of whole rows small enough that the arrays of one piece stay in a core's
  cache while several operations touch them (``piece_bytes``), and
- spread over a *team* of ``threads`` threads: NumPy releases the GIL inside its ufunc loops, so
  the pieces of different threads run at the same time.

Every piece applies the same operations to its own elements, so the result is bit-identical for
any thread count and piece size. :class:`BlockRunner` is what the equation and the steppers use:
``runner(fn)`` calls ``fn(rows, cols)`` once for every piece (``a[..., rows, cols]`` of each
array). The torch backend gets one piece per block and no team (its kernels are threaded already).

    >>> run = BlockRunner([([(slice(0, 100), slice(0, 40))], 40 * 16)], threads=2)
    >>> run(lambda r, c: None)
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Callable, Sequence

# one piece's share of each array it touches: with compiled kernels (one call per piece) a few
# arrays of this size stay in a core's L2 cache; array operations (several calls per piece, each
# taking the GIL) need larger pieces, else the threads spend their time handing the GIL over
PIECE_BYTES = 256 * 1024
ARRAY_PIECE_BYTES = 2 * 1024 * 1024

Block = tuple  # (row slice, column slice)


class Team:
    """``threads - 1`` daemon threads plus the calling one. :meth:`run` calls ``fn(part)`` for
    every part, part 0 on the caller, the others on the team, and returns when all are done
    (re-raising the first exception)."""

    def __init__(self, threads: int):
        self.threads = threads
        self._tasks = [queue.SimpleQueue() for _ in range(threads - 1)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # one run at a time (a team may be shared by equations)
        for i, q in enumerate(self._tasks):
            threading.Thread(target=self._serve, args=(q,), name=f"turbtl-worker-{i + 1}",
                             daemon=True).start()

    def _serve(self, q):
        while True:
            fn, part = q.get()
            try:
                fn(part)
            except BaseException as exc:  # handed to the caller of run()
                self._done.put(exc)
            else:
                self._done.put(None)

    def run(self, fn: Callable, parts: Sequence) -> None:
        if len(parts) > self.threads:
            raise ValueError(f"{len(parts)} parts for a team of {self.threads} threads")
        with self._lock:
            for q, part in zip(self._tasks, parts[1:]):
                q.put((fn, part))
            error = None
            try:
                if parts:
                    fn(parts[0])
            except BaseException as exc:
                error = exc
            for _ in parts[1:]:
                res = self._done.get()
                if res is not None and error is None:
                    error = res
            if error is not None:
                raise error


_TEAMS: dict[int, Team] = {}
_TEAMS_LOCK = threading.Lock()


def team(threads: int) -> Team | None:
    """The process's team of ``threads`` threads (made on first use; None for one thread)."""
    if threads <= 1:
        return None
    with _TEAMS_LOCK:
        if threads not in _TEAMS:
            _TEAMS[threads] = Team(threads)
        return _TEAMS[threads]


def _forget_teams():  # a forked child has the objects but not the threads
    _TEAMS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_teams)


def split_rows(blocks: Sequence[Block], parts: int, rows_per_piece: int) -> list[list[Block]]:
    """``parts`` lists of pieces covering ``blocks`` ((row slice, column slice) with steps of 1):
    the rows of all blocks are dealt out in contiguous runs of about equal element counts, then cut
    into pieces of at most ``rows_per_piece`` rows. Every element is in exactly one piece."""
    rows = [(r.start, r.stop, c, c.stop - c.start) for r, c in blocks if r.stop > r.start and c.stop > c.start]
    total = sum((b - a) * w for a, b, _, w in rows)
    out: list[list[Block]] = [[] for _ in range(max(1, parts))]
    if total == 0:
        return out
    bounds = [(p + 1) * total // len(out) for p in range(len(out))]  # where each part ends
    done, part = 0, 0  # elements dealt so far, the part being filled
    for a, b, c, w in rows:
        start = a
        while start < b:
            while part < len(out) - 1 and done >= bounds[part]:
                part += 1
            limit = -(-(bounds[part] - done) // w) if part < len(out) - 1 else b - start
            stop = min(b, start + max(1, min(rows_per_piece, limit)))
            out[part].append((slice(start, stop), c))
            done += (stop - start) * w
            start = stop
    return out


class BlockRunner:
    """Calls ``fn(rows, cols)`` for every piece of some *regions*, on ``threads`` threads.

    ``regions``: a sequence of ``(blocks, row_bytes)``; ``blocks`` a list of (row slice, column
    slice) pairs, ``row_bytes`` the bytes of one row of one block in one array (columns x itemsize
    x batch members), which sets the rows per piece (``piece_bytes``). ``runner(fn_0, fn_1, ...)``
    calls ``fn_i`` on the pieces of region ``i``: all regions in one round of the team, each
    thread taking its share of every region. ``threads=1`` and ``piece_bytes=None`` give the
    blocks themselves, in order, on the calling thread."""

    def __init__(self, regions: Sequence, threads: int = 1, piece_bytes: int | None = PIECE_BYTES):
        self.team = team(threads)
        nparts = self.team.threads if self.team is not None else 1
        self.regions = len(regions)
        self.parts: list[list] = [[] for _ in range(nparts)]
        for i, (blocks, row_bytes) in enumerate(regions):
            if piece_bytes is None or row_bytes <= 0:
                rows_per_piece = max([r.stop - r.start for r, _ in blocks] + [1])
            else:
                rows_per_piece = max(1, piece_bytes // row_bytes)
            for part, pieces in zip(self.parts, split_rows(blocks, nparts, rows_per_piece)):
                part.extend((i, r, c) for r, c in pieces)
        self.parts = [p for p in self.parts if p]
        if self.team is not None and len(self.parts) < 2:
            self.team = None  # too little work to share
        self.pieces = [p for part in self.parts for p in part]

    def __call__(self, *fns: Callable) -> None:
        if len(fns) != self.regions:
            raise TypeError(f"{self.regions} region function(s) expected, got {len(fns)}")
        if self.team is None:
            for i, r, c in self.pieces:
                fns[i](r, c)
            return

        def work(part):
            for i, r, c in part:
                fns[i](r, c)
        self.team.run(work, self.parts)

    def __repr__(self):
        th = self.team.threads if self.team is not None else 1
        return f"<BlockRunner {len(self.pieces)} pieces of {self.regions} region(s) on {th} thread(s)>"
