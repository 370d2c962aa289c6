"""The sweep's training loop, counted in optimizer steps, with early stopping on validation data.

Every network the sweep trains (re-trained subsets, the random control, scratch, the oracle) gets
the same budget of Adam steps, so that runs on samples of different sizes compare at equal
optimizer work (epochs would give a 13-sample run one step per epoch). Batches: the sample is
shuffled once per pass (seeded by ``seed`` alone) and cut into batches of ``batch`` (the last
one of a pass may be smaller; a sample smaller than ``batch`` is one batch).

Early stopping: every ``eval_every`` steps (and after the last) the validation MSE is measured;
the weights with the lowest one are kept (``best_step``) and training stops after ``patience``
checks without improvement (0: never). Without validation data the last weights are kept.

Budgets (:func:`job_budget`, called by the worker's ``Context.budget``): ``transfer.steps`` for
every re-training, scratch and random run; with ``transfer.epochs_by_layers`` (the paper preset:
the authors' 50 epochs for one layer, 100 for two) a run gets that many epochs of its own sample
instead, the entry chosen by how many layers it re-trains (scratch: all of them; a random control:
as many as the subset it is matched to); the last entry serves every larger subset. Each epoch is
``ceil(sample / batch)`` steps. The oracle gets ``transfer.oracle_steps``, or (0) as many steps as
the base network took: its epochs × ``ceil(samples / batch)``, samples counting its augmented
copies (``train.augment``).

``grad_masks`` (parameter name → 0/1 tensor of the parameter's shape) multiplies each gradient
before the Adam step: elements with mask 0 get zero gradients, so Adam (no weight decay) never
moves them; this is how the random capacity-matched control trains only its chosen elements.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..config import epochs_for_layers
from ..dataset import SplitTensors
from ..masks import n_trained


@dataclass
class StepResult:
    steps: int = 0  # steps run (stopped early: fewer than the budget)
    best_step: int = 0  # step whose weights were kept (0: the starting weights)
    best_val: float = float("nan")
    history: dict = field(default_factory=lambda: {"step": [], "train_loss": [], "val_loss": [], "time_s": []})


def job_budget(job, spec, sample_count: int, n_base: int, base_meta: dict) -> int:
    """Optimizer steps of ``job`` (a :class:`~suite.transfer.jobs.Job`) under ``spec`` (a ``SweepSpec``:
    ``steps``, ``epochs``, ``batch_size``, ``oracle_steps``, ``epochs_by_layers``); ``sample_count``:
    the job's training-sample size; ``n_base``, ``base_meta``: the base network's training-set size
    (snapshots) and its ``meta.json``. The rules: the module docstring."""
    batch = spec.batch_size
    if job.kind == "oracle":
        if spec.oracle_steps:
            return spec.oracle_steps
        epochs = len(base_meta.get("history", {}).get("train_loss", [])) or 1
        samples = base_meta.get("n_samples", n_base)  # augmented copies counted (train.augment)
        return epochs * -(-int(samples) // batch)
    table = tuple(spec.epochs_by_layers)
    if table:
        return epochs_for_layers(table, n_trained(job.mask)) * -(-sample_count // batch)
    return spec.steps or spec.epochs * -(-sample_count // batch)


def _batches(n: int, batch: int, seed: int):
    g = torch.Generator().manual_seed(int(seed))
    while True:
        perm = torch.randperm(n, generator=g)
        for b0 in range(0, n, batch):
            yield perm[b0:b0 + batch]


def train_steps(module: torch.nn.Module, train: SplitTensors, steps: int, batch: int, lr: float, seed: int = 0,
                val_loss=None, eval_every: int = 25, patience: int = 0, device="cpu",
                grad_masks: dict | None = None) -> StepResult:
    """Train ``module``'s trainable parameters for up to ``steps`` Adam steps; keep the best weights.

    ``val_loss``: a callable returning the current validation MSE (None: no validation).
    """
    device = torch.device(device)
    fmt = torch.channels_last
    module.to(device=device, memory_format=fmt)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam([p for _, p in named], lr=lr)
    masks = {n: grad_masks[n].to(device) for n, _ in named if grad_masks and n in grad_masks}
    res = StepResult()
    best_state = None
    if val_loss is not None:
        module.eval()
        res.best_val = float(val_loss())
        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    bad, t0, run_loss, run_n = 0, time.perf_counter(), 0.0, 0
    batches = _batches(len(train), batch, seed)
    for step in range(1, steps + 1):
        module.train()
        idx = next(batches)
        xb = train.x[idx].to(device).contiguous(memory_format=fmt)
        yb = train.y[idx].to(device)
        loss = ((module(xb).float() - yb) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for n, p in named:
            if n in masks and p.grad is not None:
                p.grad.mul_(masks[n])
        opt.step()
        run_loss, run_n, res.steps = run_loss + float(loss.detach()), run_n + 1, step
        if step % eval_every == 0 or step == steps:
            v = float("nan")
            if val_loss is not None:
                module.eval()
                v = float(val_loss())
                if v < res.best_val:
                    res.best_val, res.best_step, bad = v, step, 0
                    best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
                else:
                    bad += 1
            h = res.history
            h["step"].append(step), h["train_loss"].append(run_loss / run_n), h["val_loss"].append(v)
            h["time_s"].append(time.perf_counter() - t0)
            run_loss, run_n = 0.0, 0
            if patience and bad >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        res.best_step = res.steps
    module.to(memory_format=torch.contiguous_format)
    return res
