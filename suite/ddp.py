"""torch.distributed set-up from the launcher's environment.

Rank and world size are read, in this order, from

- ``torchrun`` (and most launchers): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``;
- SLURM ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID`` (inside a job step only:
  ``SLURM_STEP_ID`` set; the batch script itself is a single process);
- ``mpiexec``: MPICH/Hydra ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``, or Open MPI's
  ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``, ``OMPI_COMM_WORLD_LOCAL_RANK``;
- nothing: a plain single process (no process group is created).

The rendezvous is ``MASTER_ADDR:MASTER_PORT`` (torchrun sets both; under srun/mpiexec set them
in the job script, e.g. ``MASTER_ADDR=$(hostname)`` on the first node; the defaults
127.0.0.1:29511 serve a single node). Backend: ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per
local rank).

    >>> env = setup("auto")          # DistEnv(rank, world, local_rank, device, backend)
    >>> ...                          # DistributedDataParallel(model) when env.world > 1
    >>> teardown(env)
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UsageError

_VARS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
         ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
         ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
         ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"))


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: single process, no process group
    launcher: str

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def detect(environ=None) -> tuple[int, int, int, str]:
    """(rank, world size, local rank, launcher name) from the environment."""
    env = os.environ if environ is None else environ
    names = ("torchrun", "srun", "mpiexec", "mpiexec")
    for (r, w, lr), name in zip(_VARS, names):
        # A batch script itself carries SLURM_PROCID/SLURM_NTASKS but is no srun step: only a step
        # (SLURM_STEP_ID set) is a launch of SLURM_NTASKS processes.
        if name == "srun" and "SLURM_STEP_ID" not in env:
            continue
        if r in env and w in env:
            rank, world = int(env[r]), int(env[w])
            return rank, world, int(env.get(lr, rank)), name
    return 0, 1, 0, "none"


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``cpu``, ``cuda`` (the local rank's GPU) or ``auto`` (CUDA when available)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device = 'cuda': no CUDA device is visible (use cpu or auto)", field="device")
        idx = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return torch.device("cpu")


def setup(device: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Initialise the process group if the launcher started more than one process."""
    rank, world, local_rank, launcher = detect()
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistEnv(0, 1, 0, dev, None, launcher)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local_rank, dev, backend, launcher)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_object(env: DistEnv, obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (any picklable object)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=env.device if env.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()


class TorchComm:
    """The few mpi4py-style calls that :func:`suite.rundir.run_lock` uses, over torch.distributed."""

    def __init__(self, env: DistEnv):
        self.env = env

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return self.env.rank

    def Get_size(self) -> int:  # noqa: N802
        return self.env.world

    def bcast(self, obj, root: int = 0):
        return broadcast_object(self.env, obj, src=root)
