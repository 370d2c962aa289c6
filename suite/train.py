"""Training of the CNN closure: the loop (:func:`fit`), evaluation, and the base network stage.

:func:`fit` is the one training loop of the suite; the transfer sweep calls it with a model whose
frozen layers have ``requires_grad = False`` (``ClosureCNN.set_trainable``): frozen parameters get
no gradient and are not given to the optimizer.

- Adam, MSE on normalized Π, learning rate / epochs / global batch from the configuration.
- DDP (``suite.ddp``): each rank takes its share of every global batch; the loss of a rank is
  its sum of squared errors divided by the *global* batch's element count times the world size,
  so DDP's gradient average is exactly the gradient of the global-batch mean, for any world size
  and any (uneven, last) batch.
- Seeded (initial weights by ``torch.manual_seed(seed)``; batch order by (seed, epoch) alone):
  same seed, machine and world size → bit-identical weights on CPU.
- ``checkpoint``: written atomically after every epoch (rank 0); ``resume=True`` continues after
  the last finished epoch, giving the same final weights as an uninterrupted run.
- ``bf16``: autocast to bfloat16 on CUDA (ignored on CPU). channels_last memory format.
- The process keeps freed host memory for reuse (:func:`suite.memory.keep_freed_memory`), so
  the tensors of the steps after the first few are not page-faulted and zero-filled again.

:func:`train_base` is ``turbtl train``: it reads ``DIR/fdns/<system>.zarr``, trains, evaluates the
test split against the physics closures of ``solver.closures`` and writes ``DIR/models/base/``.
The benchmark harness of training (samples/s against the GEMM peak) is ``bench/training_harness.py``.
"""
from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from solver import closures
from solver.atomic import write_bytes_atomic

from . import ddp as D
from . import layout
from .dataset import FDNSData, SplitTensors, batch_indices, denormalize
from .errors import DataError, UsageError
from .memory import keep_freed_memory
from .metrics import evaluate
from .model import ClosureCNN, model_from_config, save_model
from .provenance import provenance
from .rundir import write_json_atomic

METRIC_KEYS = ("cc", "cc_backscatter", "cc_diffusion", "rel_l2")


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    bf16: bool = False
    channels_last: bool = True
    progress: bool = True
    desc: str = "train"

    @classmethod
    def from_config(cls, cfg, **over) -> "TrainSettings":
        t = cfg.train
        return cls(**({"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr, "seed": t.seed,
                       "bf16": t.bf16} | over))


@dataclass
class FitResult:
    history: dict = field(default_factory=lambda: {"train_loss": [], "val_loss": [], "epoch_time_s": []})
    epochs_run: int = 0
    wall_s: float = 0.0
    samples: int = 0
    data_wait_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_s / self.wall_s if self.wall_s > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# the loop


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on CUDA when ``bf16``, else a disabled autocast (float32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def memory_format(device: torch.device, channels_last: bool):
    """The torch memory format the network and its batches use."""
    return torch.channels_last if channels_last else torch.contiguous_format


def _save_checkpoint(path: Path, model, opt, epoch: int, result: FitResult) -> None:
    buf = io.BytesIO()
    torch.save({"epoch": epoch, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "history": result.history, "mask": model.trainable_mask()}, buf)
    write_bytes_atomic(path, buf.getvalue())


def _load_checkpoint(path: Path, model, opt, result: FitResult) -> int:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("mask") != model.trainable_mask():
            raise ValueError(f"it trains mask {ck.get('mask')}, this run {model.trainable_mask()}")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"checkpoint {path} cannot be resumed: {e} (use --force to start over)",
                        field="checkpoint") from None
    result.history = ck["history"]
    return int(ck["epoch"]) + 1


def mse_sum(model, data: SplitTensors, batch: int, device, env: D.DistEnv | None = None,
            channels_last: bool = True, bf16: bool = False) -> tuple[float, int]:
    """(Σ squared error, element count) of normalized Π over this rank's share of ``data``."""
    rank, world = (env.rank, env.world) if env else (0, 1)
    fmt = memory_format(device, channels_last)
    sse, count = 0.0, 0
    with torch.no_grad():
        for idx, _ in batch_indices(len(data), batch, 0, 0, rank, world, shuffle=False):
            if len(idx) == 0:
                continue
            xb = data.x[idx].to(device).contiguous(memory_format=fmt)
            yb = data.y[idx].to(device)
            with autocast(device, bf16):
                pred = model(xb)
            sse += float(((pred.float() - yb) ** 2).sum())
            count += yb.numel()
    return sse, count


