"""The CNN closure: its size, its padding, its storage."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from suite.errors import DataError
from suite.model import ClosureCNN, circular_pad, load_model, paper_model, save_model

NORM = {"mean": {"psi": 0.1, "omega": -0.2, "pi": 0.0}, "std": {"psi": 1.5, "omega": 2.0, "pi": 0.3}}


def test_paper_network_has_927041_parameters():
    m = paper_model()
    assert m.n_params() == 927_041
    assert m.layer_names == [f"conv{i}" for i in range(1, 12)]
    assert [c.in_channels for c in m.convs] == [2] + [64] * 10
    assert [c.out_channels for c in m.convs] == [64] * 10 + [1]
    # 11 layers x (5 - 1) + 1 = 45 (docs/science.md §4)
    assert m.receptive_field() == 45
    assert abs(m.flops_per_sample(128, 128) / 1e9 - 30.36) < 0.01  # docs/science.md §4: about 30 GFLOP


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_circular_pad_matches_torch_and_its_gradient(p, channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = circular_pad(x, p)
    ref = F.pad(x.detach(), (p, p, p, p), mode="circular")
    assert torch.equal(y.detach(), ref)
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda t: circular_pad(t, p), (x,))


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_forward_equals_the_plain_conv_modules(padding):
    """The fast forward path gives what the nn.Conv2d modules themselves (torch's padding) give."""
    torch.manual_seed(1)
    m = ClosureCNN(3, 4, 5, padding=padding).double()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    h = x
    for i, conv in enumerate(m.convs):
        h = conv(h)
        if i < 2:
            h = torch.relu(h)
    assert torch.allclose(m(x), h, atol=1e-12)
    assert torch.allclose(m.forward_range(m.forward_range(x, 0, 2), 2), h, atol=1e-12)
    assert torch.allclose(m.layer_outputs(x)[-1], h, atol=1e-12)


def test_circular_padding_is_translation_equivariant_and_zeros_is_not():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 16, 16)
    for padding, equivariant in (("circular", True), ("zeros", False)):
        m = ClosureCNN(3, 4, 5, padding=padding)
        shifted = m(torch.roll(x, (3, -5), dims=(2, 3)))
        same = torch.allclose(shifted, torch.roll(m(x), (3, -5), dims=(2, 3)), atol=1e-5)
        assert same is equivariant


def test_set_trainable_mask():
    m = ClosureCNN(4, 3, 3)
    m.set_trainable("0100")
    assert m.trainable_mask() == "0100"
    assert m.n_params(trainable_only=True) == 3 * 3 * 9 + 3
    with pytest.raises(ValueError, match="mask"):
        m.set_trainable("010")


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(3)
    m = ClosureCNN(3, 5, 3, padding="zeros")
    save_model(tmp_path / "m", m, NORM, {"loss": [1.0, 0.5]})
    m2, norm, meta = load_model(tmp_path / "m")
    assert m2.config == m.config
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert norm == NORM and meta == {"loss": [1.0, 0.5]}
    blob = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert set(blob) == {"state_dict", "model_config", "norm"}
    assert json.loads((tmp_path / "m" / "meta.json").read_text())["loss"] == [1.0, 0.5]
    assert not [p for p in (tmp_path / "m").iterdir() if ".tmp" in p.name]


def test_load_model_errors(tmp_path):
    with pytest.raises(DataError, match="no model.pt"):
        load_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="corrupt"):
        load_model(tmp_path)


def test_relu_fused_halo_equals_relu_then_circular_pad_bitwise():
    """The ReLU fused into the next layer's circular halo (suite.model.relu_circular_pad) gives the
    values and gradients of F.relu followed by circular_pad, bit for bit, in both memory formats;
    the network equals PyTorch's own circular-padding Conv2d modules to float32 rounding."""
    import torch.nn.functional as F
    from suite.model import ClosureCNN, circular_pad, relu_circular_pad

    torch.manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 3, 10, 9).contiguous(memory_format=fmt).requires_grad_(True)
        g = torch.randn(2, 3, 14, 13)
        a = relu_circular_pad(x, 2)
        b = circular_pad(F.relu(x), 2)
        assert torch.equal(a, b)
        ga, = torch.autograd.grad(a, x, g)
        gb, = torch.autograd.grad(b, x, g)
        assert torch.equal(ga, gb)
        m = ClosureCNN(4, 8, 5).to(memory_format=fmt)
        xin = torch.randn(2, 2, 16, 12).contiguous(memory_format=fmt)
        h = xin
        for i, conv in enumerate(m.convs):  # PyTorch's own circular padding
            h = conv(h)
            if i < 3:
                h = F.relu(h)
        torch.testing.assert_close(m(xin), h, rtol=1e-5, atol=1e-6)
