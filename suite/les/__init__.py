"""Online (a posteriori) LES with physics and CNN closures, judged against the filtered DNS.

For each system, ``run_les`` starts an ensemble of LES members from the first snapshot of the FDNS
store's *test* members (``DIR/fdns/<system>.zarr``) and steps it on the LES grid with the solver
(:class:`solver.equation.Equation` + a stepper) once per closure, the closure Π being the
equation's explicit extra term (:mod:`suite.online`). All members of one closure are stepped
together as one batch. The result is compared with the FDNS of the same members.

The LES equation (the filtered equation of the store, CONTRACTS.md Π sign):

    ∂ω̄/∂t + J(ψ̄, ω̄) = ν∇²ω̄ − μω̄ − βv̄ + F̄ + Π_model,     F̄ = G F

with the store's system parameters and stepper, the exact LES-grid Jacobian J(ψ̄, ω̄) that Π was
formed with (:func:`solver.sgs.les_equation`: every LES mode below Nyquist is evolved, and the
closure's whole Π acts there, whatever the DNS's own dealiasing rule), and the steady forcing filtered by the store's filter G (the FDNS forcing is the filtered one). Stochastically
forced systems are not supported (their filtered forcing is not reproducible on the LES grid).

dt rule. ``dt_les = sample_interval / ceil(sample_interval / (dt_dns · les.dt_factor))``: the
largest step no larger than ``dt_dns × les.dt_factor`` that lands on every FDNS snapshot time, so
LES and FDNS are compared at the same times. As in the solver, the CFL number is watched, not
imposed: a member whose field is not finite or whose CFL number exceeds ``dns.cfl_max`` (checked
every :data:`~suite.les.loop.CHECK_EVERY` steps and at every snapshot) is *blown up*: its time is recorded, it is
dropped from the batch, and the other members go on. A blown-up member is recorded, never fatal.

Closures (``les.closures`` or ``--closures``): ``none``, ``smag``, ``leith``, ``dsmag``, ``dleith``,
``cnn:base`` (``DIR/models/base``), ``cnn:<mask>`` (the TL network of the simulated system,
``DIR/models/tl/<system>/f<fraction>_s<seed>/<mask>`` with the first ``transfer.fractions`` and
``transfer.seeds``), ``cnn:<target>/<mask>`` (another target's TL network) and
``cnn:<target>/f<fraction>_s<seed>/<mask>`` (fully explicit). ``none`` is always run (first): the
skill scores are relative to it. A bare ``cnn:<mask>`` is skipped on systems that are not transfer
targets (the base system has no TL network), so one closure list serves every system.

Metrics (one row per closure in ``DIR/les/<system>_metrics.csv``), on the snapshots both the LES
and the FDNS have at times 0 < t ≤ les.duration (at most :data:`~suite.les.store.MAX_SNAPSHOTS`, evenly strided),
members pooled, blown-up members' snapshots after the blow-up excluded:

- ``e_spec_<band>``, ``z_spec_<band>``: RMS over the shells of the band of log10(S_LES/S_FDNS) of
  the mean energy / enstrophy spectra; bands ``low``, ``mid``, ``high`` split [1, k_c] in three
  equal parts in log k (k_c = n_les/2 − 1, the highest shell the LES evolves whole),
  ``all`` = every shell 1..k_c;
- ``pdf_w1``: 1D Wasserstein distance between the pooled vorticity values, divided by the FDNS
  vorticity standard deviation;
- ``energy_err``, ``enstrophy_err``: relative RMS difference of E(t), Z(t) (LES grid, member by
  member) from the FDNS ones at the common times;
- ``backscatter``, ``backscatter_fdns``: mean fraction of points with T = Π∇²ω̄ < 0 (model Π on
  the LES field; true Π on the FDNS);
- ``stable_members``, ``t_blowup_min`` (NaN if none blew up), ``steps_per_s`` (ensemble steps);
- ``skill_<d>`` = 1 − d(closure)/d(none) for d in ``e_spec_all``, ``z_spec_all``, ``pdf_w1``,
  ``energy_err`` (> 0: better than no closure).

Modules: :mod:`~suite.les.closures` (closure names, their networks, the online term),
:mod:`~suite.les.setup` (the set-up of a store, the solver objects), :mod:`~suite.les.loop` (the
ensemble loop), :mod:`~suite.les.metrics`, :mod:`~suite.les.store` (the FDNS truth, the LES store
and table), :mod:`~suite.les.figures`, :mod:`~suite.les.stage` (``turbtl les``). The benchmark of
the LES step (with and without the CNN closure) is ``bench/les_harness.py``.
"""
from __future__ import annotations

from .closures import ClosureSpec, check_models, parse_closure, resolve_closures, term_factory
from .figures import TABLE_COLUMNS, figures, format_table
from .loop import CHECK_EVERY, Trajectory, run_ensemble
from .metrics import (BANDS, SKILL_OF, add_skill, closure_metrics, log_spectrum_error, mean_spectra, pdf,
                      relative_rms, series_of, skill, spectral_bands, wasserstein1)
from .setup import FilteredForcing, LESSetup, build_les, make_les_backend
from .stage import SystemResult, prepare, run_les, run_system
from .store import LES_SCHEMA_VERSION, MAX_SNAPSHOTS, PDF_BINS, Truth, open_les, read_truth

__all__ = ["BANDS", "CHECK_EVERY", "ClosureSpec", "FilteredForcing", "LESSetup", "LES_SCHEMA_VERSION",
           "MAX_SNAPSHOTS", "PDF_BINS", "SKILL_OF", "SystemResult", "TABLE_COLUMNS", "Trajectory", "Truth",
           "add_skill", "build_les", "check_models", "closure_metrics", "figures", "format_table",
           "log_spectrum_error", "make_les_backend", "mean_spectra", "open_les", "parse_closure", "pdf",
           "prepare", "read_truth", "relative_rms", "resolve_closures", "run_ensemble", "run_les", "run_system",
           "series_of", "skill", "spectral_bands", "term_factory", "wasserstein1"]
