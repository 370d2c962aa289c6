"""turbtl.suite — the user-facing pipeline: CLI, presets and systems, DNS ensembles to zarr,
datasets, the CNN closure, DDP training, the transfer-learning sweep, online LES and the report."""

__version__ = "0.1.0"
