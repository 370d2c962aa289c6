"""Running the sweep's jobs: a worker's view of the run (:class:`Context`: the base network, the
target data, the prefix caches), one job trained and stored, and the local process pool."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import layout
from ..dataset import FDNSData, SplitTensors
from ..ddp import DistEnv
from ..errors import DataError
from ..masks import first_trainable, full, n_trained, random_elements
from ..metrics import cc, evaluate
from ..model import ClosureCNN, load_model, save_model
from ..provenance import provenance
from ..rundir import write_json_atomic
from ..train import mse_sum, predict
from .jobs import Job, is_done, model_dir, row_path
from .prefix import PREFIX_BATCH, PrefixCache, Suffix, prefix_activations, with_inputs
from .results import COLUMNS, write_results
from .steps import job_budget, train_steps

EVAL_CACHE_BYTES = 1 << 30


@dataclass
class SweepSpec:
    """Everything a worker needs (plain values: it crosses process boundaries)."""

    run_dir: str
    epochs: int  # used only when steps = 0: steps = epochs x batches of the sample
    batch_size: int
    lr: float
    steps: int = 0
    eval_every: int = 25
    patience: int = 0
    oracle_steps: int = 0
    oracle_init: str = "random"  # transfer.oracle_init: the oracle starts from random or the base weights
    epochs_by_layers: tuple = ()  # transfer.epochs_by_layers (empty: every run gets ``steps``)
    bf16: bool = False
    share_prefix: bool = True
    device: str = "cpu"
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg, run_dir, device: str = "cpu") -> "SweepSpec":
        t = cfg.transfer
        return cls(run_dir=str(run_dir), epochs=t.epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
                   steps=t.steps, eval_every=t.eval_every, patience=t.patience, oracle_steps=t.oracle_steps,
                   oracle_init=t.oracle_init, epochs_by_layers=tuple(t.epochs_by_layers), bf16=cfg.train.bf16, share_prefix=t.share_prefix, device=device,
                   provenance=provenance(cfg.to_dict(), stage="transfer"))


class Context:
    """A worker's view of the run: the base network, the target data and the prefix caches."""

    def __init__(self, spec: SweepSpec, base: tuple | None = None):
        self.spec = spec
        self.device = torch.device(spec.device)
        run_dir = spec.run_dir
        self.base_model, self.norm, self.base_meta = base or load_model(layout.base_model_dir(run_dir))
        self.n_base = base_train_size(self.base_meta, run_dir)
        self._data: dict = {}
        self._splits: dict = {}
        self._samples: dict = {}
        self.train_cache = PrefixCache(2)
        self.eval_cache = PrefixCache(None, max_bytes=EVAL_CACHE_BYTES)

    # -- data ----------------------------------------------------------------------------------
    def data(self, target: str) -> FDNSData:
        if target not in self._data:
            self._data[target] = FDNSData(layout.fdns_store(self.spec.run_dir, target))
        return self._data[target]

    def sample_count(self, fraction: float) -> int:
        return max(1, int(round(fraction * self.n_base)))

    def split(self, target: str, split: str) -> SplitTensors | None:
        """Every complete snapshot of a split, normalized (base units); read from the store once per
        worker (None: a val/test split without members)."""
        key = (target, split)
        if key not in self._splits:
            d = self.data(target)
            self._splits[key] = d.tensors(split, self.norm) if split == "train" or len(d.members(split)) else None
        return self._splits[key]

    def tensors(self, target: str, split: str, fraction: float | None = None, seed: int = 0) -> SplitTensors | None:
        """Normalized (base units) tensors: the small training sample (``fraction`` None: every
        training snapshot of the target, the oracle's data), or the full val/test split.

        A sample is the rows of :meth:`split` at the snapshots
        ``FDNSData.snapshots("train", seed=seed, count=sample_count(fraction))`` picks, in that
        order: normalization is elementwise, so the rows equal those of reading the sample alone,
        bit for bit, and the store is read once per target, not once per fraction and seed."""
        if split != "train":
            return self.split(target, split)
        key = (target, fraction, seed)
        if key not in self._samples:
            full = self.split(target, "train")
            if fraction is None:
                self._samples[key] = full
            else:
                pairs = self.data(target).snapshots("train", seed=seed, count=self.sample_count(fraction))
                self._samples[key] = take_rows(full, pairs)
        return self._samples[key]

    # -- prefix ----------------------------------------------------------------------------------
    def train_input(self, job: Job, start: int) -> SplitTensors:
        train = self.tensors(job.target, "train", job.fraction, job.seed)
        if start == 0:
            return train
        acts = self.train_cache.get((job.target, job.fraction, job.seed, start),
                                    lambda: prefix_activations(self.base_model, train.x, start, self.device))
        return with_inputs(train, acts)

    def eval_input(self, target: str, split: str, start: int) -> SplitTensors | None:
        data = self.tensors(target, split)
        if data is None or start == 0:
            return data
        size = len(data) * self.base_model.config["width"] * data.x.shape[-2] * data.x.shape[-1] * 4
        if size > EVAL_CACHE_BYTES:
            return None
        acts = self.eval_cache.get((target, split, start),
                                   lambda: prefix_activations(self.base_model, data.x, start, self.device))
        return with_inputs(data, acts)

    # -- the job -----------------------------------------------------------------------------------
    def network(self, job: Job) -> ClosureCNN:
        """The job's starting network: the base weights (tl, random, base; the oracle with
        ``oracle_init = "base"``) or seeded random ones (scratch; the oracle by default)."""
        if job.kind == "scratch" or (job.kind == "oracle" and self.spec.oracle_init == "random"):
            torch.manual_seed(job.seed)
            return ClosureCNN(**self.base_model.config)
        net = ClosureCNN(**self.base_model.config)
        net.load_state_dict(self.base_model.state_dict())
        return net

    def budget(self, job: Job) -> int:
        """Optimizer steps of the job (:func:`suite.transfer.steps.job_budget`)."""
        return job_budget(job, self.spec, self.sample_count(job.fraction), self.n_base, self.base_meta)

    def cost(self, job: Job) -> float:
        """Estimated work of a job, to order a pool's queue (:func:`longest_first`): optimizer steps
        x samples per step x layer work per sample (forward from the first layer run, input gradients
        above the first trainable layer, weight gradients of the trainable ones; k² c_in c_out per
        layer); 0 for ``base``. Early stopping is not foreseen."""
        if job.kind == "base":
            return 0.0
        L = self.base_model.n_layers
        mask = job.mask if job.kind == "tl" else full(L)
        flops = [c.weight.numel() for c in self.base_model.convs]
        first = first_trainable(mask) - 1
        start = first if (job.kind == "tl" and self.spec.share_prefix) else 0
        work = sum(flops[start:]) + sum(flops[first + 1:]) + sum(f for f, c in zip(flops, mask) if c == "1")
        n = self.n_base if job.kind == "oracle" else self.sample_count(job.fraction)
        return float(self.budget(job) * min(n, self.spec.batch_size) * work)

    def _grad_masks(self, net: ClosureCNN, job: Job) -> tuple[dict, int]:
        """The random control's element masks (as many elements as ``job.mask`` re-trains)."""
        probe = ClosureCNN(**self.base_model.config)
        probe.set_trainable(job.mask)
        k = probe.n_params(trainable_only=True)
        names = [n for n, _ in net.named_parameters()]
        params = [p for _, p in net.named_parameters()]
        seed = job.seed * 1_000_003 + int(job.mask, 2)
        chosen = random_elements([p.numel() for p in params], k, seed)
        return {n: torch.from_numpy(c.reshape(p.shape)).to(p.dtype) for n, p, c in zip(names, params, chosen)}, k

    def run(self, job: Job) -> tuple[dict, ClosureCNN, dict]:
        """Train (or, for ``base``, only evaluate) one job: (row, network, loss history)."""
        train_args = (None, job.seed) if job.kind == "oracle" else (job.fraction, job.seed)
        for split, args in (("train", train_args), ("val", ()), ("test", ())):
            self.tensors(job.target, split, *args)  # read once per worker, not timed
        t0 = time.perf_counter()
        net = self.network(job)
        net.set_trainable(full(net.n_layers) if job.kind == "random" else job.mask)
        start = job.first - 1 if (job.kind == "tl" and self.spec.share_prefix) else 0
        train = self.train_input(job, start) if job.kind != "oracle" else self.tensors(job.target, "train", None, job.seed)
        module = Suffix(net, start) if start else net
        val = self.eval_input(job.target, "val", start)
        module_v = module
        if val is None:
            val, module_v = self.tensors(job.target, "val"), net

        def val_loss():
            return _mse(module_v, val, self.spec.batch_size, self.device)

        history, steps, best_step, n_trainable = {}, 0, 0, net.n_params(trainable_only=True)
        if job.kind != "base":
            masks = None
            if job.kind == "random":
                masks, n_trainable = self._grad_masks(net, job)
            res = train_steps(module, train, self.budget(job), self.spec.batch_size, self.spec.lr, seed=job.seed,
                              val_loss=val_loss if val is not None else None, eval_every=self.spec.eval_every,
                              patience=self.spec.patience, device=self.device, grad_masks=masks)
            history, steps, best_step = res.history, res.steps, res.best_step
        train_loss = _mse(module, train, self.spec.batch_size, self.device)
        val_loss_v = val_loss() if val is not None else float("nan")
        test = self.tensors(job.target, "test")
        test_in = self.eval_input(job.target, "test", start)
        module_t = module if test_in is not None else net
        pred = predict(module_t, test_in if test_in is not None else test, batch=PREFIX_BATCH, device=self.device)
        true = test.raw("pi")
        metrics = evaluate(pred, true, test.raw("omega"), test.L)
        row = {"target": job.target, "fraction": job.fraction, "seed": job.seed, "mask": job.mask,
               "kind": job.kind, **{k: metrics[k] for k in ("cc", "cc_backscatter", "cc_diffusion", "rel_l2")},
               "epochs": -(-steps * self.spec.batch_size // max(1, len(train))) if steps else 0,
               "steps": steps, "best_step": best_step, "wall_time_s": time.perf_counter() - t0,
               "n_trainable": int(n_trainable),
               "first_trainable": job.first, "n_layers_trained": n_trained(job.mask),
               "final_train_loss": float(train_loss), "final_val_loss": float(val_loss_v),
               "n_train": len(train), "cc_snapshots": [float(cc(pred[i], true[i])) for i in range(len(true))]}
        net.to(device="cpu")
        return row, net, history

    def run_and_store(self, job: Job) -> dict:
        """:meth:`run`, then write the model folder and (last, atomically) the row file."""
        row, net, history = self.run(job)
        folder = model_dir(self.spec.run_dir, job)
        if folder is not None:
            train = self.tensors(job.target, "train", None if job.kind == "oracle" else job.fraction, job.seed)
            meta = {"provenance": self.spec.provenance | {"target": job.target, "fraction": job.fraction,
                                                          "seed": job.seed, "mask": job.mask, "kind": job.kind},
                    "history": history, "metrics": {k: row[k] for k in COLUMNS[5:9]},
                    "n_train": len(train), "train_index": train.index.tolist(), "row": row}
            save_model(folder, net, self.norm, meta)
        write_json_atomic(row_path(self.spec.run_dir, job), row)
        return row


def local_env(device: torch.device) -> DistEnv:
    """The single-process (no DDP) environment ``fit`` trains a sweep network in."""
    return DistEnv(0, 1, 0, device, None, "none")


def take_rows(data: SplitTensors, pairs) -> SplitTensors:
    """The rows of ``data`` at the (member, time) positions ``pairs`` (each one of ``data.index``),
    in the order of ``pairs``."""
    where = {(int(m), int(t)): i for i, (m, t) in enumerate(data.index)}
    rows = torch.tensor([where[(int(m), int(t))] for m, t in pairs], dtype=torch.long)
    return SplitTensors(data.x[rows], data.y[rows], data.norm, np.asarray(pairs), data.L, data.delta)


def _mse(module, data: SplitTensors, batch: int, device) -> float:
    sse, count = mse_sum(module, data, batch, torch.device(device))
    return sse / count


def base_train_size(meta: dict, run_dir) -> int:
    """The base network's training-set size (fractions are of it)."""
    n = meta.get("n_train")
    if not isinstance(n, int) or n < 1:
        raise DataError(f"{layout.base_model_dir(run_dir) / 'meta.json'}: no n_train (the base network's "
                        "training-set size); retrain it with `turbtl train`", field="model")
    return n


# --------------------------------------------------------------------------------------------
# workers


_CTX: Context | None = None


def _init_worker(spec: SweepSpec, threads: int, base: tuple | None = None) -> None:
    global _CTX
    torch.set_num_threads(max(1, threads))
    _CTX = Context(spec, base=base)


def _work(job: Job) -> dict:
    return _CTX.run_and_store(job)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def longest_first(ctx: Context, jobs: list[Job]) -> list[Job]:
    """``jobs`` by :meth:`Context.cost`, largest first (ties in the given order): the order a pool
    takes them in, so that the last jobs to start are short and the workers finish together."""
    return sorted(jobs, key=lambda j: -ctx.cost(j))


def _run_pool(spec: SweepSpec, todo: list[Job], workers: int, threads: int, finished, base) -> None:
    """``workers`` workers: this process (a thread of it) and ``workers - 1`` spawned processes.
    Each takes the next job of :func:`longest_first` when it is free."""
    queue = iter(longest_first(_CTX, todo))
    pending: dict = {}

    def feed(executor):
        job = next(queue, None)
        if job is not None:
            pending[executor.submit(_work, job)] = executor

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=ctx, initializer=_init_worker,
                             initargs=(spec, threads, base)) as pool, ThreadPoolExecutor(1) as here:
        for executor in [here] + [pool] * (workers - 1):
            feed(executor)
        while pending:
            fin, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in fin:
                executor = pending.pop(f)
                finished(f.result())
                feed(executor)


