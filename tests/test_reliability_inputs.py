"""Bad input through the real CLI (`turbtl.cli.main`, the function behind `turbtl`): exit status 2, one
clear line naming the field, the value and what is accepted, and nothing written (the run folder is not
created, or an existing one is unchanged: compared file by file before and after).

Configuration values, options, and bad data (missing / foreign / other-schema stores, NaN in a store,
a base network of another shape) are covered; rules with a range are also checked property-based
(hypothesis): any dt <= 0, any Re <= 0, any n_les that does not divide n_dns, any mask that is not a
string of L characters over {0, 1} with a 1, any fraction outside (0, 1].
"""
from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turbtl.cli import main

from reliability_common import ci_run, copy_run, snapshot, write_config

CI = 'extends = "ci"\n'

# (id, command, config text (None: --preset ci), extra arguments, words the one error line must hold)
# The words name the field, the value given and what is accepted.
CONFIG_CASES = [
    ("n_dns-odd", "dns", "[grid]\nn_dns = 63\n", [], ["grid.n_dns", "63", "even integer >= 8"]),
    ("n_dns-tiny", "dns", "[grid]\nn_dns = 4\nn_les = 4\n", [], ["grid.n_dns", "4", "even integer >= 8"]),
    ("n_les-not-divisor", "dns", "[grid]\nn_les = 24\n", [], ["grid.n_les", "24", "divide grid.n_dns = 64"]),
    ("n_les-larger", "dns", "[grid]\nn_les = 128\n", [], ["grid.n_les", "128", "divide", "no larger"]),
    ("n_les-odd", "dns", "[grid]\nn_les = 7\n", [], ["grid.n_les", "7", "even integer >= 4"]),
    ("L-zero", "dns", "[grid]\nL = 0.0\n", [], ["grid.L", "0.0", "> 0"]),
    ("dt-zero", "dns", "[dns]\ndt = 0.0\n", [], ["dns.dt", "0.0", "> 0"]),
    ("dt-negative", "dns", "[dns]\ndt = -0.004\n", [], ["dns.dt", "-0.004", "> 0"]),
    ("dt-nan", "dns", "[dns]\ndt = nan\n", [], ["dns.dt", "nan", "finite"]),
    ("dt-text", "dns", '[dns]\ndt = "fast"\n', [], ["dns.dt", "'fast'", "float"]),
    ("re-zero", "dns", "[systems.base]\nre = 0.0\n", [], ["systems.base.re", "0.0", "> 0"]),
    ("re-negative", "train", "[systems.base]\nre = -400.0\n", [], ["systems.base.re", "-400.0", "> 0"]),
    ("kf-beyond-grid", "dns", "[systems.base]\nkf = 40.0\n", [], ["systems.base.kf", "40.0", "resolved range", "<= 21"]),
    ("kf-below-1", "dns", "[systems.base]\nkf = 0.5\n", [], ["systems.base.kf", "0.5", "kf >= 1"]),
    ("forcing-unknown", "dns", '[systems.base]\nforcing = "sinusoid"\n', [], ["systems.base.forcing", "'sinusoid'", "cos-xy", "stochastic"]),
    ("mu-negative", "dns", "[systems.base]\nmu = -0.1\n", [], ["systems.base.mu", "-0.1", ">= 0"]),
    ("init-unknown", "dns", '[systems.base]\ninit = "gaussian"\n', [], ["systems.base.init", "'gaussian'", "random", "zero"]),
    ("system-unknown", "dns", '[dns]\nsystems = ["mars"]\n', [], ["dns.systems", "'mars'", "base", "high_re"]),
    ("stepper-unknown", "dns", '[dns]\nstepper = "euler"\n', [], ["dns.stepper", "'euler'", "ab2cn, rk3cn, etdrk4"]),
    ("filter-unknown", "dns", '[dns]\nfilter = "spectral"\n', [], ["dns.filter", "'spectral'", "gaussian, box, sharp"]),
    ("filter-width-negative", "dns", "[dns]\nfilter_width = -1.0\n", [], ["dns.filter_width", "-1.0", ">= 0"]),
    ("dealias-unknown", "dns", '[dns]\ndealias = "1/2"\n', [], ["dns.dealias", "'1/2'", "2/3, 3/2, none"]),
    ("backend-unknown", "dns", '[dns]\nbackend = "jax"\n', [], ["dns.backend", "'jax'", "numpy, torch"]),
    ("sample-interval-below-dt", "dns", "[dns]\nsample_interval = 0.002\n", [], ["dns.sample_interval", "0.002", ">= dns.dt = 0.004"]),
    ("sample-interval-not-multiple", "dns", "[dns]\nsample_interval = 0.006\n", [], ["dns.sample_interval", "0.006", "whole multiple"]),
    ("snapshots-zero", "dns", "[dns]\nsnapshots = 0\n", [], ["dns.snapshots", "0", "[1, 10000000]"]),
    ("members-train-zero", "dns", "[dns]\nmembers_train = 0\n", [], ["dns.members_train", "0", "[1, 100000]"]),
    ("chunk-time-zero", "dns", "[dns]\nchunk_time = 0\n", [], ["dns.chunk_time", "0", "[1, 100000]"]),
    ("seed-negative", "dns", "[dns]\nseed = -1\n", [], ["dns.seed", "-1", "[0, 2147483647]"]),
    ("ranks-per-member-vs-grid", "dns", "[dns]\nranks_per_member = 3\n", [], ["grid.n_dns = 64", "3 ranks", "1, 2, 4, 8"]),
    ("spinup-negative", "dns", "[dns]\nspinup_time = -1.0\n", [], ["dns.spinup_time", "-1.0", ">= 0"]),
    ("kernel-even", "train", "[model]\nkernel = 4\n", [], ["model.kernel", "4", "odd integer in [1, 15]"]),
    ("layers-one", "train", "[model]\nlayers = 1\n", [], ["model.layers", "1", "[2, 32]"]),
    ("width-zero", "train", "[model]\nwidth = 0\n", [], ["model.width", "0", "[1, 1024]"]),
    ("padding-unknown", "train", '[model]\npadding = "reflect"\n', [], ["model.padding", "'reflect'", "circular, zeros"]),
    ("epochs-zero", "train", "[train]\nepochs = 0\n", [], ["train.epochs", "0", "[1, 100000]"]),
    ("epochs-float", "train", "[train]\nepochs = 2.5\n", [], ["train.epochs", "2.5", "integer"]),
    ("lr-zero", "train", "[train]\nlr = 0.0\n", [], ["train.lr", "0.0", "(0, 10]"]),
    ("train-fraction-above-1", "train", "[train]\nfraction = 1.5\n", [], ["train.fraction", "1.5", "(0, 1]"]),
    ("batch-zero", "train", "[train]\nbatch_size = 0\n", [], ["train.batch_size", "0", "[1, 65536]"]),
    ("train-system-unknown", "train", '[train]\nsystem = "mars"\n', [], ["train.system", "'mars'", "base"]),
    ("bf16-not-bool", "train", '[train]\nbf16 = "yes"\n', [], ["train.bf16", "'yes'", "true or false"]),
    ("tl-fraction-zero", "transfer", "[transfer]\nfractions = [0.0]\n", [], ["transfer.fractions", "0.0", "(0, 1]"]),
    ("tl-fraction-above-1", "transfer", "[transfer]\nfractions = [0.5, 1.2]\n", [], ["transfer.fractions", "1.2", "(0, 1]"]),
    ("mask-wrong-length", "transfer", '[transfer]\nsubsets = "0101"\n', [], ["transfer.subsets", "'0101'", "length 4"]),
    ("mask-all-zeros", "transfer", '[transfer]\nsubsets = "000"\n', [], ["transfer.subsets", "'000'", "at least one layer"]),
    ("mask-bad-char", "transfer", '[transfer]\nsubsets = "01x"\n', [], ["transfer.subsets", "01x"]),
    ("targets-empty", "transfer", "[transfer]\ntargets = []\n", [], ["transfer.targets", "[]", "must not be empty"]),
    ("target-unknown", "transfer", '[transfer]\ntargets = ["venus"]\n', [], ["transfer.targets", "'venus'", "beta20"]),
    ("tl-epochs-zero", "transfer", "[transfer]\nepochs = 0\n", [], ["transfer.epochs", "0", "[1, 100000]"]),
    ("closure-unknown", "les", '[les]\nclosures = ["magic"]\n', [], ["les.closures", "'magic'", "smag", "cnn:<mask>"]),
    ("les-duration-zero", "les", "[les]\nduration = 0.0\n", [], ["les.duration", "0.0", "> 0"]),
    ("percentile-zero", "analyze", "[analyze]\npercentile = 0.0\n", [], ["analyze.percentile", "0.0", "(0, 100]"]),
    ("analyze-workers-zero", "analyze", "[analyze]\nworkers = 0\n", [], ["analyze.workers", "0", "[1, 1024]"]),
    ("unknown-section", "dns", "[solver]\nn = 3\n", [], ["[solver]", "not a known section", "grid"]),
    ("unknown-field", "dns", "[grid]\nnx = 64\n", [], ["grid.nx", "not a known field", "n_dns"]),
    ("system-name", "dns", '[systems."bad name!"]\nre = 10.0\n', [], ["systems.bad name!", "letters, digits"]),
    ("extends-unknown", "dns", 'extends = "huge"\n', [], ["preset = 'huge'", "ci, medium, paper, small"]),
]

