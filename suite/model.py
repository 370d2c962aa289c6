"""The CNN closure (docs/science.md §4) and its storage (CONTRACTS.md "Models").

``ClosureCNN(layers, width, kernel, padding)`` is a plain stack of ``L`` convolutions named
``conv1`` … ``convL`` (``torch.nn.Conv2d``, stride 1, 'same' size), ReLU after all but the last.
The paper network is ``ClosureCNN(11, 64, 5)``: 2 → 64, nine 64 → 64, 64 → 1, 927,041 parameters.

Each ``convI`` module is an ordinary ``Conv2d`` with ``padding=kernel//2`` and
``padding_mode='circular'`` or ``'zeros'``, so calling it on its own gives the right answer. The
model's own forward pass does not call the modules, though: it pads explicitly
(:func:`circular_pad`, a copy with a cheap hand-written backward that keeps ``channels_last``) and
calls the convolution with no padding. PyTorch's built-in circular padding halves training speed on
CPU; this path costs a few percent (``bench/training_harness.py`` measures both).

    >>> m = ClosureCNN(11, 64, 5)
    >>> m.n_params()
    927041
    >>> m.set_trainable("10000000000")       # only conv1 re-trained (a transfer-learning mask)

Models are stored in a folder as ``model.pt`` = {"state_dict", "model_config", "norm"} and
``meta.json`` (provenance, loss history, metrics) by :func:`save_model` and read back by
:func:`load_model`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from solver.atomic import write_bytes_atomic

from .errors import DataError

PADDINGS = ("circular", "zeros")
VARIABLES = ("psi", "omega", "pi")


# --------------------------------------------------------------------------------------------
# fast circular padding


class _CircularPad(torch.autograd.Function):
    """Periodic padding by ``p`` on both spatial sides; backward folds the halo back (adds)."""

    @staticmethod
    def forward(ctx, x, p):
        ctx.p = p
        n, c, h, w = x.shape
        fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=fmt)
        out[:, :, p:p + h, p:p + w] = x
        out[:, :, p:p + h, :p] = x[:, :, :, w - p:]
        out[:, :, p:p + h, p + w:] = x[:, :, :, :p]
        out[:, :, :p, :] = out[:, :, h:h + p, :]
        out[:, :, p + h:, :] = out[:, :, p:2 * p, :]
        return out

    @staticmethod
    def backward(ctx, g):
        p = ctx.p
        h, w = g.shape[2] - 2 * p, g.shape[3] - 2 * p
        rows = g[:, :, p:p + h, :].clone(memory_format=torch.preserve_format)
        rows[:, :, h - p:, :] += g[:, :, :p, :]
        rows[:, :, :p, :] += g[:, :, p + h:, :]
        out = rows[:, :, :, p:p + w].clone(memory_format=torch.preserve_format)
        out[:, :, :, w - p:] += rows[:, :, :, :p]
        out[:, :, :, :p] += rows[:, :, :, p + w:]
        return out, None


class _ReluCircularPad(torch.autograd.Function):
    """``circular_pad(relu(x), p)`` in one pass over memory (the ReLU applied while copying).

    Forward values are those of ``F.relu`` then :class:`_CircularPad` exactly. Backward folds the
    halo back in the same order of additions as :class:`_CircularPad` (so the same rounding) and
    masks by ``x > 0`` as ReLU's own backward does, without a separate ReLU pass either way (and
    without keeping ReLU's output alive for the backward pass)."""

    @staticmethod
    def forward(ctx, x, p):
        ctx.p = p
        ctx.save_for_backward(x)
        n, c, h, w = x.shape
        fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=fmt)
        torch.clamp_min(x, 0, out=out[:, :, p:p + h, p:p + w])
        out[:, :, p:p + h, :p] = out[:, :, p:p + h, w:w + p]
        out[:, :, p:p + h, p + w:] = out[:, :, p:p + h, p:2 * p]
        out[:, :, :p, :] = out[:, :, h:h + p, :]
        out[:, :, p + h:, :] = out[:, :, p:2 * p, :]
        return out

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        p = ctx.p
        h, w = g.shape[2] - 2 * p, g.shape[3] - 2 * p
        thr = torch.ops.aten.threshold_backward  # ReLU's backward: g where x > 0, else 0
        # as _CircularPad.backward, term by term in the same order of additions, each term masked
        # by x > 0 on its way in (masking a sum = summing the masked terms, bit for bit): the
        # interior is masked straight out of g (no copy of it first); then the top/bottom halo
        # rows; then the left/right halo columns with their corners folded in
        out = thr(g[:, :, p:p + h, p:p + w], x, 0)
        out[:, :, h - p:, :] += thr(g[:, :, :p, p:p + w], x[:, :, h - p:, :], 0)
        out[:, :, :p, :] += thr(g[:, :, p + h:, p:p + w], x[:, :, :p, :], 0)
        for src, dst in ((slice(0, p), slice(w - p, w)), (slice(p + w, w + 2 * p), slice(0, p))):
            strip = g[:, :, p:p + h, src].clone(memory_format=torch.preserve_format)
            strip[:, :, h - p:, :] += g[:, :, :p, src]
            strip[:, :, :p, :] += g[:, :, p + h:, src]
            out[:, :, :, dst] += thr(strip, x[:, :, :, dst], 0)
        return out, None


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Periodic padding of the last two dims by ``p`` (same values as ``F.pad(x, (p,)*4, 'circular')``)."""
    if p == 0:
        return x
    if p > x.shape[-1] or p > x.shape[-2]:
        return F.pad(x, (p, p, p, p), mode="circular")
    return _CircularPad.apply(x, p)


def relu_circular_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``circular_pad(F.relu(x), p)`` fused into one pass (:class:`_ReluCircularPad`)."""
    if p == 0 or p > x.shape[-1] or p > x.shape[-2]:
        return circular_pad(F.relu(x), p)
    return _ReluCircularPad.apply(x, p)


