"""The whole study end to end on the `ci` preset: `turbtl run`, the report in headless Chromium,
and a rerun that skips every finished stage and changes nothing."""
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from turbtl.browser import chromium, render

STAGES = ("dns", "train", "transfer", "analyze", "les", "report")


def turbtl(*args, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def digest(run: Path) -> dict[str, str]:
    """sha256 of every stored artefact except the report page and stage records (times differ)."""
    out = {}
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if p.is_file() and not rel.startswith(("stages/", "report.html", ".turbtl.lock")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("e2e") / "run"
    r = turbtl("run", "--preset", "ci", "--run-dir", str(run), "--ranks", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return run, r.stdout


def test_run_produces_every_stage_and_ends_with_the_report(ci_run):
    run, out = ci_run
    for st in STAGES:
        assert (run / "stages" / f"{st}.json").is_file(), st
        assert f"-- {st}:" in out
    assert out.strip().splitlines()[-1] == f"report: {(run / 'report.html').resolve()}"
    for system in ("base", "high_re", "beta20"):
        assert (run / "fdns" / f"{system}.zarr").is_dir()
    assert (run / "models" / "base" / "model.pt").is_file()
    import pandas as pd
    from suite.transfer import load_results
    df = load_results(run)
    # every non-empty subset of the 3-layer ci net (7) + base, scratch, the oracle and 3 random controls, per target
    assert sorted(df.groupby("target").size().tolist()) == [13, 13]
    assert df["cc"].notna().all()


def test_report_is_self_contained_and_renders_every_figure(ci_run, tmp_path):
    run, _ = ci_run
    html = (run / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not load anything remote"
    for heading in ("Findings of this run", "Checks", "Systems", "DNS and Π spectra", "Base network vs physics closures",
                    "every layer-freezing subset", "layer recommendation", "class fractions per layer",
                    "Most-changed kernels", "Online LES", "Timings of every stage", "Provenance"):
        assert heading in html, heading
    assert "missing" not in re.findall(r'class="(\w+)"', html), "a section reports missing data"
    n_img = html.count("<img")
    assert n_img >= 9
    if chromium() is None:
        pytest.skip("chromium not installed (make sysdeps installs it as root)")
    shot = tmp_path / "report.png"
    r = render((run / "report.html").resolve().as_uri(), shot, height=4000)
    loaded = re.findall(r'data-figures-loaded="(\d+)"', r.dom)
    assert loaded and int(loaded[0]) == n_img, f"browser decoded {loaded} of {n_img} figures"
    from PIL import Image
    im = Image.open(shot).convert("L")
    assert im.size == (1400, 4000)
    # a page with figures is far from blank: many distinct grey levels
    assert len(set(im.resize((350, 1000)).getdata())) > 50


def test_rerun_skips_finished_stages_and_changes_nothing(ci_run):
    run, _ = ci_run
    before = digest(run)
    r = turbtl("run", "--preset", "ci", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr[-3000:]
    assert digest(run) == before
