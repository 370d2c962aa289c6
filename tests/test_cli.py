"""The command line: help, version, info, and the exit-2 contract for bad input."""
import subprocess
import sys

import pytest

from turbtl.cli import main


def turbtl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "turbtl.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_lists_subcommands():
    r = turbtl("--help")
    assert r.returncode == 0
    for cmd in ("info", "config"):
        assert cmd in r.stdout


def test_version():
    r = turbtl("--version")
    assert r.returncode == 0 and r.stdout.startswith("turbtl ")


def test_info_is_truthful():
    import numpy, torch, zarr, dask
    from mpi4py import MPI
    r = turbtl("info")
    assert r.returncode == 0, r.stderr
    table = dict(line.split(None, 1) if "  " not in line else (line.split("  ", 1)[0].strip(), line.split("  ", 1)[1].strip())
                 for line in r.stdout.splitlines())
    assert table["numpy"] == numpy.__version__
    assert table["torch"] == torch.__version__
    assert table["zarr"] == zarr.__version__
    assert table["dask"] == dask.__version__
    assert MPI.Get_library_version().splitlines()[0].strip() in r.stdout
    assert table["GPUs visible"].split()[0] == str(torch.cuda.device_count())


def test_unknown_subcommand_exits_2():
    r = turbtl("no-such-stage")
    assert r.returncode == 2


def test_missing_config_file_exits_2(tmp_path):
    rc = main(["config", "--config", str(tmp_path / "nope.toml")])
    assert rc == 2


@pytest.mark.parametrize("preset", ["ci", "small", "medium", "paper"])
def test_presets_resolve(preset, capsys):
    assert main(["config", "--preset", preset]) == 0
    assert '"n_dns"' in capsys.readouterr().out
