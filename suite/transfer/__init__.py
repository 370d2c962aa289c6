"""The transfer-learning sweep (REFERENCE.md §5): every layer-freezing subset on every target.

For each target system × data fraction × seed, every subset of :func:`suite.masks.select` is
re-trained from the base network's weights (``DIR/models/base/``) on a small sample of the
target's training members, with ``suite.train.fit`` (frozen parameters have
``requires_grad = False`` and are not in the optimizer). Two references go with each
(target, fraction, seed): ``base`` (the base network, no re-training) and ``scratch`` (all layers
trained from random weights on the same small sample, same epochs).

Choices
- Sample size: ``round(fraction × n_base)`` snapshots (at least 1), ``n_base`` the base network's
  training-set size; drawn without replacement, seeded by ``seed``, from the complete snapshots of
  the target's training members (DataError if the target has fewer).
- Normalization: the base network's (stored with it) for every network of the sweep, scratch
  included. The frozen layers were trained on inputs scaled that way, and Π is predicted in the
  base network's output units; re-normalizing with target statistics would change the function the
  frozen layers compute before any re-training, and the base reference would not be the network as
  stored. The scratch reference uses the same units so its CC and losses compare directly.
- Losses: MSE on normalized Π, as in ``turbtl train``; the validation loss (target's ``val``
  members) is computed once, after the last epoch; metrics on the target's ``test`` members.

Shared work. The output of the frozen prefix (layers before the first trainable one) does not
change while a subset trains, so it is computed once per sample (:class:`PrefixCache`, keyed by
target, fraction, seed and first trainable layer) and training runs the rest of the network on it
(:class:`Suffix`); autograd stops at the first trainable layer because nothing below it needs a
gradient. The cache is computed in fixed chunks of :data:`PREFIX_BATCH` samples, so a subset gets
the same weights alone, in a slice or in a pool. Validation and test activations are cached the same
way when they fit :data:`EVAL_CACHE_BYTES` (per target and first layer).

Layout (CONTRACTS.md "Models", "Sweep results"):
- model folders ``DIR/models/tl/<target>/f<fraction>_s<seed>/<mask>/`` (scratch: ``.../scratch/``);
- one row file per finished job ``DIR/sweep/<target>/rows/f<fraction>_s<seed>/<kind>-<mask>.json``,
  written atomically after the model folder; a job is finished iff its row file exists, so a killed
  sweep loses only the jobs in flight, and slices of a SLURM array never write the same file;
- ``DIR/sweep/<target>/results.csv``, rebuilt from the row files (under a lock) at the end of every
  sweep or slice; :func:`load_results` reads it.

    >>> jobs = plan(["high_re"], select("singles", 11), [0.1], [0])      # 11 tl + 2 references
    >>> run_sweep(spec, run_dir, jobs, workers=2)                        # doctest: +SKIP
    >>> load_results(run_dir, "high_re").sort_values("cc").tail()        # doctest: +SKIP

:func:`measure_sharing` times the sweep with and without the prefix cache side by side (synthetic
data) and computes the layer-work floor; benchmarks call it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..dataset import FDNSData, SplitTensors
from ..errors import DataError, UsageError
from ..masks import first_trainable, full, n_trained, none, select
from ..metrics import evaluate
from ..model import ClosureCNN, load_model, save_model
from ..rundir import write_bytes_atomic, write_json_atomic
from ..train import TrainSettings, fit, mse_sum, predict

COLUMNS = ("target", "fraction", "seed", "mask", "kind", "cc", "cc_backscatter", "cc_diffusion", "rel_l2",
           "epochs", "wall_time_s", "n_trainable", "first_trainable", "n_layers_trained",
           "final_train_loss", "final_val_loss")
KINDS = ("base", "scratch", "tl")
PREFIX_BATCH = 16
EVAL_CACHE_BYTES = 1 << 30


# --------------------------------------------------------------------------------------------
# jobs and their files


@dataclass(frozen=True)
class Job:
    """One row of the results table: a network to train (or the base network to evaluate)."""

    target: str
    fraction: float
    seed: int
    kind: str  # "base" | "scratch" | "tl"
    mask: str

    @property
    def first(self) -> int:
        """1-based first trainable layer (0 for base)."""
        return first_trainable(self.mask)

    @property
    def group(self) -> str:
        return f"f{self.fraction:g}_s{self.seed}"

    @property
    def name(self) -> str:
        return f"{self.target}/{self.group}/{self.kind}-{self.mask}"


def plan(targets, masks, fractions, seeds, references: bool = True) -> list[Job]:
    """Every job of a sweep, in the canonical order that slices partition.

    Order: target, fraction, seed, then the references, then the masks as given (a
    :func:`suite.masks.select` list is sorted by first trainable layer, so jobs sharing a prefix are
    neighbours and a contiguous slice keeps them together).
    """
    if not masks:
        raise UsageError("no subsets to train", field="transfer.subsets")
    L = len(masks[0])
    out = []
    for t in targets:
        for f in fractions:
            for s in seeds:
                if references:
                    out += [Job(t, float(f), int(s), "base", none(L)), Job(t, float(f), int(s), "scratch", full(L))]
                out += [Job(t, float(f), int(s), "tl", m) for m in masks]
    return out


def parse_slice(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n`` (0-based, like ``$SLURM_ARRAY_TASK_ID`` of the array
    ``0-(n-1)`` that ``turbtl jobs`` renders); None → None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--slice = {text!r}: must be i/n with integers 0 <= i < n (0-based, as "
                         "$SLURM_ARRAY_TASK_ID of an array 0-(n-1))", field="slice") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--slice = {text!r}: must be i/n with 0 <= i < n (0-based, as $SLURM_ARRAY_TASK_ID "
                         f"of an array 0-(n-1)); got i = {i}, n = {n}", field="slice")
    return i, n


def slice_jobs(jobs: list[Job], part: tuple[int, int] | None) -> list[Job]:
    """Slice ``i`` of ``n``: the contiguous block ``jobs[i*N//n : (i+1)*N//n]`` (the slices partition
    the list; contiguous blocks keep jobs that share a prefix together)."""
    if part is None:
        return list(jobs)
    i, n = part
    N = len(jobs)
    return jobs[i * N // n:(i + 1) * N // n]


def sweep_dir(run_dir, target: str) -> Path:
    return Path(run_dir) / "sweep" / target


def row_path(run_dir, job: Job) -> Path:
    return sweep_dir(run_dir, job.target) / "rows" / job.group / f"{job.kind}-{job.mask}.json"


def model_dir(run_dir, job: Job) -> Path | None:
    """Where the job's network is stored (None for the base reference: it is DIR/models/base)."""
    if job.kind == "base":
        return None
    leaf = job.mask if job.kind == "tl" else "scratch"
    return Path(run_dir) / "models" / "tl" / job.target / job.group / leaf


