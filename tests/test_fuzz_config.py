"""Property-based fuzzing (hypothesis) of every configuration field through the CLI (`turbtl.cli.main`
in-process, the function behind `turbtl`): for every field of every section and of a system, a value
of the wrong TOML type, NaN/±inf, an extreme number, or an unknown key beside it; and whole files of
arbitrary bytes. Property: exit status 2, exactly one error line, no traceback, no run folder
created; a value that is invalid by construction (wrong type, non-finite, unknown key) is named in
that line.

The stage run is `turbtl train` on a run folder that does not exist: every configuration is
validated first, so a value the schema accepts (an extreme that is in range) still ends in exit 2
("run `turbtl dns` first") without any work being done.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turbtl.cli import main
from suite.config import SCHEMA, SYSTEM_SCHEMA

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FIELDS = [(sec, key, spec) for sec, fields in SCHEMA.items() for key, spec in fields.items()] + \
         [("systems.base", key, spec) for key, spec in SYSTEM_SCHEMA.items()]


def toml(v) -> str:
    """A TOML literal of ``v`` (inline tables and mixed arrays included)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes are TOML's, but not its surrogate pairs (kept as characters) nor a raw DEL
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml(k)} = {toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


texts = st.text(max_size=8)
ints = st.integers(-2**63, 2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
tables = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2)


def wrong_type(spec):
    """Values of a TOML type the field does not accept."""
    k, item = spec.kind, spec.item
    if k is float:
        return st.one_of(texts, st.booleans(), st.lists(finite, max_size=2), tables, dates)
    if k is int:
        return st.one_of(texts, st.booleans(), finite.filter(lambda x: True), st.lists(ints, max_size=2),
                         tables, dates)
    if k is str:
        return st.one_of(ints, finite, st.booleans(), st.lists(texts, max_size=2), tables, dates)
    if k is bool:
        return st.one_of(ints, finite, texts, st.lists(st.booleans(), max_size=2), tables)
    if k is list:
        bad_item = {str: st.one_of(ints, finite, st.booleans(), tables), float: st.one_of(texts, st.booleans(), tables),
                    int: st.one_of(texts, finite, st.booleans(), tables)}[item]
        return st.one_of(st.booleans(), tables, dates, st.lists(bad_item, min_size=1, max_size=3))
    raise AssertionError(spec)


def nonfinite_for(spec):
    if spec.kind is list:
        return st.lists(nonfinite, min_size=1, max_size=2)
    return nonfinite


@st.composite
def invalid(draw):
    """(section, key, TOML text of one invalid field)."""
    sec, key, spec = draw(st.sampled_from(FIELDS))
    how = draw(st.sampled_from(["type", "nonfinite", "unknown"]))
    if how == "unknown":
        bad = draw(st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(
            lambda k: k not in (SYSTEM_SCHEMA if sec.startswith("systems.") else SCHEMA[sec])))
        return sec, bad, f"[{sec}]\n{bad} = 1\n"
    if how == "nonfinite" and (spec.kind in (float, int) or spec.item in (float, int)):
        value = draw(nonfinite_for(spec))
    else:
        value = draw(wrong_type(spec))
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an integer is a valid float: keep the value invalid
    return sec, key, f"[{sec}]\n{key} = {toml(value)}\n"


@st.composite
def extreme(draw):
    sec, key, spec = draw(st.sampled_from(FIELDS))
    value = draw(st.one_of(st.sampled_from([2**63 - 1, -2**63, 10**30, -10**30, 10**400, 0, -1]),
                           st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e-300])))
    return sec, key, f"[{sec}]\n{key} = {toml(value)}\n"


def _run(capsys, body: bytes | str, name_in_line: str | None = None) -> str:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cfg = d / "fuzz.toml"
        cfg.write_bytes(body if isinstance(body, bytes) else body.encode())
        run = d / "run"
        rc = main(["train", "--config", str(cfg), "--run-dir", str(run)])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, (body, err)
        assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, (body, err)
        assert not run.exists(), (body, "run folder created")
        if name_in_line is not None:
            assert name_in_line in lines[0], (body, lines[0])
        return lines[0]


@FUZZ
@given(case=invalid())
def test_every_field_rejects_wrong_types_nonfinite_values_and_unknown_keys(capsys, case):
    sec, key, text = case
    _run(capsys, 'extends = "ci"\n' + text, f"{sec}.{key}")


@FUZZ
@given(case=extreme())
def test_every_field_survives_extreme_numbers(capsys, case):
    sec, key, text = case
    _run(capsys, 'extends = "ci"\n' + text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=64),
                      st.text(max_size=40).map(str.encode),
                      st.lists(st.sampled_from([b"[grid]\n", b"n_dns = ", b"64", b"\xff", b"=", b"\n", b'"',
                                                b"[[dns]]\n", b"extends = ", b'"ci"', b"{", b"}"]),
                               max_size=10).map(b"".join)))
def test_arbitrary_bytes_as_a_config_file(capsys, body):
    _run(capsys, body)  # not UTF-8 / not TOML: the file and line; valid TOML: the field or the run folder


@pytest.mark.parametrize("section", list(SCHEMA) + ["systems.base", "nowhere"])
def test_unknown_keys_and_sections_are_named(capsys, section):
    _run(capsys, f'extends = "ci"\n[{section}]\nzz_unknown = 1\n',
         "nowhere" if section == "nowhere" else f"{section}.zz_unknown")
