"""turbtl.analysis — Fourier analysis of learned kernels, activations and data; Dask aggregation."""