OPTION_CASES = [
    ("systems-empty", ["dns", "--preset", "ci", "--systems", " , "], ["--systems", "' , '", "one or more"]),
    ("systems-unknown", ["dns", "--preset", "ci", "--systems", "base,pluto"], ["dns.systems", "'pluto'", "high_re"]),
    ("fractions-zero", ["transfer", "--preset", "ci", "--fractions", "0"], ["transfer.fractions", "0.0", "(0, 1]"]),
    ("fractions-text", ["transfer", "--preset", "ci", "--fractions", "half"], ["--fractions", "'half'", "(0, 1]"]),
    ("seeds-negative", ["transfer", "--preset", "ci", "--seeds", "-1"], ["transfer.seeds", "-1", "[0, 2147483647]"]),
    ("slice-out-of-range", ["transfer", "--preset", "ci", "--slice", "3/2"], ["--slice", "'3/2'", "0 <= i < n"]),
    ("slice-text", ["transfer", "--preset", "ci", "--slice", "one"], ["--slice", "'one'", "0 <= i < n"]),
    ("subsets-wrong-length", ["transfer", "--preset", "ci", "--subsets", "0000"], ["transfer.subsets", "'0000'", "length 4"]),
    ("subsets-keyword", ["transfer", "--preset", "ci", "--subsets", "triples"], ["transfer.subsets", "triples", "singles"]),
    ("tl-epochs-option", ["transfer", "--preset", "ci", "--epochs", "0"], ["transfer.epochs", "0", "[1, 100000]"]),
    ("workers-option", ["transfer", "--preset", "ci", "--workers", "0"], ["transfer.workers", "0", "[1, 1024]"]),
    ("nproc-zero", ["train", "--preset", "ci", "--nproc", "0"], ["--nproc", "0", ">= 1"]),
    ("train-system-option", ["train", "--preset", "ci", "--system", "mars"], ["'mars'", "base", "beta20"]),
    ("skip-unknown", ["run", "--preset", "ci", "--skip", "dns,lunch"], ["--skip", "'lunch'", "dns, train"]),
    ("ranks-zero", ["run", "--preset", "ci", "--ranks", "0"], ["--ranks", "0", ">= 1"]),
    ("scheduler-file-missing", ["analyze", "--preset", "ci", "--scheduler-file", "/nonexistent/sched.json"],
     ["--scheduler-file", "/nonexistent/sched.json", "not found"]),
    ("closures-option", ["les", "--preset", "ci", "--closures", "smag,wizard"], ["les.closures", "'wizard'", "dsmag"]),
    ("les-systems-empty", ["les", "--preset", "ci", "--systems", ","], ["--systems", "','", "one or more"]),
    ("config-missing", ["dns", "--config", "/nonexistent/cfg.toml"], ["--config", "/nonexistent/cfg.toml", "not found"]),
]


