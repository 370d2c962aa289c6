"""asv benchmarks of turbtl (``asv.conf.json`` at the root points here; docs/benchmarks.md).

One module per stage: :mod:`bench.solver` (DNS steps vs the FFT floor, peak memory),
:mod:`bench.mpi` (slab strong scaling and ensemble throughput under ``mpiexec``),
:mod:`bench.fdns` (on-the-fly filtering + Π), :mod:`bench.training` (samples/s vs the GEMM peak,
DDP efficiency, peak memory), :mod:`bench.sweep` (transfer sweep with vs without shared work),
:mod:`bench.analysis` (kernel spectra vs the GEMM floor, Dask aggregation). The floors are the
measuring functions of the harnesses (``bench/*_harness.py``: solver, les, training, sweep,
analysis; the library modules hold no timing code), called in the same process as the figure they
divide.
"""
