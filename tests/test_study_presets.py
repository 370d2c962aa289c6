"""The study presets carry the design of docs/study-regime.md: targets that cover the paper's
family (a change of Re, of forcing wavenumber, a beta-plane, forced -> decaying), equal optimizer
budgets, repeats and capacity controls. The measured consequences (the oracle gaps, the wall time)
are in docs/study-regime.md and in the report's checks; these tests pin the configuration."""
import json
import math

import pytest

from turbtl.cli import main


def resolved(preset, capsys):
    assert main(["config", "--preset", preset]) == 0
    return json.loads(capsys.readouterr().out)


def kinds(cfg):
    """Which family member each target is, relative to the base system."""
    base = cfg["systems"]["base"]
    out = {}
    for t in cfg["transfer"]["targets"]:
        s = cfg["systems"][t]
        k = set()
        if s["forcing"] == "none":
            k.add("decaying")
        elif s["kf"] != base["kf"]:
            k.add("forcing")
        if s["beta"] != base["beta"]:
            k.add("beta")
        if s["forcing"] != "none" and s["re"] >= 10 * base["re"]:
            k.add("re10")
        out[t] = k
    return out


@pytest.mark.parametrize("preset", ["small", "medium"])
def test_targets_cover_the_family(preset, capsys):
    cfg = resolved(preset, capsys)
    found = set().union(*kinds(cfg).values())
    assert {"decaying", "forcing", "beta"} <= found
    if preset == "medium":
        assert "re10" in found   # issue 19: a >= 10x Re target in medium
        re_t = [t for t, k in kinds(cfg).items() if "re10" in k]
        for t in re_t:           # on its own, finer DNS grid
            assert cfg["systems"][t].get("n_dns", cfg["grid"]["n_dns"]) > cfg["grid"]["n_dns"]


@pytest.mark.parametrize("preset", ["small", "medium"])
def test_equal_budgets_repeats_and_controls(preset, capsys):
    cfg = resolved(preset, capsys)
    d, tr, tf = cfg["dns"], cfg["train"], cfg["transfer"]
    base_steps = tr["epochs"] * math.ceil(d["members_train"] * d["snapshots"] / tr["batch_size"])
    assert tf["steps"] >= 300 and base_steps == tf["steps"]   # the oracle gets the base network's budget
    assert len(tf["seeds"]) >= 3 and len(tf["fractions"]) >= 2
    assert tf["random_control"] and tf["oracle"] and tf["eval_every"] > 0
    for f in tf["fractions"]:    # every fraction selects at least one whole snapshot
        assert f * d["members_train"] * d["snapshots"] >= 1