def is_done(run_dir, job: Job) -> bool:
    return row_path(run_dir, job).is_file()


# --------------------------------------------------------------------------------------------
# the shared prefix


class Suffix(nn.Module):
    """Layers ``start`` … L of a :class:`ClosureCNN` as a module (its input: the prefix's output).

    Its parameters are the whole network's (frozen ones stay frozen), so ``fit`` trains it like the
    network itself.
    """

    def __init__(self, net: ClosureCNN, start: int):
        super().__init__()
        self.net = net
        self.start = int(start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_range(x, self.start)

    def trainable_mask(self) -> str:
        return self.net.trainable_mask()


def prefix_activations(model: ClosureCNN, x: torch.Tensor, stop: int, device="cpu",
                       batch: int = PREFIX_BATCH) -> torch.Tensor:
    """Output of layers ``0 … stop-1`` (post-ReLU) for every sample of ``x``, in fixed chunks of
    ``batch`` samples (channels_last, as ``fit`` feeds the network)."""
    device = torch.device(device)
    fmt = torch.channels_last
    model.to(device=device, memory_format=fmt).eval()
    outs = []
    with torch.no_grad():
        for b0 in range(0, x.shape[0], batch):
            xb = x[b0:b0 + batch].to(device).contiguous(memory_format=fmt)
            outs.append(model.forward_range(xb, 0, stop))
    model.to(memory_format=torch.contiguous_format)
    return torch.cat(outs).contiguous(memory_format=fmt)  # kept channels_last: batches need no copy


class PrefixCache:
    """Prefix activations by key, least recently used dropped beyond ``capacity`` entries."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()
        self.computed = 0

    def get(self, key, compute):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = compute()
        self.computed += 1
        self.items[key] = value
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)
        return value


def _with_x(data: SplitTensors, x: torch.Tensor) -> SplitTensors:
    return SplitTensors(x, data.y, data.norm, data.index, data.L, data.delta)


# --------------------------------------------------------------------------------------------
# one job


@dataclass
class SweepSpec:
    """Everything a worker needs (plain values: it crosses process boundaries)."""

    run_dir: str
    epochs: int
    batch_size: int
    lr: float
    bf16: bool = False
    share_prefix: bool = True
    device: str = "cpu"
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg, run_dir, device: str = "cpu") -> "SweepSpec":
        from ..provenance import provenance
        t = cfg.transfer
        return cls(run_dir=str(run_dir), epochs=t.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
                   bf16=cfg.train.bf16, share_prefix=t.share_prefix, device=device,
                   provenance=provenance(cfg.to_dict(), stage="transfer"))


class Context:
    """A worker's view of the run: the base network, the target data and the prefix caches."""

    def __init__(self, spec: SweepSpec, base: tuple | None = None):
        self.spec = spec
        self.device = torch.device(spec.device)
        run_dir = Path(spec.run_dir)
        self.base_model, self.norm, self.base_meta = base or load_model(run_dir / "models" / "base")
        self.n_base = base_train_size(self.base_meta, run_dir)
        self._data: dict = {}
        self._tensors: dict = {}
        self.train_cache = PrefixCache(2)
        self.eval_cache = PrefixCache(4)

    # -- data ----------------------------------------------------------------------------------
    def data(self, target: str) -> FDNSData:
        if target not in self._data:
            self._data[target] = FDNSData(Path(self.spec.run_dir) / "fdns" / f"{target}.zarr")
        return self._data[target]

    def sample_count(self, fraction: float) -> int:
        return max(1, int(round(fraction * self.n_base)))

    def tensors(self, target: str, split: str, fraction: float | None = None, seed: int = 0) -> SplitTensors | None:
        """Normalized (base units) tensors: the small training sample, or the full val/test split."""
        key = (target, split, fraction, seed)
        if key not in self._tensors:
            d = self.data(target)
            if split == "train":
                t = d.tensors("train", self.norm, seed=seed, count=self.sample_count(fraction))
            else:
                t = d.tensors(split, self.norm) if len(d.members(split)) else None
            self._tensors[key] = t
        return self._tensors[key]

    # -- prefix ----------------------------------------------------------------------------------
    def train_input(self, job: Job, start: int) -> SplitTensors:
        train = self.tensors(job.target, "train", job.fraction, job.seed)
        if start == 0:
            return train
        acts = self.train_cache.get((job.target, job.fraction, job.seed, start),
                                    lambda: prefix_activations(self.base_model, train.x, start, self.device))
        return _with_x(train, acts)

    def eval_input(self, target: str, split: str, start: int) -> SplitTensors | None:
        data = self.tensors(target, split)
        if data is None or start == 0:
            return data
        size = len(data) * self.base_model.config["width"] * data.x.shape[-2] * data.x.shape[-1] * 4
        if size > EVAL_CACHE_BYTES:
            return None
        acts = self.eval_cache.get((target, split, start),
                                   lambda: prefix_activations(self.base_model, data.x, start, self.device))
        return _with_x(data, acts)

    # -- the job -----------------------------------------------------------------------------------
    def network(self, job: Job) -> ClosureCNN:
        """The job's starting network: the base weights (tl, base) or seeded random ones (scratch)."""
        if job.kind == "scratch":
            torch.manual_seed(job.seed)
            return ClosureCNN(**self.base_model.config)
        net = ClosureCNN(**self.base_model.config)
        net.load_state_dict(self.base_model.state_dict())
        return net

    def run(self, job: Job) -> tuple[dict, ClosureCNN, dict]:
        """Train (or, for ``base``, only evaluate) one job: (row, network, loss history)."""
        for split, args in (("train", (job.fraction, job.seed)), ("val", ()), ("test", ())):
            self.tensors(job.target, split, *args)  # read once per worker, not timed
        t0 = time.perf_counter()
        net = self.network(job)
        net.set_trainable(job.mask)
        start = job.first - 1 if (job.kind == "tl" and self.spec.share_prefix) else 0
        train = self.train_input(job, start)
        module = Suffix(net, start) if start else net
        history = {"train_loss": [], "val_loss": [], "epoch_time_s": []}
        epochs = 0
        if job.kind != "base":
            settings = TrainSettings(epochs=self.spec.epochs, batch_size=self.spec.batch_size, lr=self.spec.lr,
                                     seed=job.seed, bf16=self.spec.bf16, progress=False)
            res = fit(module, train, None, settings, env=_env(self.device))
            history, epochs = res.history, res.epochs_run
            train_loss = history["train_loss"][-1]
        else:
            train_loss = _mse(module, train, self.spec.batch_size, self.device)
        val_loss = float("nan")
        val = self.eval_input(job.target, "val", start)
        if val is None:
            val, module_v = self.tensors(job.target, "val"), net
        else:
            module_v = module
        if val is not None:
            val_loss = _mse(module_v, val, self.spec.batch_size, self.device)
            history["val_loss"] = history.get("val_loss", []) + [val_loss]
        test = self.tensors(job.target, "test")
        test_in = self.eval_input(job.target, "test", start)
        module_t = module if test_in is not None else net
        pred = predict(module_t, test_in if test_in is not None else test, batch=PREFIX_BATCH, device=self.device)
        metrics = evaluate(pred, test.raw("pi"), test.raw("omega"), test.L)
        row = {"target": job.target, "fraction": job.fraction, "seed": job.seed, "mask": job.mask,
               "kind": job.kind, **{k: metrics[k] for k in ("cc", "cc_backscatter", "cc_diffusion", "rel_l2")},
               "epochs": epochs, "wall_time_s": time.perf_counter() - t0,
               "n_trainable": net.n_params(trainable_only=True),
               "first_trainable": job.first, "n_layers_trained": n_trained(job.mask),
               "final_train_loss": float(train_loss), "final_val_loss": float(val_loss)}
        net.to(device="cpu")
        return row, net, history

    def run_and_store(self, job: Job) -> dict:
        """:meth:`run`, then write the model folder and (last, atomically) the row file."""
        row, net, history = self.run(job)
        folder = model_dir(self.spec.run_dir, job)
        if folder is not None:
            train = self.tensors(job.target, "train", job.fraction, job.seed)
            meta = {"provenance": self.spec.provenance | {"target": job.target, "fraction": job.fraction,
                                                          "seed": job.seed, "mask": job.mask, "kind": job.kind},
                    "history": history, "metrics": {k: row[k] for k in COLUMNS[5:9]},
                    "n_train": len(train), "train_index": train.index.tolist(), "row": row}
            save_model(folder, net, self.norm, meta)
        write_json_atomic(row_path(self.spec.run_dir, job), row)
        return row


def _env(device: torch.device):
    from ..ddp import DistEnv
    return DistEnv(0, 1, 0, device, None, "none")


def _mse(module, data: SplitTensors, batch: int, device) -> float:
    sse, count = mse_sum(module, data, batch, torch.device(device))
    return sse / count


def base_train_size(meta: dict, run_dir) -> int:
    """The base network's training-set size (fractions are of it)."""
    n = meta.get("n_train")
    if not isinstance(n, int) or n < 1:
        raise DataError(f"{Path(run_dir) / 'models' / 'base' / 'meta.json'}: no n_train (the base network's "
                        "training-set size); retrain it with `turbtl train`", field="model")
    return n


# --------------------------------------------------------------------------------------------
# workers


_CTX: Context | None = None


def _init_worker(spec: SweepSpec, threads: int) -> None:
    global _CTX
    torch.set_num_threads(max(1, threads))
    _CTX = Context(spec)


def _work(job: Job) -> dict:
    return _CTX.run_and_store(job)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_sweep(spec: SweepSpec, jobs: list[Job], workers: int = 1, progress: bool = True,
              on_row=None) -> list[dict]:
    """Run every job not yet finished, on ``workers`` local processes (1: in this process).

    Torch threads per worker: cores // workers. Returns the rows finished by this call, in
    completion order. Rebuilds ``results.csv`` of every target touched, at the end.
    """
    todo = [j for j in jobs if not is_done(spec.run_dir, j)]
    threads = max(1, cpu_count() // max(1, workers))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="transfer", unit="subset",
                   dynamic_ncols=True)
    best: dict = {}
    done = []

    def finished(row):
        done.append(row)
        if row["kind"] == "tl" and (not best or row["cc"] > best["cc"]):
            best.update(row)
        if bar is not None:
            bar.update(1)
            if best:
                bar.set_postfix_str(f"best {best['target']} {best['mask']} CC {best['cc']:.4f}")
        if on_row is not None:
            on_row(row)

    try:
        if workers <= 1 or len(todo) <= 1:
            prev = torch.get_num_threads()
            _init_worker(spec, threads)
            try:
                for job in todo:
                    finished(_work(job))
            finally:
                torch.set_num_threads(prev)
        else:
            import multiprocessing as mp
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(spec, threads)) as pool:
                pending = {pool.submit(_work, j) for j in todo}
                while pending:
                    fin, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in fin:
                        finished(f.result())
    finally:
        if bar is not None:
            bar.close()
        for t in sorted({j.target for j in jobs}):
            write_results(spec.run_dir, t)
    return done