def fit(model: ClosureCNN, train: SplitTensors, val: SplitTensors | None, settings: TrainSettings,
        env: D.DistEnv | None = None, checkpoint: str | Path | None = None, resume: bool = False,
        stop_after: int | None = None) -> FitResult:
    """Train ``model`` in place (its trainable parameters only); returns the loss history.

    ``checkpoint``: file written after every epoch; with ``resume`` an existing one is continued.
    ``stop_after``: return after this many epochs of this call (for tests and benchmarks).

    About 85 lines: the epoch loop keeps the seeded batch order, the DDP loss scaling, the
    checkpoint-and-resume protocol and the timing together in one place, because its
    bit-reproducibility (same weights for any split into calls with ``resume``) depends on their
    order; split it only with ``bench/run_digest.py`` checking that the weights do not change.
    """
    env = env or D.DistEnv(0, 1, 0, torch.device("cpu"), None, "none")
    device = env.device
    keep_freed_memory()  # no page faults on each step's fresh activations (suite/memory.py)
    fmt = memory_format(device, settings.channels_last)
    model.to(device=device, memory_format=fmt)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("every layer is frozen: nothing to train", field="mask")
    opt = torch.optim.Adam(params, lr=settings.lr)
    net = model
    if env.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
    result = FitResult()
    start = 0
    ck = Path(checkpoint) if checkpoint else None
    if ck is not None and resume and ck.exists():
        start = _load_checkpoint(ck, model, opt, result)
        for state in opt.state.values():
            for k, v in state.items():
                if torch.is_tensor(v) and k != "step":
                    state[k] = v.to(device)
    elif ck is not None and ck.exists() and not resume:
        raise UsageError(f"checkpoint {ck} exists: pass --resume to continue it or --force to start over",
                         field="resume")
    n = len(train)
    per_sample = int(np.prod(train.y.shape[1:]))
    stop = settings.epochs if stop_after is None else min(settings.epochs, start + stop_after)
    bar = None
    if settings.progress and env.is_root and start < stop:
        nb = math.ceil(n / settings.batch_size)
        bar = tqdm(total=(stop - start) * nb, desc=settings.desc, unit="batch", dynamic_ncols=True,
                   initial=0, leave=False)
    t_all = time.perf_counter()
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        net.train()
        sse = 0.0
        for idx, gcount in batch_indices(n, settings.batch_size, epoch, settings.seed, env.rank, env.world):
            tw = time.perf_counter()
            xb = train.x[idx].to(device, non_blocking=True).contiguous(memory_format=fmt)
            yb = train.y[idx].to(device, non_blocking=True)
            result.data_wait_s += time.perf_counter() - tw
            with autocast(device, settings.bf16):
                pred = net(xb)
            err = ((pred.float() - yb) ** 2).sum()
            loss = err * (env.world / (gcount * per_sample))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sse += float(err.detach())
            result.samples += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch + 1}/{settings.epochs}")
        tot = D.all_sum(env, [sse])[0]
        result.history["train_loss"].append(tot / (n * per_sample))
        if val is not None and len(val):
            net.eval()
            vs, vc = D.all_sum(env, list(mse_sum(model, val, settings.batch_size, device, env,
                                                 settings.channels_last, settings.bf16)))
            result.history["val_loss"].append(vs / vc)
        result.history["epoch_time_s"].append(time.perf_counter() - t0)
        if bar is not None:
            vl = result.history["val_loss"][-1] if result.history["val_loss"] else float("nan")
            bar.set_postfix_str(f"epoch {epoch + 1}/{settings.epochs} loss {result.history['train_loss'][-1]:.4g} "
                                f"val {vl:.4g}")
        if ck is not None and env.is_root:
            _save_checkpoint(ck, model, opt, epoch, result)
        D.barrier(env)
        result.epochs_run += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.wall_s = time.perf_counter() - t_all
    if bar is not None:
        bar.close()
    model.to(memory_format=torch.contiguous_format)
    return result


# --------------------------------------------------------------------------------------------
# evaluation


def predict(model: ClosureCNN, data: SplitTensors, batch: int = 16, device="cpu") -> np.ndarray:
    """Π predicted for every snapshot of ``data``, in physical units (float64, (N, n, n))."""
    device = torch.device(device)
    model.to(device).eval()
    outs = []
    with torch.no_grad():
        for b0 in range(0, len(data), batch):
            outs.append(model(data.x[b0:b0 + batch].to(device)).float().cpu())
    return denormalize(torch.cat(outs)[:, 0], data.norm, "pi")


