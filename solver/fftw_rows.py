"""FFTW plans of one block of rows, executed from inside Numba kernels (the fused x pass).

A step's Jacobian transforms four fields to physical space, multiplies them pointwise and
transforms one product back (:mod:`solver.fastpath`). Both 2D transforms split into a pass along y
(over the kept columns, pruned) and a pass along x (over every row). The x passes and the product
need nothing but one row at a time, so they can run block by block: c2r of the four fields' rows
→ product → r2c of the product's rows, while the block is in cache; the four physical fields are
never written to memory whole. That needs the x transforms of one block of rows as an FFTW plan
that a Numba kernel calls with a pointer to the block (FFTW's "new-array execute",
``fftw_execute_dft_c2r(plan, in, out)``, safe to call from several threads at once).

This module makes those plans with FFTW's guru interface through ``ctypes``, in the same FFTW
library pyFFTW loaded (the ``pyfftw.libs`` copy), so they share pyFFTW's wisdom and are planned
under :func:`solver.wisdom.planning` like every other plan of the solver: every process gets the
same algorithm. A plan takes any block of the same shape and strides; FFTW requires the new arrays
to have the plan's alignment, so every plan is made with ``FFTW_UNALIGNED`` unless all blocks
have FFTW's SIMD alignment (:func:`row_plans`).

FFTW's planner is not thread-safe and pyFFTW's lock does not cover these plans: make them from one
thread at a time (the solver plans when an equation's first step builds its workspace).

:func:`available` says whether this works here (pyFFTW's bundled FFTW found); otherwise the solver
keeps its unfused path. ``TURBTL_FUSED_X=0`` turns the fused pass off (for comparisons).
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy as np

from .backends.base import default_planner
from .backends.numpy_fft import _pyfftw
from .wisdom import planning

FUSED_ENV = "TURBTL_FUSED_X"

# FFTW's planner flags (fftw3.h)
_FLAGS = {"FFTW_MEASURE": 0, "FFTW_DESTROY_INPUT": 1, "FFTW_UNALIGNED": 2, "FFTW_EXHAUSTIVE": 8,
          "FFTW_PRESERVE_INPUT": 16, "FFTW_PATIENT": 32, "FFTW_ESTIMATE": 64}
_PREFIX = {np.dtype("float64"): "fftw", np.dtype("float32"): "fftwf"}
_LIB_GLOB = {"fftw": "libfftw3-*.so*", "fftwf": "libfftw3f-*.so*"}
_lock = threading.Lock()
_libs: dict = {}


class _IODim(ctypes.Structure):
    """``fftw_iodim``: length and input/output strides (in elements) of one dimension."""
    _fields_ = [("n", ctypes.c_int), ("is_", ctypes.c_int), ("os", ctypes.c_int)]


class _Lib:
    """The functions of one precision of pyFFTW's FFTW: guru planners, new-array executes
    (``c2r``, ``r2c``: ctypes functions a Numba kernel takes as arguments), destroy."""

    def __init__(self, path: str, prefix: str):
        lib = ctypes.CDLL(path)  # the file pyFFTW's extension loaded: the same library instance
        size, dims = ctypes.c_size_t, ctypes.POINTER(_IODim)
        self.plan = {}
        for kind in ("c2r", "r2c"):
            f = getattr(lib, f"{prefix}_plan_guru_dft_{kind}")
            f.restype, f.argtypes = size, [ctypes.c_int, dims, ctypes.c_int, dims, size, size, ctypes.c_uint]
            self.plan[kind] = f
        # pointers are passed as size_t: the same registers under the x86-64 and AArch64 ABIs,
        # and Numba passes integers where a void* would need a cast
        self.c2r = getattr(lib, f"{prefix}_execute_dft_c2r")
        self.r2c = getattr(lib, f"{prefix}_execute_dft_r2c")
        for f in (self.c2r, self.r2c):
            f.restype, f.argtypes = None, [size, size, size]
        self.destroy = getattr(lib, f"{prefix}_destroy_plan")
        self.destroy.restype, self.destroy.argtypes = None, [size]
        # the planner's thread count (set to 1 before planning): in the threads library beside it
        # (OpenMP or pthreads), or in the main one when built with combined threads; without any,
        # FFTW plans single-threaded anyway
        self.nthreads = None
        folder = os.path.dirname(path)
        for cand in [path] + [f for kind in ("_omp-*", "_threads-*")
                              for f in glob.glob(os.path.join(folder, _LIB_GLOB[prefix].replace("-*", kind)))]:
            f = getattr(ctypes.CDLL(cand), f"{prefix}_plan_with_nthreads", None)
            if f is not None:
                f.restype, f.argtypes = None, [ctypes.c_int]
                self.nthreads = f
                break


def _library(dtype) -> _Lib | None:
    """pyFFTW's bundled FFTW of ``dtype``'s precision (None where pyFFTW or the file is missing)."""
    prefix = _PREFIX.get(np.dtype(dtype))
    if prefix is None:
        return None
    if prefix not in _libs:
        _libs[prefix] = None
        pyfftw = _pyfftw()  # through solver/openmp.py's share(), like every first import of pyFFTW
        if pyfftw is None:
            return None
        libs = os.path.join(os.path.dirname(os.path.dirname(pyfftw.__file__)), "pyfftw.libs")
        found = sorted(glob.glob(os.path.join(libs, _LIB_GLOB[prefix])))
        if found:
            try:
                _libs[prefix] = _Lib(found[0], prefix)
            except (OSError, AttributeError):
                _libs[prefix] = None
    return _libs[prefix]


def available(dtype="float64") -> bool:
    """Whether the fused x pass can run here: pyFFTW's bundled FFTW of this precision is found
    and ``$TURBTL_FUSED_X`` is not "0"."""
    if os.environ.get(FUSED_ENV, "").strip() == "0":
        return False
    return _library(dtype) is not None


def describe(dtype="float64", load: bool = True) -> str:
    """One line for ``turbtl info`` and provenance: whether the fused x pass runs here. With
    ``load=False`` (provenance) nothing is imported: a process that made no plan says so."""
    if os.environ.get(FUSED_ENV, "").strip() == "0":
        return f"off ({FUSED_ENV}=0)"
    if not load and _PREFIX.get(np.dtype(dtype)) not in _libs:
        return "not used in this process"
    lib = _library(dtype)
    if lib is None:
        return "off (pyFFTW's bundled FFTW not found)"
    return "on (FFTW's row plans in Numba kernels, with Numba kernels and the 2/3 rule)"


class RowPlan:
    """One FFTW plan of the x transforms of a block of rows (:func:`row_plans`); destroyed with
    the object. ``ptr`` is what a kernel passes to :attr:`execute` with the block's pointers."""

    def __init__(self, lib: _Lib, ptr: int, execute):
        self.lib, self.ptr, self.execute = lib, ptr, execute

    def __del__(self):
        if getattr(self, "ptr", 0):
            self.lib.destroy(self.ptr)
            self.ptr = 0


