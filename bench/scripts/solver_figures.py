"""The solver figures of docs/benchmarks.md, measured and rendered by one script:

    python -P bench/scripts/solver_figures.py measure OUT.json   # ~10 min on 2 cores, quiet machine
    python -P bench/scripts/solver_figures.py render OUT.json [MORE.json ...]   # markdown tables

``measure`` runs, each in a fresh process with OMP_NUM_THREADS=2: two passes of
``measure_step_vs_floor`` (numpy, float64, 2 threads, 128²-2048²) and ``measure_batched_vs_floor``
(6 x 128²); the torch backend on CPU at 512² and 1024², twice; ``measure_kernel_threading`` at 256²
and 512²; a torch CPU step timed after numpy-backend steps in one process (``torch_after_numpy``);
and ``measure_fused_x`` (the fused x pass against the unfused transforms) at 256²-2048² and 6 x 128².
``render`` prints the tables of the first file; with more files, one more table lists the ratios of
every pass of every run, so that a run on a disturbed machine is seen next to the others.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EFFORT = {128: (20, 5), 256: (20, 5), 512: (20, 5), 1024: (8, 5), 2048: (4, 4)}

TORCH_AFTER_NUMPY = r"""
import json, time
from solver import Equation, Grid, Parameters, make_backend, make_forcing, make_stepper, random_field
def case(backend):
    be = make_backend(512, backend=backend, threads=2)
    g = Grid(512, backend=be)
    eq = Equation(g, Parameters(re=2e4, mu=0.1), forcing=make_forcing(g, "cos-xy", kf=4))
    st = make_stepper("ab2cn", eq, dt=1e-4)
    s = st.init_state(random_field(g, kp=10, seed=0))
    return st, s
def best(st, s, k=60):
    t = []
    for _ in range(k):
        t0 = time.perf_counter(); st(s); t.append(time.perf_counter() - t0)
    return min(t[3:]) * 1e3