def evaluate_model(model: ClosureCNN, data: SplitTensors, device="cpu", spectra: bool = True) -> dict:
    """The metrics of ``suite.metrics.evaluate`` of the network on a split."""
    return evaluate(predict(model, data, device=device), data.raw("pi"), data.raw("omega"), data.L,
                    spectra=spectra)


def evaluate_baselines(raw: dict[str, np.ndarray], L: float, delta: float, cs: float, cl: float,
                       models=None) -> dict:
    """The physics closures (``solver.closures``) on float64 (ψ̄, ω̄, Π) of a split."""
    out = {}
    for name in models or closures.MODELS:
        pred = closures.predict(name, raw["psi"], raw["omega"], L, delta, cs=cs, cl=cl)
        out[name] = evaluate(pred, raw["pi"], raw["omega"], L, spectra=True)
    return out


def metrics_table(rows: dict[str, dict]) -> str:
    """A plain-text table: one row per model, the columns of :data:`METRIC_KEYS`."""
    head = f"{'model':<10}" + "".join(f"{k:>16}" for k in METRIC_KEYS)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<10}" + "".join(f"{m[k]:>16.4f}" for k in METRIC_KEYS))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the base network stage


def base_paths(run_dir: str | Path) -> dict[str, Path]:
    out = layout.base_model_dir(run_dir)
    return {"dir": out, "model": out / "model.pt", "checkpoint": out / "checkpoint.pt",
            "metrics": out / "metrics.json"}


def train_base(cfg, run_dir: str | Path, system: str | None = None, env: D.DistEnv | None = None,
               resume: bool = False, fresh: bool = False, log=print) -> dict:
    """Train the base network on ``DIR/fdns/<system>.zarr`` and write ``DIR/models/base/``.

    ``fresh``: discard the checkpoint of an interrupted training (once the data has been read, so
    that bad data leaves the folder as it was); the files of a previous model are replaced at the end.
    Returns the metrics dict (also written to ``metrics.json``). Every rank calls it; rank 0 writes.
    """
    env = env or D.setup("cpu")
    system = system or cfg.train.system
    cfg.system(system)  # validates the name
    store = layout.fdns_store(run_dir, system)
    if not store.exists():
        raise DataError(f"FDNS store {store} not found: run `turbtl dns` first (system {system!r})", field="store")
    paths = base_paths(run_dir)
    t = cfg.train
    data = FDNSData(store)
    norm = data.normalization(fraction=t.fraction, seed=t.seed)
    train = data.tensors("train", norm, fraction=t.fraction, seed=t.seed, augment=t.augment)  # rot90: x4 rows
    val = data.tensors("val", norm) if len(data.members("val")) else None
    torch.manual_seed(t.seed)
    model = model_from_config(cfg)
    settings = TrainSettings.from_config(cfg, desc=f"train {system}")
    if settings.bf16 and env.device.type != "cuda" and env.is_root:
        log("note: train.bf16 applies on CUDA only; training in float32 on CPU")
    paths["dir"].mkdir(parents=True, exist_ok=True)
    if fresh and env.is_root:
        paths["checkpoint"].unlink(missing_ok=True)
    D.barrier(env)
    res = fit(model, train, val, settings, env, checkpoint=paths["checkpoint"], resume=resume)
    out = {}
    if env.is_root:
        test = data.tensors("test", norm)
        raw = data.read(test.index)
        rows = {"cnn": evaluate_model(model, test, device=env.device)}
        rows.update(evaluate_baselines(raw, data.L, data.delta, cfg.les.cs, cfg.les.cl))
        perf = {"samples_per_s": res.samples_per_s * env.world, "data_wait_fraction": res.data_wait_fraction,
                "world_size": env.world, "device": str(env.device), "wall_s": res.wall_s}
        out = {"system": system, "split": "test", "n_test": len(test), "n_train": train.snapshots,
               "models": rows, "performance": perf}
        meta = {"provenance": provenance(cfg.to_dict(), system=system, store=str(store),
                                         seed=t.seed, world_size=env.world),
                "history": res.history, "metrics": {k: {m: v[m] for m in METRIC_KEYS} for k, v in rows.items()},
                "performance": perf, "n_train": train.snapshots, "train_index": train.index[:train.snapshots].tolist()}
        if train.turns is not None:  # train.augment: rows with the rotated copies (the oracle's budget counts them)
            meta["n_samples"] = len(train)
        save_model(paths["dir"], model, norm, meta)
        write_json_atomic(paths["metrics"], out)
        write_json_atomic(paths["dir"] / "config.json", cfg.to_dict())
        if paths["checkpoint"].exists():
            os.unlink(paths["checkpoint"])
        log(metrics_table(rows))
    D.barrier(env)
    return out
