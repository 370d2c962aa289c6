"""`turbtl` — the command line of the suite.

Each stage is a subcommand in ``turbtl/commands/<name>.py``. Bad input exits with status 2 and
one line naming the field, the value and what is accepted; nothing is written in that case.
A full disk (ENOSPC, EDQUOT) or a file-size limit (EFBIG) while a stage writes exits with status 1
and one line naming the path and what to do (no traceback): every stage writes atomically and
keeps what it finished, so the same command continues once space is back.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

from suite import __version__
from suite.errors import UsageError

from .commands import COMMANDS

EPILOG = """\
The study, stage by stage (each stage skips work that is already done; --force redoes it):
  turbtl dns       DNS ensembles of every system -> RUN/fdns/<system>.zarr (MPI: mpiexec -n N turbtl dns)
  turbtl train     base CNN closure on the base system (DDP: torchrun/srun) -> RUN/models/base/
  turbtl transfer  re-train every layer-freezing subset on each target -> RUN/sweep/<target>/
  turbtl analyze   kernel/activation/data spectra with Dask -> RUN/analysis/, RUN/figures/
  turbtl report    one self-contained HTML page -> RUN/report.html
  turbtl run       all of the above in order on one machine (default preset: small)
Presets: ci (seconds, for tests), small (the embedded default, minutes on 2 cores), paper (clusters).
RUN defaults to runs/<preset>. See README.md for the data format and the SLURM workflow.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: exit 2 as well, one clear line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="turbtl", description="turbtl: distributed benchmarking suite for the physics of "
                "transfer learning in data-driven 2D turbulence closures (Subel et al., PNAS Nexus 2023).",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"turbtl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"turbtl.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"turbtl.commands.{name}":
                continue  # stage not built yet
            raise
        mod.register(sub)
    return p


def _quiet_known_warnings() -> None:
    """zarr 3 warns on every fixed-length string coordinate (mask, split names) that v3 has no spec
    for such dtypes yet; the stores are read back by this same zarr, so the warning is noise here."""
    import warnings
    warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")


def main(argv: list[str] | None = None) -> int:
    _quiet_known_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"turbtl {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        line = out_of_space_message(e, getattr(args, "run_dir", None))
        if line is None:
            raise
        print(f"turbtl {args.command}: error: {line}", file=sys.stderr)
        return 1


OUT_OF_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large (the file-size limit was reached)"}


def out_of_space_message(e: OSError, run_dir=None) -> str | None:
    """One line for a write that failed for lack of space (None for any other OSError)."""
    what = OUT_OF_SPACE.get(e.errno)
    if what is None:
        return None
    where = e.filename or (f"a file under {run_dir}" if run_dir else "the run folder")
    return (f"{what} while writing {where}: free some space (or raise the limit) and run the same "
            "command again; finished work is kept and the stage continues where it stopped")


if __name__ == "__main__":
    sys.exit(main())