# --------------------------------------------------------------------------------------------
# the table


@contextlib.contextmanager
def _results_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".results.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def collect_rows(run_dir, target: str):
    """Every finished row of a target, from its row files, in canonical order (a DataFrame)."""
    import pandas as pd
    rows = []
    for p in sorted((sweep_dir(run_dir, target) / "rows").glob("*/*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8 text
            raise DataError(f"row file {p} is unreadable ({type(e).__name__}: {e}); delete it to redo that "
                            "subset", field="results") from None
        missing = sorted(set(COLUMNS) - set(row)) if isinstance(row, dict) else list(COLUMNS)
        if missing:
            raise DataError(f"row file {p} is not a sweep row (missing {', '.join(missing)}); delete it to "
                            "redo that subset", field="results")
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return sort_table(df)


def sort_table(df):
    if not len(df):
        return df.reset_index(drop=True)
    key = df["kind"].map({k: i for i, k in enumerate(KINDS)})
    df = df.assign(_k=key).sort_values(["target", "fraction", "seed", "_k", "first_trainable", "mask"],
                                       ascending=[True, True, True, True, True, False], kind="stable")
    return df.drop(columns="_k").reset_index(drop=True)


def write_results(run_dir, target: str) -> Path | None:
    """Rebuild ``DIR/sweep/<target>/results.csv`` from the row files (serialized by a file lock, so the
    last slice to finish writes the complete table). None if the target has no rows yet."""
    folder = sweep_dir(run_dir, target)
    if not (folder / "rows").is_dir():
        return None
    with _results_lock(folder):
        df = collect_rows(run_dir, target)
        write_bytes_atomic(folder / "results.csv", df.to_csv(index=False).encode())
    return folder / "results.csv"


def load_results(run_dir, target: str | None = None):
    """The sweep results table (CONTRACTS.md): one target's ``results.csv``, or every target's
    concatenated (``target=None``). DataError when there is none."""
    import pandas as pd
    root = Path(run_dir) / "sweep"
    targets = [target] if target is not None else sorted(p.name for p in root.glob("*") if (p / "results.csv").is_file())
    frames = []
    for t in targets:
        path = sweep_dir(run_dir, t) / "results.csv"
        if not path.is_file():
            raise DataError(f"{path} not found: run `turbtl transfer` first (target {t!r})", field="results")
        try:
            df = pd.read_csv(path, dtype={"mask": str, "target": str, "kind": str})
        except (ValueError, pd.errors.ParserError) as e:  # incl. EmptyDataError, not UTF-8
            raise DataError(f"{path} is unreadable ({type(e).__name__}: {e}); run `turbtl transfer` again "
                            "to rebuild it from the row files", field="results") from None
        missing = sorted(set(COLUMNS) - set(df.columns))
        if missing:
            raise DataError(f"{path}: columns {missing} are missing (expected {', '.join(COLUMNS)})", field="results")
        frames.append(df[list(COLUMNS)])
    if not frames:
        raise DataError(f"no sweep results under {root}: run `turbtl transfer` first", field="results")
    return sort_table(pd.concat(frames, ignore_index=True))


def summary(df, top: int = 5) -> str:
    """Ranked summary: per target × fraction (seeds averaged), the top subsets by CC, the
    references, and the best subset per number of re-trained layers."""
    if not len(df):
        return "no results"
    lines = []
    g = df.groupby(["target", "fraction", "kind", "mask"], as_index=False).agg(
        cc=("cc", "mean"), cc_backscatter=("cc_backscatter", "mean"), cc_diffusion=("cc_diffusion", "mean"),
        n_layers_trained=("n_layers_trained", "first"), seeds=("seed", "nunique"))

    def fmt(r, label):
        return (f"  {label:<10} {r['mask']}  CC {r['cc']:.4f}  backscatter {r['cc_backscatter']:.4f}  "
                f"diffusion {r['cc_diffusion']:.4f}")

    for (t, f), sub in g.groupby(["target", "fraction"]):
        tl = sub[sub.kind == "tl"].sort_values(["cc", "mask"], ascending=[False, False])
        nseeds = int(sub["seeds"].max())
        lines.append(f"{t}, fraction {f:g} ({len(tl)} subsets, mean over {nseeds} seed(s)):")
        for rank, (_, r) in enumerate(tl.head(top).iterrows(), 1):
            lines.append(fmt(r, f"#{rank}"))
        for kind in ("base", "scratch"):
            for _, r in sub[sub.kind == kind].iterrows():
                lines.append(fmt(r, kind))
        if len(tl):
            lines.append("  best per number of re-trained layers:")
            for n, gg in tl.groupby("n_layers_trained"):
                lines.append(fmt(gg.iloc[0], f"{int(n)} layer{'s' if n > 1 else ''}"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# performance: shared prefix against the naive loop


def layer_flops(model: ClosureCNN, n: int) -> list[float]:
    """Forward FLOPs per sample of each layer (2 per multiply-add)."""
    k = model.config["kernel"]
    return [2.0 * k * k * c.in_channels * c.out_channels * n * n for c in model.convs]


def work_units(mask: str, flops: list[float], shared: bool) -> float:
    """Layer work of one training step of ``mask`` per sample: forward of layers from the first
    trainable one (every layer when not ``shared``), input gradients of the layers above the first
    trainable one, weight gradients of the trainable layers."""
    j = first_trainable(mask) - 1
    fwd = sum(flops[j:]) if shared else sum(flops)
    back = sum(flops[j + 1:]) + sum(f for f, c in zip(flops, mask) if c == "1")
    return fwd + back


def sharing_floor(masks: list[str], flops: list[float], epochs: int = 1) -> dict:
    """Ratio shared / naive of the layer work of a sweep over ``masks`` (prefix computed once per
    first trainable layer and sample, amortized over ``epochs``)."""
    naive = sum(work_units(m, flops, False) for m in masks) * epochs
    firsts = sorted({first_trainable(m) for m in masks})
    prefix = sum(sum(flops[:j - 1]) for j in firsts)
    shared = sum(work_units(m, flops, True) for m in masks) * epochs + prefix
    return {"naive_units": naive, "shared_units": shared, "floor": shared / naive}


def _sample_masks(masks: list[str], per_first: int | None) -> tuple[list[str], list[float]]:
    """A deterministic sample of up to ``per_first`` masks per first trainable layer, each with the
    weight (count it stands for)."""
    if per_first is None:
        return masks, [1.0] * len(masks)
    out, w = [], []
    by = {}
    for m in masks:
        by.setdefault(first_trainable(m), []).append(m)
    for j in sorted(by):
        group = by[j]
        idx = np.unique(np.linspace(0, len(group) - 1, min(per_first, len(group))).round().astype(int))
        out += [group[i] for i in idx]
        w += [len(group) / len(idx)] * len(idx)
    return out, w


def measure_sharing(layers: int = 5, width: int = 16, kernel: int = 5, n: int = 32, samples: int = 16,
                    batch: int = 16, epochs: int = 2, subsets: str = "singles", per_first: int | None = None,
                    device="cpu", padding: str = "circular", repeats: int = 1) -> dict:
    """Wall time of a sweep over ``subsets`` with the prefix cache against the naive loop that
    runs every subset through the whole network, side by side, on random data; with the layer-work
    floor of :func:`sharing_floor`.

    ``per_first``: time only that many masks per first trainable layer and extrapolate (for
    ``all`` on the paper network). Training only (Adam steps over ``epochs``), both ways through
    ``suite.train.fit``; the shared way includes computing the prefix once per first layer.
    Naive and shared runs of each mask alternate (best of ``repeats`` each), so that load from other
    processes hits both alike. Returns seconds, the measured ratio, the floor and ``ratio / floor``.
    """
    device = torch.device(device)
    torch.manual_seed(0)
    base = ClosureCNN(layers, width, kernel, padding=padding)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(samples, 2, n, n, generator=g)
    y = torch.randn(samples, 1, n, n, generator=g)
    data = SplitTensors(x, y, {}, np.zeros((samples, 2), int), 2 * math.pi, 0.0)
    masks = select(subsets, layers)
    chosen, weight = _sample_masks(masks, per_first)
    settings = TrainSettings(epochs=epochs, batch_size=batch, lr=1e-4, seed=0, progress=False)
    env = _env(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train(mask, start, acts):
        net = ClosureCNN(**base.config)
        net.load_state_dict(base.state_dict())
        net.set_trainable(mask)
        sync()
        t0 = time.perf_counter()
        if start:
            fit(Suffix(net, start), _with_x(data, acts), None, settings, env=env)
        else:
            fit(net, data, None, settings, env=env)
        sync()
        return time.perf_counter() - t0

    def prefix(start):
        sync()
        t0 = time.perf_counter()
        acts = prefix_activations(base, x, start, device)
        sync()
        return acts, time.perf_counter() - t0

    train(chosen[0], 0, None)  # warm-up
    t_naive = {m: float("inf") for m in chosen}
    t_shared = dict(t_naive)
    t_prefix: dict = {}
    for _ in range(repeats):  # naive and shared interleaved mask by mask, best of repeats
        acts, cur = None, None
        for m in chosen:
            start = first_trainable(m) - 1
            t_naive[m] = min(t_naive[m], train(m, 0, None))
            if start and start != cur:
                acts, dt = prefix(start)
                cur, t_prefix[start] = start, min(t_prefix.get(start, float("inf")), dt)
            t_shared[m] = min(t_shared[m], train(m, start, acts))
    best = {False: float(np.dot([t_naive[m] for m in chosen], weight)),
            True: float(np.dot([t_shared[m] for m in chosen], weight)) + sum(t_prefix.values())}
    flops = layer_flops(base, n)
    fl = sharing_floor(masks, flops, epochs)
    ratio = best[True] / best[False]
    return {"subsets": subsets, "n_subsets": len(masks), "timed_subsets": len(chosen), "layers": layers,
            "width": width, "kernel": kernel, "n": n, "samples": samples, "epochs": epochs, "batch": batch,
            "naive_s": best[False], "shared_s": best[True], "ratio": ratio, "floor": fl["floor"],
            "ratio_over_floor": ratio / fl["floor"], "device": str(device), "threads": torch.get_num_threads()}


if __name__ == "__main__":  # python -m suite.transfer: print the sharing figures of this machine
    import argparse
    ap = argparse.ArgumentParser(description=measure_sharing.__doc__)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subsets", default="singles")
    ap.add_argument("--per-first", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(measure_sharing(a.layers, a.width, 5, a.n, a.samples, 16, a.epochs, a.subsets, a.per_first,
                                     a.device, repeats=a.repeats)))