# --------------------------------------------------------------------------------------------
# the network


class ClosureCNN(nn.Module):
    """L convolutions ``conv1`` … ``convL`` with ReLU between them; input (ψ̄, ω̄), output Π.

    ``padding`` is ``"circular"`` (periodic domain, the default) or ``"zeros"`` (the paper's 'same'
    zero padding). Inputs are ``(batch, in_channels, ny, nx)`` in normalized units.
    """

    def __init__(self, layers: int = 11, width: int = 64, kernel: int = 5, padding: str = "circular",
                 in_channels: int = 2, out_channels: int = 1):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding = {padding!r}: must be one of {', '.join(PADDINGS)}")
        if kernel % 2 != 1 or kernel < 1:
            raise ValueError(f"kernel = {kernel!r}: must be an odd integer >= 1")
        if layers < 1:
            raise ValueError(f"layers = {layers!r}: must be >= 1")
        self.config = dict(layers=int(layers), width=int(width), kernel=int(kernel), padding=padding,
                           in_channels=int(in_channels), out_channels=int(out_channels))
        self.pad = kernel // 2
        chans = [in_channels] + [width] * (layers - 1) + [out_channels]
        for i in range(layers):
            self.add_module(f"conv{i + 1}", nn.Conv2d(chans[i], chans[i + 1], kernel, padding=self.pad,
                                                      padding_mode=padding))
        self.reset_parameters()

    # -- structure ---------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.config["layers"]

    @property
    def layer_names(self) -> list[str]:
        return [f"conv{i + 1}" for i in range(self.n_layers)]

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [getattr(self, n) for n in self.layer_names]

    def n_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def reset_parameters(self) -> None:
        """He-uniform weights for the ReLU layers, Glorot-uniform for the linear output; zero biases.

        Uses torch's global RNG: seed it (``torch.manual_seed``) for reproducible initial weights.
        """
        for i, conv in enumerate(self.convs):
            if i < self.n_layers - 1:
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def set_trainable(self, mask: str) -> None:
        """Freeze every layer whose character in ``mask`` (0/1, layer 1 first) is ``0``."""
        if not isinstance(mask, str) or len(mask) != self.n_layers or set(mask) - {"0", "1"}:
            raise ValueError(f"mask = {mask!r}: must be {self.n_layers} characters 0/1 (layer 1 first)")
        for ch, conv in zip(mask, self.convs):
            for p in conv.parameters():
                p.requires_grad_(ch == "1")

    def trainable_mask(self) -> str:
        """The current mask: ``1`` for layers whose weight requires a gradient."""
        return "".join("1" if c.weight.requires_grad else "0" for c in self.convs)

    # -- forward -----------------------------------------------------------------------------
    def _conv(self, i: int, x: torch.Tensor, relu_first: bool = False) -> torch.Tensor:
        """Layer ``i`` on ``x`` (on ``relu(x)`` with ``relu_first``: fused into the circular halo)."""
        conv = self.convs[i]
        if self.pad > 0 and self.config["padding"] == "circular":
            h = relu_circular_pad(x, self.pad) if relu_first else circular_pad(x, self.pad)
            return F.conv2d(h, conv.weight, conv.bias)
        if relu_first:
            x = F.relu(x)
        if self.pad == 0:
            return F.conv2d(x, conv.weight, conv.bias)
        return F.conv2d(x, conv.weight, conv.bias, padding=self.pad)

    def forward_range(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Apply layers ``start`` … ``stop-1`` (0-based), ReLU after each but the network's last.

        ``forward_range(forward_range(x, 0, k), k)`` equals ``forward(x)``: the transfer sweep
        caches the output of a frozen prefix this way. Inside the range, each ReLU is fused into
        the next layer's circular halo (:func:`relu_circular_pad`): the same values, one pass less.
        """
        stop = self.n_layers if stop is None else stop
        pending = False  # a ReLU owed to x, applied by the next layer's halo
        for i in range(start, stop):
            x = self._conv(i, x, relu_first=pending)
            pending = i < self.n_layers - 1
        return F.relu(x) if pending else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_range(x, 0, self.n_layers)

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activation output of every layer (post-ReLU = ``relu`` of it; the last is Π)."""
        outs = []
        for i in range(self.n_layers):
            x = self._conv(i, x)
            outs.append(x)
            if i < self.n_layers - 1:
                x = F.relu(x)
        return outs

    def flops_per_sample(self, ny: int, nx: int) -> float:
        """Forward FLOPs (2 per multiply-add) for one ``ny × nx`` sample; training ≈ 3× this."""
        k = self.config["kernel"]
        return float(sum(2 * k * k * c.in_channels * c.out_channels * ny * nx for c in self.convs))

    def receptive_field(self) -> int:
        return self.n_layers * (self.config["kernel"] - 1) + 1


def paper_model(padding: str = "circular") -> ClosureCNN:
    """The network of Subel et al. (2023): 11 layers, 64 channels, 5×5 kernels."""
    return ClosureCNN(11, 64, 5, padding=padding)


def model_from_config(cfg) -> ClosureCNN:
    """The network of a validated configuration's ``[model]`` section (a Config or its dict)."""
    m = cfg["model"] if isinstance(cfg, dict) else cfg.model.to_dict()
    return ClosureCNN(m["layers"], m["width"], m["kernel"], padding=m["padding"])


# --------------------------------------------------------------------------------------------
# storage


def _check_norm(norm: dict) -> dict:
    try:
        return {k: {v: float(norm[k][v]) for v in VARIABLES} for k in ("mean", "std")}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"norm must be {{'mean': {{psi, omega, pi}}, 'std': {{...}}}} of floats ({e})") from None