def _check(argv, words, capsys, run: Path, before=None):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    assert snapshot(run) == before, f"{run} was written to"
    return lines[0]


@pytest.mark.parametrize("name, command, text, extra, words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, name, command, text, extra, words):
    cfg = write_config(tmp_path / "cfg.toml", CI + text if not text.startswith("extends") else text)
    _check([command, "--config", cfg, "--run-dir", tmp_path / "run", *extra], words, capsys, tmp_path / "run")


@pytest.mark.parametrize("name, argv, words", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, name, argv, words):
    _check(argv + ["--run-dir", tmp_path / "run"], words, capsys, tmp_path / "run")


def test_bad_toml_or_a_folder_as_config_and_unknown_preset(tmp_path, capsys):
    bad = write_config(tmp_path / "bad.toml", "[grid\nn_dns = 64\n")
    _check(["dns", "--config", bad, "--run-dir", tmp_path / "run"], ["--config", str(bad), "not valid TOML"],
           capsys, tmp_path / "run")
    _check(["dns", "--config", tmp_path, "--run-dir", tmp_path / "run"], ["--config", "is a directory"],
           capsys, tmp_path / "run")
    # argparse's own choices (usage line + one error line)
    with pytest.raises(SystemExit) as e:
        main(["dns", "--preset", "enormous", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--preset" in err and "'enormous'" in err and "'ci', 'medium', 'paper', 'small'" in err
    assert not (tmp_path / "run").exists()


def test_report_on_a_missing_run_folder(tmp_path, capsys):
    _check(["report", "--run-dir", tmp_path / "nope"], ["--run-dir", str(tmp_path / "nope"), "no such run folder"],
           capsys, tmp_path / "nope")


# --------------------------------------------------------------------------------------------
# bad data in an existing run folder: the folder is left exactly as it was


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return ci_run(tmp_path_factory, upto="transfer")


@pytest.fixture
def run(shared, tmp_path):
    return copy_run(shared, tmp_path / "run", parts=("fdns", "models", "stages"))


def _zarr_attrs(store: Path, **changes):
    import zarr
    g = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    g.attrs.update(changes)


def test_missing_store(run, capsys):
    shutil.rmtree(run / "fdns" / "base.zarr")
    _check(["train", "--preset", "ci", "--run-dir", run], ["base.zarr", "not found", "turbtl dns"], capsys, run,
           snapshot(run))


def test_foreign_store(run, capsys):
    import xarray as xr
    store = run / "fdns" / "high_re.zarr"
    shutil.rmtree(store)
    xr.Dataset({"u": ("x", np.arange(4.0))}).to_zarr(store, zarr_format=3, consolidated=False)
    _check(["transfer", "--preset", "ci", "--run-dir", run], ["high_re.zarr", "kind = None", "turbtl-fdns"],
           capsys, run, snapshot(run))


def test_store_of_another_schema_version(run, capsys):
    _zarr_attrs(run / "fdns" / "base.zarr", schema_version=99)
    _check(["train", "--preset", "ci", "--run-dir", run, "--force"],
           ["base.zarr", "schema_version = 99", "schema_version 2", "turbtl dns --force"], capsys, run, snapshot(run))


def test_store_of_the_old_pi_definition(run, capsys):
    """A schema-1 store (Π with the 2/3-truncated LES Jacobian) is refused in one line."""
    _zarr_attrs(run / "fdns" / "base.zarr", schema_version=1, les_jacobian=None)
    _check(["train", "--preset", "ci", "--run-dir", run, "--force"],
           ["base.zarr", "schema_version = 1", "2/3-truncated", "turbtl dns --force"], capsys, run, snapshot(run))


def test_store_without_data_variables(run, capsys):
    shutil.rmtree(run / "fdns" / "beta20.zarr" / "pi")
    _check(["transfer", "--preset", "ci", "--run-dir", run], ["beta20.zarr", "corrupt", "'pi'"], capsys, run,
           snapshot(run))


def test_nan_in_a_complete_snapshot(run, capsys):
    import zarr
    g = zarr.open_group(str(run / "fdns" / "base.zarr"), mode="r+", use_consolidated=False)
    assert g["complete"][0, 1]
    block = g["omega"][0, 0:4]
    block[1, 3, 5] = np.nan
    g["omega"][0, 0:4] = block
    _check(["train", "--preset", "ci", "--run-dir", run, "--force"], ["base.zarr", "omega", "NaN/inf"], capsys, run,
           snapshot(run))


def test_missing_base_network(run, capsys):
    shutil.rmtree(run / "models")
    for cmd in ("transfer", "analyze", "les"):
        _check([cmd, "--preset", "ci", "--run-dir", run], ["models/base", "turbtl train"], capsys, run, snapshot(run))


def test_base_network_of_another_depth(run, capsys):
    cfg = write_config(run.parent / "deep.toml", CI + "[model]\nlayers = 4\n")
    _check(["transfer", "--config", cfg, "--run-dir", run], ["model.layers = 4", "3 layers", "retrain"], capsys, run,
           snapshot(run))


def test_more_les_members_than_the_store_has(run, capsys):
    cfg = write_config(run.parent / "les.toml", CI + "[les]\nmembers = 5\n")
    _check(["les", "--config", cfg, "--run-dir", run, "--no-progress"],
           ["les.members = 5", "1 complete test member", "[1, 1]"], capsys, run, snapshot(run))


def test_store_written_with_another_configuration(run, capsys):
    cfg = write_config(run.parent / "other.toml", CI + "[systems.base]\nre = 500.0\n")
    _check(["dns", "--config", cfg, "--run-dir", run, "--systems", "base", "--no-progress"],
           ["base.zarr", "another configuration", "--force"], capsys, run, snapshot(run))


# --------------------------------------------------------------------------------------------
# properties over whole ranges (hypothesis), through the CLI


PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _prop(argv_of, text, words, capsys):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cfg = write_config(d / "c.toml", CI + text) if text is not None else None
        argv = argv_of(cfg) + ["--run-dir", d / "run"]
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and not (d / "run").exists(), err
        assert all(w in err for w in words), err


@PROPS
@given(dt=st.one_of(st.just(0.0), st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)))
def test_any_non_positive_dt_is_rejected(capsys, dt):
    _prop(lambda c: ["dns", "--config", c], f"[dns]\ndt = {dt!r}\n", ["dns.dt", "> 0"], capsys)


@PROPS
@given(re=st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))
def test_any_non_positive_reynolds_number_is_rejected(capsys, re):
    _prop(lambda c: ["dns", "--config", c], f"[systems.high_re]\nre = {re!r}\n", ["systems.high_re.re", "> 0"], capsys)


@PROPS
@given(n_dns=st.integers(4, 128).map(lambda k: 2 * k), n_les=st.integers(2, 128).map(lambda k: 2 * k))
def test_any_les_grid_that_does_not_divide_the_dns_grid_is_rejected(capsys, n_dns, n_les):
    if n_les <= n_dns and n_dns % n_les == 0:
        return  # a valid pair
    _prop(lambda c: ["dns", "--config", c], f"[grid]\nn_dns = {n_dns}\nn_les = {n_les}\n",
          ["grid.n_les", str(n_les), f"divide grid.n_dns = {n_dns}"], capsys)


@PROPS
@given(mask=st.text(alphabet="01x2 ", min_size=1, max_size=6))
def test_any_mask_not_of_L_bits_with_a_one_is_rejected(capsys, mask):
    m = mask.strip()  # surrounding blanks are ignored
    if len(m) == 3 and set(m) <= {"0", "1"} and "1" in m or not m:
        return  # a valid mask for the 3-layer ci network (or empty: the option's default)
    _prop(lambda c: ["transfer", "--preset", "ci", f"--subsets={mask}"], None, ["transfer.subsets"], capsys)


@PROPS
@given(f=st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                   st.floats(min_value=1.0, exclude_min=True, allow_infinity=False)))
def test_any_fraction_outside_0_1_is_rejected(capsys, f):
    assert not (0 < f <= 1) or math.isnan(f)
    _prop(lambda c: ["transfer", "--preset", "ci", f"--fractions={f!r}"], None, ["transfer.fractions", "(0, 1]"],
          capsys)
