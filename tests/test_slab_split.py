"""Slab decomposition balanced over the work actually done: the kx columns the 2/3 rule keeps are
split evenly over the ranks (solver.backends.slab.kx_blocks), and the dealiased hot-loop transforms
(``plan_rfft2``/``plan_irfft2`` with ``kx_stop``) skip the always-zero columns yet still equal
numpy.fft.

Tests marked ``mpi`` run serially and on every rank under ``mpiexec -n 2`` / ``-n 4``.
"""
import numpy as np
import pytest

from solver.backends.slab import SlabFFT, kept_columns, kx_blocks
from solver.parallel import check_slab_grid
from solver.errors import ParameterError as ConfigError


def _kept(block, keep):
    return max(0, min(block[1], keep) - block[0])


def test_kx_blocks_are_contiguous_and_balance_the_kept_columns():
    for n in range(4, 200, 2):
        for p in range(1, 9):
            try:
                check_slab_grid(n, p)
            except ConfigError:
                continue
            blocks = kx_blocks(n, p)
            assert blocks[0][0] == 0 and blocks[-1][1] == n // 2 + 1
            assert all(blocks[r][1] == blocks[r + 1][0] for r in range(p - 1))
            assert all(b > a for a, b in blocks)  # every rank holds a column
            keep = kept_columns(n)
            assert keep == (n - 1) // 3 + 1  # Grid.kmax_dealias + 1
            if keep >= p:
                kept = [_kept(b, keep) for b in blocks]
                assert max(kept) - min(kept) <= 1, (n, p, blocks)
                assert sum(kept) == keep


def test_kx_blocks_at_the_benchmark_sizes():
    # the old even split gave rank 0 257 of the 342 kept columns at n = 1024 over 2 ranks
    assert kx_blocks(1024, 2) == [(0, 171), (171, 513)]
    assert kx_blocks(2048, 2) == [(0, 342), (342, 1025)]
    assert [_kept(b, 342) for b in kx_blocks(1024, 4)] == [86, 86, 85, 85]


@pytest.mark.mpi
def test_every_rank_holds_an_equal_share_of_kept_columns(comm):
    for n in (24, 64, 96, 1024):
        f = SlabFFT(n, comm, threads=1)
        kept = comm.allgather(_kept((f.kx_slice.start, f.kx_slice.stop), kept_columns(n)))
        assert max(kept) - min(kept) <= 1 and sum(kept) == kept_columns(n)
        spans = comm.allgather((f.kx_slice.start, f.kx_slice.stop))
        assert spans == kx_blocks(n, comm.Get_size())


@pytest.mark.mpi
@pytest.mark.parametrize("n", [12, 20, 64])  # 12, 20: uneven kept columns over 2 and 4 ranks
def test_skipping_transforms_equal_numpy_fft(comm, n):
    keep = kept_columns(n)
    for batch in ((), (3,)):
        f = SlabFFT(n, comm, threads=1)
        rng = np.random.default_rng(n + len(batch))  # same on every rank
        g = rng.standard_normal(batch + (n, n))
        ref = np.fft.rfft2(g)
        # forward: columns kx < keep equal numpy's; the others are left untouched
        src, dst = f.empty_physical(batch), f.empty_spectral(batch)
        fwd = f.plan_rfft2(src, dst, kx_stop=keep)
        src[...] = f.scatter_physical(g)
        dst[...] = 7 + 7j
        fwd()
        got = f.gather_spectral(dst)
        # inverse of a field that is zero above kx_stop (not read: poisoned here)
        h = ref.copy()
        h[..., keep:] = 0
        h[..., 0] = h[..., 0].real  # a real field's kx = 0 column is Hermitian
        h = np.fft.rfft2(np.fft.irfft2(h, s=(n, n)))
        spec, out = f.empty_spectral(batch), f.empty_physical(batch)
        inv = f.plan_irfft2(spec, out, kx_stop=keep)
        for _ in range(2):  # twice: the buffers of the first call must not leak into the second
            spec[...] = f.scatter_spectral(h)
            tail = slice(max(0, keep - f.kx_slice.start), None)
            spec[..., tail] = np.nan
            inv()
            assert np.isnan(spec[..., tail]).all() and f.skips_kx  # neither read nor written
        back = f.gather_physical(out)
        if f.is_root:
            scale = abs(ref).max()
            np.testing.assert_allclose(got[..., :keep], ref[..., :keep], rtol=0, atol=1e-13 * scale)
            assert np.all(got[..., keep:] == 7 + 7j)
            np.testing.assert_allclose(back / n**2, np.fft.irfft2(h, s=(n, n)), rtol=0, atol=1e-13)
