"""The activation spectra's fast path equals the reference spectrum (suite.metrics.spectrum)."""
import numpy as np
import pytest
import torch

from analysis.activations import CHUNK, activation_spectra, mean_spectrum
from suite.metrics import spectrum


@pytest.mark.parametrize("n", [16, 32])
@pytest.mark.parametrize("relu", [False, True])
def test_mean_spectrum_equals_the_reference_spectrum(n, relu):
    rng = np.random.default_rng(n)
    maps = rng.standard_normal((3, CHUNK // 2 + 5, n, n)).astype(np.float32)  # more maps than a chunk
    x = np.arange(n) * 2 * np.pi / n
    maps += 3.0 * np.cos(2 * x)[None, None, None, :].astype(np.float32)   # a mean and a strong mode
    ref = spectrum(np.maximum(maps.astype(np.float64), 0.0) if relu else maps.astype(np.float64), 2 * np.pi)[1]
    new = mean_spectrum(maps, relu=relu)
    assert new.shape == ref.shape == (n // 2 + 1,)
    np.testing.assert_allclose(new, ref, rtol=1e-12, atol=1e-15 * ref.max())
    # Parseval over the disk shells is not complete (corners), but the mean square bounds the sum
    assert new.sum() <= np.mean(np.maximum(maps, 0) ** 2 if relu else maps.astype(np.float64) ** 2) * (1 + 1e-12)


class _TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.convs = torch.nn.ModuleList([torch.nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"),
                                          torch.nn.Conv2d(4, 1, 3, padding=1, padding_mode="circular")])

    def layer_outputs(self, x):
        a = self.convs[0](x)
        return [a, self.convs[1](torch.relu(a))]


def test_activation_spectra_are_the_reference_spectra_of_pre_and_post_relu_outputs():
    model, x = _TwoLayers(), torch.randn(3, 2, 16, 16)
    got = activation_spectra(model, x)
    with torch.no_grad():
        pres = [p.double().numpy() for p in model.layer_outputs(x)]
    want = [[spectrum(pres[0], 1.0)[1], spectrum(np.maximum(pres[0], 0), 1.0)[1]],
            [spectrum(pres[1], 1.0)[1]] * 2]                       # the last layer is linear: post = pre
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-18)
    assert got.shape == (2, 2, 9)
