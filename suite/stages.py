"""The stages of a study and their order: the one place that states it.

``turbtl run`` runs :data:`PIPELINE` in this order, ``turbtl jobs`` chains the same stages with
``--dependency=afterok`` (each after the one before it: every stage holds the run folder's lock
exclusively, so two stages of one run never run at once), and the report lists them in this order.
:data:`JOB_STAGES` adds the stages that have a SLURM job script but are not part of the study.
"""
from __future__ import annotations

#: the study, in order: each stage reads what the ones before it wrote
PIPELINE = ("dns", "train", "transfer", "analyze", "les", "report")

#: every stage with a SLURM job template (``jobs/templates/<stage>.sbatch``): the pipeline + benchmarks
JOB_STAGES = PIPELINE + ("bench",)


def previous(stage: str) -> list[str]:
    """The stage of :data:`PIPELINE` just before ``stage`` ([] for the first, or one not in it)."""
    if stage not in PIPELINE:
        return []
    i = PIPELINE.index(stage)
    return [PIPELINE[i - 1]] if i else []