def _plan(lib, kind, n, howmany, src, dst, flags) -> int:
    dims = (_IODim * 1)(_IODim(n, 1, 1))
    hm = (_IODim * len(howmany))(*[_IODim(*h) for h in howmany])
    ptr = lib.plan[kind](1, dims, len(howmany), hm, src.ctypes.data, dst.ctypes.data, flags)
    if not ptr:
        raise RuntimeError(f"FFTW could not plan the {kind} row transforms (n={n}, blocks {howmany})")
    return ptr


def row_plans(spec, tmp, j_hat, block: int, planner: str | None = None) -> tuple[RowPlan, RowPlan]:
    """The two plans of the fused x pass, for blocks of ``block`` rows:

    - c2r: the rows ``[r, r + block)`` of the four fields ``spec`` (4, R, n//2 + 1) (R rows of all
      members together, contiguous) into one thread's buffer ``tmp[t]`` (4, block, n), keeping the
      input (``FFTW_PRESERVE_INPUT``: its columns above the kept ones stay zero);
    - r2c: ``tmp[t, 0]`` (block, n) into the rows ``[r, r + block)`` of ``j_hat`` (R, n//2 + 1).

    Planned single-threaded (the kernel runs blocks on several threads) with ``planner`` (default:
    the solver's, :func:`~solver.backends.base.default_planner`) under the wisdom cache; the
    buffers' contents are kept (planning overwrites them). ``FFTW_UNALIGNED`` unless every block
    start has FFTW's SIMD alignment (``pyfftw.simd_alignment``)."""
    real = np.dtype(tmp.dtype)
    lib = _library(real)
    if lib is None:
        raise RuntimeError("pyFFTW's bundled FFTW was not found: no fused x pass")
    _, rows, ncol = spec.shape
    n = tmp.shape[-1]
    if spec.shape[0] != 4 or tmp.shape[1:] != (4, block, n) or j_hat.shape != (rows, ncol) or rows % block:
        raise ValueError(f"row_plans: shapes spec {spec.shape}, tmp {tmp.shape}, j_hat {j_hat.shape}, "
                         f"block {block} do not fit")
    for a in (spec, tmp, j_hat):
        if not a.flags.c_contiguous:
            raise ValueError("row_plans: arrays must be C-contiguous")
    csize = 2 * real.itemsize
    # FFTW's SIMD alignment (what pyFFTW's arrays have): every block start must have it, else the
    # plans are made for unaligned arrays (the same choice in every process: the same algorithm)
    aligned = _aligned(spec.ctypes.data, tmp.ctypes.data, j_hat.ctypes.data, block * ncol * csize,
                       tmp[0].nbytes)
    keep = [a.copy() for a in (spec, tmp, j_hat)]
    c2r = _planned(lib, planner, aligned, lambda f: _plan(
        lib, "c2r", n, [(4, rows * ncol, block * n), (block, ncol, n)], spec, tmp, f | _FLAGS["FFTW_PRESERVE_INPUT"]))
    r2c = _planned(lib, planner, aligned, lambda f: _plan(lib, "r2c", n, [(block, n, ncol)], tmp, j_hat, f))
    for a, k in zip((spec, tmp, j_hat), keep):
        np.copyto(a, k)
    return RowPlan(lib, c2r, lib.c2r), RowPlan(lib, r2c, lib.r2c)


def _planned(lib, planner, aligned, make):
    """``make(flags)`` under the wisdom cache, single-threaded, one planning at a time."""
    planner = planner or default_planner()
    with _lock:
        with planning() as ok:
            flags = _FLAGS["FFTW_UNALIGNED"] * (not aligned) | _FLAGS[planner if ok else "FFTW_ESTIMATE"]
            if lib.nthreads is not None:
                lib.nthreads(1)
            return make(flags)


def _aligned(*offsets) -> bool:
    import pyfftw
    return all(x % pyfftw.simd_alignment == 0 for x in offsets)


def block_rows(rows: int, n: int, itemsize: int, cache_bytes: int = 256 * 1024) -> int:
    """Rows per block: the largest divisor of ``rows`` whose four physical rows (4 · n · itemsize
    bytes each) fit ``cache_bytes`` (a thread's share of L2), at least 1."""
    target = max(1, cache_bytes // (4 * n * itemsize))
    return max(b for b in range(1, min(rows, target) + 1) if rows % b == 0)

