"""The transfer-learning sweep: every layer-freezing subset on every target.

For each target system × data fraction × seed, every subset of :func:`suite.masks.select` is
re-trained from the base network's weights (``DIR/models/base/``) on a small sample of the
target's training members, with :func:`~suite.transfer.steps.train_steps` (frozen parameters have
``requires_grad = False`` and are not in the optimizer): ``transfer.steps`` Adam steps for every
run that is compared, early stopping on the target's validation members (best weights kept).
References per (target, fraction, seed): ``base`` (the base network, no re-training), ``scratch``
(all layers trained from random weights on the same small sample, same steps) and the ``random``
controls of ``transfer.random_control`` (as many parameter elements as the named subset, drawn
across all layers, trained through gradient masks); per (target, seed) the ``oracle`` (all layers
trained on the target's full training data, from random weights or, with
``transfer.oracle_init = "base"``, from the base network's; ``transfer.oracle_steps`` or the base
network's step count). Intervals and findings: :mod:`suite.stats`.

Choices
- Sample size: ``round(fraction × n_base)`` snapshots (at least 1), ``n_base`` the base network's
  training-set size; drawn without replacement, seeded by ``seed``, from the complete snapshots of
  the target's training members (DataError if the target has fewer).
- Normalization: the base network's (stored with it) for every network of the sweep, scratch
  included. The frozen layers were trained on inputs scaled that way, and Π is predicted in the
  base network's output units; re-normalizing with target statistics would change the function the
  frozen layers compute before any re-training, and the base reference would not be the network as
  stored. The scratch reference uses the same units so its CC and losses compare directly.
- Losses: MSE on normalized Π, as in ``turbtl train``; the validation loss (target's ``val``
  members) every ``transfer.eval_every`` steps; metrics on the target's ``test`` members (the CC of
  every test snapshot is stored in the row file, ``cc_snapshots``).

Shared work. The output of the frozen prefix (layers before the first trainable one) does not
change while a subset trains, so it is computed once per sample (:class:`PrefixCache`, keyed by
target, fraction, seed and first trainable layer) and training runs the rest of the network on it
(:class:`Suffix`); autograd stops at the first trainable layer because nothing below it needs a
gradient. The cache is computed in fixed chunks of :data:`PREFIX_BATCH` samples, so a subset gets
the same weights alone, in a slice or in a pool. Validation and test activations are cached the same
way (per target, split and first layer; every one kept while together they fit
:data:`EVAL_CACHE_BYTES`, so the test prefix is computed once per worker, not once per job).

Workers. :func:`run_sweep` runs the jobs in this process and, for ``workers`` > 1, in
``workers - 1`` spawned processes; each worker keeps one :class:`Context` for the whole call, which
reads each target's splits from the store once (a training sample is cut from the split read once:
the same rows, bit for bit, as reading the sample alone). The pool takes the jobs longest first
(:func:`longest_first`, by :meth:`Context.cost`), so the workers finish together; a job's row and
weights do not depend on the worker, the order or what the worker ran before (at equal torch threads).

Layout (CONTRACTS.md "Models", "Sweep results"; the paths: :mod:`suite.layout`):
- model folders ``DIR/models/tl/<target>/f<fraction>_s<seed>/<mask>/`` (scratch: ``.../scratch/``);
- one row file per finished job ``DIR/sweep/<target>/rows/f<fraction>_s<seed>/<kind>-<mask>.json``,
  written atomically after the model folder; a job is finished iff its row file exists, so a killed
  sweep loses only the jobs in flight, and slices of a SLURM array never write the same file;
- ``DIR/sweep/<target>/results.csv``, rebuilt from the row files (under a lock) once at the end of
  every sweep or slice (not per job); :func:`load_results` reads it.

    >>> jobs = plan(["high_re"], select("singles", 11), [0.1], [0])      # 11 tl + 2 references
    >>> run_sweep(spec, jobs, workers=2)                                 # doctest: +SKIP
    >>> load_results(run_dir, "high_re").sort_values("cc").tail()        # doctest: +SKIP

Modules: :mod:`~suite.transfer.jobs` (jobs, their order and slices, their files),
:mod:`~suite.transfer.prefix` (the shared prefix), :mod:`~suite.transfer.worker` (one job, the
process pool), :mod:`~suite.transfer.results` (the table). ``bench/sweep_harness.py`` times the
sweep with and without the prefix cache side by side (synthetic data) against the layer-work floor.
"""
from __future__ import annotations

from ..dataset import FDNSData  # noqa: F401 - re-exported: tests read a target's labels through it
from .jobs import Job, is_done, model_dir, parse_slice, plan, row_path, slice_jobs
from .prefix import PREFIX_BATCH, PrefixCache, Suffix, prefix_activations, with_inputs
from .results import COLUMNS, KINDS, collect_rows, load_results, sort_table, summary, write_results
from .worker import (EVAL_CACHE_BYTES, Context, SweepSpec, base_train_size, cpu_count, local_env, longest_first,
                     run_sweep, take_rows)

__all__ = ["COLUMNS", "Context", "EVAL_CACHE_BYTES", "Job", "KINDS", "PREFIX_BATCH", "PrefixCache", "Suffix",
           "SweepSpec", "base_train_size", "collect_rows", "cpu_count", "is_done", "load_results", "local_env",
           "longest_first", "model_dir", "parse_slice", "plan", "prefix_activations", "row_path", "run_sweep",
           "slice_jobs", "sort_table", "summary", "take_rows", "with_inputs", "write_results"]
