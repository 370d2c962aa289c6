"""Validation of presets and config files: one clear message naming the field and the range."""
import math

import pytest

from suite.config import load_config, SCHEMA
from suite.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, field, words", [
    ('extends = "ci"\n[systems.base]\nre = -5.0', "systems.base.re", "> 0"),
    ('extends = "ci"\n[systems.base]\nre = 0', "systems.base.re", "> 0"),
    ('extends = "ci"\n[dns]\ndt = 0.0', "dns.dt", "> 0"),
    ('extends = "ci"\n[grid]\nn_dns = 63', "grid.n_dns", "even"),
    ('extends = "ci"\n[grid]\nn_dns = 96\nn_les = 20', "grid.n_les", "divide"),
    ('extends = "ci"\n[grid]\nn_les = 128', "grid.n_les", "divide"),
    ('extends = "ci"\n[systems.base]\nkf = 30.0', "systems.base.kf", "resolved"),
    ('extends = "ci"\n[dns]\nstepper = "euler"', "dns.stepper", "ab2cn"),
    ('extends = "ci"\n[dns]\nfilter = "median"', "dns.filter", "gaussian"),
    ('extends = "ci"\n[dns]\nsystems = ["nowhere"]', "dns.systems", "accepted"),
    ('extends = "ci"\n[model]\nkernel = 4', "model.kernel", "odd"),
    ('extends = "ci"\n[model]\nlayers = 1', "model.layers", "[2, 32]"),
    ('extends = "ci"\n[transfer]\nsubsets = "0101"', "transfer.subsets", "masks of 3"),
    ('extends = "ci"\n[transfer]\nsubsets = "000"', "transfer.subsets", "at least one"),
    ('extends = "ci"\n[transfer]\nfractions = [0.0]', "transfer.fractions", "(0, 1]"),
    ('extends = "ci"\n[transfer]\nfractions = [1.5]', "transfer.fractions", "(0, 1]"),
    ('extends = "ci"\n[train]\nepochs = 0', "train.epochs", "[1,"),
    ('extends = "ci"\n[train]\nepochs = 2.5', "train.epochs", "integer"),
    ('extends = "ci"\n[dns]\nsample_interval = 0.015', "dns.sample_interval", "multiple"),
    ('extends = "ci"\n[dns]\nbogus = 1', "dns.bogus", "not a known field"),
    ('extends = "ci"\n[nonsense]\nx = 1', "nonsense", "not a known section"),
    ('extends = "nope"', "preset", "unknown"),
    ('extends = "ci"\n[dns]\ndt = nan', "dns.dt", "finite"),
    ('extends = "ci"\n[systems.base]\nn_dns = 63', "systems.base.n_dns", "even integer >= 8"),
    ('extends = "ci"\n[systems.base]\nn_dns = 40', "systems.base.n_dns", "multiple"),
    ('extends = "ci"\n[systems.base]\nn_dns = 32\nkf = 12.0', "systems.base.kf", "systems.base.n_dns = 32"),
    ('extends = "ci"\n[train]\naugment = "rot45"', "train.augment", "none, rot90"),
    ('extends = "ci"\n[train]\naugment = "rot90"\nsystem = "beta20"', "train.augment", "beta = 20"),
    ('extends = "ci"\n[train]\naugment = "rot90"\n[systems.base]\nforcing = "kolmogorov-y"', "train.augment",
     "preferred direction"),
    ('extends = "ci"\n[transfer]\nepochs_by_layers = [50, 0]', "transfer.epochs_by_layers", "[1, 100000]"),
    ('extends = "ci"\n[transfer]\nepochs_by_layers = [1, 2, 3, 4]', "transfer.epochs_by_layers",
     "model.layers = 3"),
    ('extends = "ci"\n[transfer]\nepochs_by_layers = [1.5]', "transfer.epochs_by_layers entry", "integer"),
    ('extends = "small"\n[grid]\nn_les = 16', "les.systems", "must be <= 7 for grid.n_les = 16"),
    ('extends = "ci"\n[transfer]\noracle_init = "target"', "transfer.oracle_init", "random"),
])
def test_bad_values_name_the_field(tmp_path, text, field, words):
    with pytest.raises(ConfigError) as e:
        load_config(config_file=write(tmp_path, text))
    assert e.value.field == field
    assert words in str(e.value)


def test_user_defined_system_and_override(tmp_path):
    cfg = load_config(config_file=write(tmp_path, 'extends = "ci"\n[systems.mine]\nre = 321.0\nkf = 2.0\n'
                                        '[dns]\nsystems = ["base", "mine"]'))
    assert cfg.system("mine").re == 321.0 and math.isclose(cfg.system("mine").nu, 1 / 321)
    assert cfg.system("base").re == 400.0  # ci override of the catalog


def test_defaults_filled_and_width():
    cfg = load_config(preset="ci")
    assert cfg.filter_width == pytest.approx(2 * cfg.grid.L / cfg.grid.n_les)
    d = cfg.to_dict()
    assert set(SCHEMA) <= set(d)


def test_per_system_grid_defaults_to_grid_n_dns(tmp_path):
    cfg = load_config(config_file=write(tmp_path, 'extends = "ci"\n[systems.high_re]\nn_dns = 128'))
    assert cfg.system("high_re").n_dns == 128 and cfg.system("base").n_dns == cfg.grid.n_dns == 64
    assert cfg.to_dict()["systems"]["high_re"]["n_dns"] == 128


def test_epochs_by_layers_table():
    from suite.config import epochs_for_layers
    assert [epochs_for_layers([50, 100], k) for k in (1, 2, 3, 11)] == [50, 100, 100, 100]
    assert epochs_for_layers([7], 5) == 7
    with pytest.raises(ValueError):
        epochs_for_layers([], 1)
