"""turbtl.jobs — SLURM templates, cluster profiles, rendering and submission behind `turbtl jobs`."""