def run_sweep(spec: SweepSpec, jobs: list[Job], workers: int = 1, progress: bool = True,
              on_row=None, base: tuple | None = None) -> list[dict]:
    """Run every job not yet finished, on ``workers`` local workers (1: in this process).

    Workers: this process and ``workers - 1`` spawned processes (:func:`_run_pool`); each keeps
    its :class:`Context` (data, prefix caches) for the whole call. Torch threads per worker:
    cores // workers (this process's own setting is restored at the end). ``base``: the base
    network as :func:`suite.model.load_model` returned it (None: read it). Rows do not depend on
    the worker, the order or the number of workers at equal threads. Returns the rows finished by
    this call, in completion order. Rebuilds ``results.csv`` of every target touched, at the end.
    """
    global _CTX
    todo = [j for j in jobs if not is_done(spec.run_dir, j)]
    threads = max(1, cpu_count() // max(1, workers))
    bar = None
    if progress:
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

    prev = torch.get_num_threads()
    try:
        if todo:
            _init_worker(spec, threads, base)
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                finished(_work(job))
        elif todo:
            _run_pool(spec, todo, workers, threads, finished, base)
    finally:
        _CTX = None
        torch.set_num_threads(prev)
        if bar is not None:
            bar.close()
        for t in sorted({j.target for j in jobs}):
            write_results(spec.run_dir, t)
    return done
