"""The import direction of docs/architecture.md, enforced.

The packages form layers, each importing only those below it (``LAYERS``), checked by an ``ast``
walk of every module, imports at module level and inside functions alike:

    turbtl (the application: CLI, commands, report)  -> anything
    bench                                             -> analysis, jobs, suite, solver
    analysis, jobs                                    -> suite, solver
    suite                                             -> solver
    solver                                            -> nothing of the project

``solver`` is a library: importing it pulls none of the others in, and its own modules import each
other without a cycle.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLVER = ROOT / "solver"
UPPER = ("suite", "analysis", "jobs", "bench", "turbtl")
LAYERS = {  # package -> the project packages it may import (besides itself)
    "solver": set(),
    "suite": {"solver"},
    "analysis": {"suite", "solver"},
    "jobs": {"suite", "solver"},
    "bench": {"analysis", "jobs", "suite", "solver"},
    "turbtl": {"bench", "analysis", "jobs", "suite", "solver"},
}


def _modules(package: Path = SOLVER) -> dict[str, Path]:
    """Dotted module name -> file, for every module of one package (default: the solver)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the module, at any depth of the tree.

    ``from .x import y`` yields ``pkg.x.y`` as well as ``pkg.x`` (y may be a submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
    return found


def test_solver_imports_nothing_above_it():
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {mod}"
           for name, path in _modules().items() for line, mod in _imports(name, path)
           if mod.split(".")[0] in UPPER]
    assert not bad, "solver must not import the packages built on it:\n" + "\n".join(bad)


def test_packages_import_only_the_layers_below_them():
    bad = []
    for package, allowed in LAYERS.items():
        for name, path in _modules(ROOT / package).items():
            for line, mod in _imports(name, path):
                top = mod.split(".")[0]
                if top in LAYERS and top != package and top not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {mod}")
    assert not bad, ("imports against the layers (turbtl -> bench -> analysis, jobs -> suite -> solver; "
                     "docs/architecture.md):\n" + "\n".join(sorted(set(bad))))


def test_import_solver_pulls_in_nothing_above_it():
    code = ("import json, sys; import solver; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {UPPER!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_no_import_cycle_in_solver():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for _, mod in _imports(name, path):
            # the longest prefix of the imported name that is a solver module (the package's
            # __init__ only when nothing deeper matches)
            parts = mod.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in modules:
                    if cand != name and not name.startswith(cand + "."):  # a package's parents run first anyway
                        deps.add(cand)
                    break
        graph[name] = deps
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles among solver modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_solver_errors_speak_solver_names_and_the_app_maps_them():
    import pytest

    from solver import Equation, Grid, Parameters
    from solver.errors import ParameterError
    from suite.errors import ConfigError, solver_fields
    with pytest.raises(ParameterError) as e:
        Equation(Grid(16), Parameters(), dealias="1/2")
    assert e.value.name == "dealias" and str(e.value).startswith("dealias = '1/2'") and "dns." not in str(e.value)
    with pytest.raises(ConfigError, match=r"^dns\.dealias = '1/2'") as e, solver_fields():
        Equation(Grid(16), Parameters(), dealias="1/2")
    assert e.value.field == "dns.dealias"


# -- function-local imports and function length in the library packages ------------------------------

LIBRARY = ("solver", "suite", "analysis", "jobs")

# Function-local imports of project modules that stay, each with its reason ((file, module) -> why).
LOCAL_IMPORTS_ALLOWED = {
    ("suite/les/closures.py", "suite.online"): "imports torch: parsing and checking closure names (the config "
                                               "check, `import suite.les`) need none, only running an LES does",
    ("suite/les/closures.py", "suite.model"): "imports torch, as suite.online",
    ("analysis/__init__.py", "analysis.aggregate"): "the package's __init__ stays light: importing analysis.radial "
                                                    "or analysis.kernels must not load the Dask/xarray pipeline",
}
MAX_FUNCTION_LINES = 80
LONG_REASON = re.compile(r"long because|about \d+ lines", re.IGNORECASE)


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _library_modules():
    for package in LIBRARY:
        yield from _modules(ROOT / package).items()


def test_function_local_imports_of_project_modules_are_listed():
    """A function-local import hides a dependency: project modules are imported at module level,
    except where LOCAL_IMPORTS_ALLOWED says why not (optional and heavy third-party libraries, such
    as torch, matplotlib, mpi4py, are not project modules and are not checked here)."""
    found = set()
    for name, path in _library_modules():
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(), str(path))
        local = {id(n) for f in _functions(tree) for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) not in local:
                continue
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif node.level:
                base = package.split(".")
                mods = [".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))]
            else:
                mods = [node.module or ""]
            found |= {(rel, node.lineno, m) for m in mods if m.split(".")[0] in LAYERS}
    bad = [f"{rel}:{line}: imports {mod} inside a function" for rel, line, mod in sorted(found)
           if (rel, mod) not in LOCAL_IMPORTS_ALLOWED]
    assert not bad, ("import project modules at module level (or add the pair to LOCAL_IMPORTS_ALLOWED "
                     "with the reason):\n" + "\n".join(bad))
    stale = sorted(set(LOCAL_IMPORTS_ALLOWED) - {(rel, mod) for rel, _, mod in found})
    assert not stale, f"LOCAL_IMPORTS_ALLOWED lists imports that are gone: {stale}"


def test_no_long_function_without_a_reason():
    """No function of the library packages is longer than MAX_FUNCTION_LINES unless its docstring
    says why (``long because ...`` or ``About N lines: ...``)."""
    bad = []
    for _, path in _library_modules():
        for f in _functions(ast.parse(path.read_text(), str(path))):
            lines = f.end_lineno - f.lineno + 1
            if lines > MAX_FUNCTION_LINES and not LONG_REASON.search(ast.get_docstring(f) or ""):
                bad.append(f"{path.relative_to(ROOT)}:{f.lineno}: {f.name} is {lines} lines")
    assert not bad, (f"functions over {MAX_FUNCTION_LINES} lines: split them or say why in the docstring "
                     "('long because ...'):\n" + "\n".join(bad))
