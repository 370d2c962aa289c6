"""Subset selection (suite.masks): the families, their counts and order, explicit masks, errors."""
from __future__ import annotations

import math

import pytest

from suite.errors import ConfigError
from suite.masks import FAMILIES, check_mask, first_trainable, n_trained, select


@pytest.mark.parametrize("L", [1, 2, 3, 5, 11])
def test_family_counts_and_members(L):
    sets = {name: select(name, L) for name in FAMILIES}
    assert len(sets["singles"]) == L and all(n_trained(m) == 1 for m in sets["singles"])
    assert len(sets["pairs"]) == math.comb(L, 2) and all(n_trained(m) == 2 for m in sets["pairs"])
    assert len(sets["all"]) == 2 ** L - 1 and len(set(sets["all"])) == 2 ** L - 1
    assert sorted(sets["prefixes"]) == sorted("1" * k + "0" * (L - k) for k in range(1, L + 1))
    assert sorted(sets["suffixes"]) == sorted("0" * k + "1" * (L - k) for k in range(L))
    for name, masks in sets.items():
        assert all(len(m) == L and set(m) <= {"0", "1"} and "1" in m for m in masks), name
        assert set(masks) <= set(sets["all"]), name
        # sorted by first trainable layer: jobs sharing a prefix are neighbours
        firsts = [first_trainable(m) for m in masks]
        assert firsts == sorted(firsts), name


def test_layer_one_first_and_explicit_masks():
    assert select("singles", 4) == ["1000", "0100", "0010", "0001"]
    assert first_trainable("0010") == 3 and first_trainable("000") == 0
    assert select(" 0100, 1001 ,0100", 4) == ["0100", "1001"]  # given order, duplicates dropped
    assert check_mask(" 011 ", 3) == "011"


@pytest.mark.parametrize("spec, bad, what", [
    ("0101", "0101", "length 4"),
    ("101,01", "01", "length 2"),
    ("1x1", "1x1", "length 3"),
    ("000", "000", "at least one"),
    ("everything", "everything", "length 10"),
    ("", "", ""),
])
def test_errors_name_the_mask_its_length_and_the_accepted_forms(spec, bad, what):
    with pytest.raises(ConfigError) as e:
        select(spec, 3)
    msg = str(e.value)
    assert repr(bad) in msg and what in msg
    assert "singles, pairs, all, prefixes, suffixes" in msg and "3 characters 0/1" in msg
    assert e.value.field == "transfer.subsets"
