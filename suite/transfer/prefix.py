"""The shared frozen prefix: layers before a subset's first trainable one run once per sample and
are cached (:class:`PrefixCache`); training runs the rest of the network (:class:`Suffix`) on them."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..dataset import SplitTensors
from ..model import ClosureCNN

PREFIX_BATCH = 16


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
    """Prefix activations by key, least recently used dropped beyond ``capacity`` entries (None: no
    limit) or beyond ``max_bytes`` bytes of tensors in all (None: no limit; the newest entry always
    stays)."""

    def __init__(self, capacity: int | None = 2, max_bytes: int | None = None):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.items: OrderedDict = OrderedDict()
        self.computed = 0

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.items.values())

    def _over(self) -> bool:
        if len(self.items) <= 1:
            return False
        if self.capacity is not None and len(self.items) > self.capacity:
            return True
        return self.max_bytes is not None and self.nbytes > self.max_bytes

    def get(self, key, compute):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = compute()
        self.computed += 1
        self.items[key] = value
        while self._over():
            self.items.popitem(last=False)
        return value


def with_inputs(data: SplitTensors, x: torch.Tensor) -> SplitTensors:
    """``data`` with its inputs replaced by ``x`` (e.g. prefix activations)."""
    return SplitTensors(x, data.y, data.norm, data.index, data.L, data.delta)