num = case("numpy")
a = best(*num)
tor = case("torch")
b = best(*tor)
from solver.openmp import describe
print(json.dumps({"numpy_ms": a, "torch_after_numpy_ms": b, "openmp": describe()}))
"""


def _fresh(code: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-P", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); " + code],
                         capture_output=True, text=True, env=env, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _harness(call: str) -> dict:
    return _fresh(f"import json, bench.solver_harness as h; print(json.dumps(h.{call}))")


def measure(path: str) -> None:
    res: dict = {"numpy": [], "batched": [], "torch": [], "threading": [], "torch_after_numpy": None,
                 "fused_x": []}
    for p in range(2):
        for n, (steps, repeats) in EFFORT.items():
            res["numpy"].append(_harness(f"measure_step_vs_floor({n}, threads=2, steps={steps}, repeats={repeats})"))
            print(p, n, round(res["numpy"][-1]["ratio"], 3), flush=True)
        res["batched"].append(_harness("measure_batched_vs_floor(128, members=6, steps=40, repeats=5, threads=2)"))
        for n in (512, 1024):
            steps, repeats = EFFORT[n]
            res["torch"].append(_harness(f"measure_step_vs_floor({n}, backend='torch', threads=2, "
                                         f"steps={steps}, repeats={repeats})"))
    for n in (256, 512):
        res["threading"].append(_harness(f"measure_kernel_threading({n}, steps=20, repeats=5, threads=2)"))
    res["fused_x"] = [_harness(f"measure_fused_x({n}, {m}, steps=20, repeats=5, threads=2)")
                      for n, m in ((256, 1), (512, 1), (1024, 1), (2048, 1), (128, 6))]
    res["torch_after_numpy"] = _fresh(TORCH_AFTER_NUMPY)
    Path(path).write_text(json.dumps(res, indent=1))


def _ratios(rs) -> str:
    return " / ".join(f"{r['ratio']:.2f}" for r in rs)


def _across(paths: list[str]) -> list[str]:
    """Rows: per case, the step / floor ratios of every pass of every run (runs separated by ·)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    cases: dict = {}
    floors: dict = {}
    for i, res in enumerate(runs):
        for key, rows in (("numpy", res["numpy"]), ("batched", res["batched"]), ("torch", res["torch"])):
            for r in rows:
                name = {"numpy": f"{r['n']}²", "batched": f"batched {r.get('members')} × {r['n']}²",
                        "torch": f"torch {r['n']}²"}[key]
                cases.setdefault(name, [[] for _ in runs])[i].append(r["ratio"])
                floors.setdefault(name, []).extend(
                    x for x in (r["floor_in_process_ms"], r["floor_own_runtime_ms"]) if x == x)
    out = ["| case | step / floor, every pass of runs " + ", ".join(Path(p).stem for p in paths) +
           " | median | min–max | floor ms, min–max over every timing |", "|---|---|---|---|---|"]
    for name, per_run in cases.items():
        allr = sorted(x for run in per_run for x in run)
        med = allr[len(allr) // 2] if len(allr) % 2 else (allr[len(allr) // 2 - 1] + allr[len(allr) // 2]) / 2
        out.append(f"| {name} | {' · '.join(' '.join(f'{x:.2f}' for x in run) for run in per_run)} | "
                   f"{med:.2f} | {allr[0]:.2f}–{allr[-1]:.2f} | {min(floors[name]):.3f}–{max(floors[name]):.3f} |")
    return out


def render(path: str, more: list[str] | None = None) -> str:
    res = json.loads(Path(path).read_text())
    out = []
    passes: dict = {}
    for r in res["numpy"]:
        passes.setdefault(r["n"], []).append(r)
    target = {128: "–", 256: "≤ 1.3", 512: "≤ 1.3", 1024: "≤ 1.3", 2048: "≤ 1.3"}
    out += ["| case | step ms | floor ms (in process / own runtime) | step / floor, pass 1 / pass 2 "
            "| step / its own pruned transforms | target |", "|---|---|---|---|---|---|"]
    for n, rs in passes.items():
        b = min(rs, key=lambda r: r["ratio"])
        out.append(f"| {n}² | {b['ms_per_step']:.3f} | {b['floor_ms']:.3f} ({b['floor_in_process_ms']:.3f} / "
                   f"{b['floor_own_runtime_ms']:.3f}) | {_ratios(rs)} | "
                   f"{b['ratio_to_pruned']:.2f} | {target[n]} |")
    bs = res["batched"]
    b = min(bs, key=lambda r: r["ratio"])
    out.append(f"| batched 6 × 128² | {b['ms_per_step']:.3f} | {b['floor_ms']:.3f} ({b['floor_in_process_ms']:.3f} / "
               f"{b['floor_own_runtime_ms']:.3f}) | {_ratios(bs)} | – | ≤ 1.5 |")
    out += ["", "| torch, CPU | step ms | floor ms | step / floor, run 1 / run 2 | step / its own pruned transforms |",
            "|---|---|---|---|---|"]
    tp: dict = {}
    for r in res["torch"]:
        tp.setdefault(r["n"], []).append(r)
    for n, rs in tp.items():
        b = min(rs, key=lambda r: r["ratio"])
        out.append(f"| {n}² | {b['ms_per_step']:.3f} | {b['floor_ms']:.3f} | "
                   f"{_ratios(rs)} | {b['ratio_to_pruned']:.2f} |")
    out += ["", "| ms per step, 2 threads | OpenMP-parallel kernels | serial kernels, Python team | "
            "serial kernels, one thread | parallel kernels beside a second runtime |", "|---|---|---|---|---|"]
    for t in res["threading"]:
        out.append(f"| {t['n']}² | {t['parallel_ms']:.3f} | {t['team_ms']:.3f} | {t['serial_ms']:.3f} | "
                   f"{t['separate_runtimes_ms']:.3f} |")
    if res.get("fused_x"):
        others = [json.loads(Path(p).read_text()).get("fused_x") or [] for p in (more or [])]
        head = "speed-up" + (", every run" if others else "")
        out += ["", f"| ms per step, 2 threads | fused x pass | unfused (physical fields whole) | {head} | "
                "largest difference / largest entry |", "|---|---|---|---|---|"]
        for f in res["fused_x"]:
            name = f"{f['members']} × {f['n']}²" if f["members"] > 1 else f"{f['n']}²"
            ups = [f["speedup"]] + [g["speedup"] for run in others for g in run
                                    if (g["n"], g["members"]) == (f["n"], f["members"])]
            out.append(f"| {name} | {f['fused_ms']:.3f} | {f['unfused_ms']:.3f} | "
                       f"{' · '.join(f'{u:.2f}' for u in ups)} | {f['max_rel_diff']:.1e} |")
    ta = res["torch_after_numpy"]
    out += ["", f"Torch CPU step at 512² after numpy-backend steps in one process: {ta['torch_after_numpy_ms']:.3f} ms "
            f"(the numpy steps before it: {ta['numpy_ms']:.3f} ms; {ta['openmp']}).",
            "", f"Load (1 min) at the end of each numpy case: "
            f"{', '.join(sorted({r['load'].split()[1] for r in res['numpy']}))}."]
    if more:
        out += [""] + _across([path, *more])
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("measure", "render") or (sys.argv[1] == "measure"
                                                                          and len(sys.argv) != 3):
        sys.exit(__doc__)
    if sys.argv[1] == "measure":
        measure(sys.argv[2])
    else:
        print(render(sys.argv[2], sys.argv[3:]))