def save_model(folder, model: ClosureCNN, norm: dict, meta: dict | None = None) -> Path:
    """Write ``folder/model.pt`` and ``folder/meta.json`` atomically (temp file + rename)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = {"state_dict": state, "model_config": dict(model.config), "norm": _check_norm(norm)}
    buf = io.BytesIO()
    torch.save(blob, buf)
    write_bytes_atomic(folder / "model.pt", buf.getvalue())
    write_bytes_atomic(folder / "meta.json", json.dumps(meta or {}, indent=2, default=_json_default).encode())
    return folder


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def load_model(folder, map_location="cpu") -> tuple[ClosureCNN, dict, dict]:
    """Read a model folder: ``(model, norm, meta)``; a missing or corrupt folder raises DataError."""
    folder = Path(folder)
    path = folder / "model.pt"
    if not path.is_file():
        raise DataError(f"model folder {folder}: no model.pt (train it first with `turbtl train`)",
                        field="model")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
        model = ClosureCNN(**blob["model_config"])
        model.load_state_dict(blob["state_dict"])
        norm = _check_norm(blob["norm"])
    except Exception as e:  # noqa: BLE001 - any failure here means a corrupt or foreign file
        raise DataError(f"model file {path} is corrupt or foreign ({type(e).__name__}: {e}); train it again "
                        f"(`turbtl train --force` for the base network, `turbtl transfer --force` for a "
                        "transfer-learned one)", field="model") from None
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path} is not valid JSON: {e}", field="model") from None
    return model, norm, meta
