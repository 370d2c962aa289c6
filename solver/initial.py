"""Initial conditions: the seeded random-phase field E(k) ∝ k⁴ exp(−(k/k_p)²), or a given field.

Fields are drawn on the *global* grid for each member (one generator per member, seeded by
``SeedSequence(seed).spawn`` child ``member``), then the rank's block is taken, so the initial
condition depends on neither the rank count nor the batching of members.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError

from .grid import Grid


def _one_member(grid: Grid, kp: float, energy: float, rng: np.random.Generator) -> np.ndarray:
    n = grid.n
    ky = np.fft.fftfreq(n, 1.0 / n).reshape(n, 1) * grid.kscale
    kx = np.arange(n // 2 + 1).reshape(1, -1) * grid.kscale
    k = np.sqrt(kx**2 + ky**2)
    # shell energy E(k) ~ pi k |w|^2 / k^2, so |w|^2 ~ k E(k) = k^5 exp(-(k/kp)^2)
    amp = np.sqrt(k**5 * np.exp(-((k / kp) ** 2)))
    phase = np.exp(2j * np.pi * rng.random(amp.shape))
    w_hat = amp * phase
    w_hat[0, 0] = 0
    w_hat[n // 2, :] = 0
    w_hat[:, n // 2] = 0
    w_hat = np.fft.rfft2(np.fft.irfft2(w_hat, s=(n, n)))  # Hermitian on the kx = 0 column
    inv_k2 = np.divide(1.0, k**2, out=np.zeros_like(k), where=k > 0)
    e = np.sum(np.where((np.arange(n // 2 + 1) == 0) | (np.arange(n // 2 + 1) == n // 2), 1.0, 2.0)
               * np.abs(w_hat) ** 2 * inv_k2) / (2 * n**4)
    return w_hat * math.sqrt(energy / e)


def random_field(grid: Grid, kp: float = 10.0, energy: float = 0.5, seed: int = 0,
                 members: int | None = None, member_offset: int = 0):
    """Random-phase vorticity ω̂ (backend array, local block) with E(k) ∝ k⁴ exp(−(k/k_p)²) and
    total energy ``energy``. ``members``: None for one unbatched field, else the ensemble size
    (member i uses generator child ``member_offset + i`` of ``seed``)."""
    if not (math.isfinite(kp) and kp > 0):
        raise ParameterError(f"kp = {kp!r}: must be > 0", name="kp")
    if not (math.isfinite(energy) and energy > 0):
        raise ParameterError(f"init_energy = {energy!r}: must be > 0", name="init_energy")
    if not (isinstance(seed, (int, np.integer)) and 0 <= seed):
        raise ParameterError(f"seed = {seed!r}: must be an integer >= 0", name="seed")
    nm = 1 if members is None else members
    children = np.random.SeedSequence(int(seed)).spawn(member_offset + nm)[member_offset:]
    fields = np.stack([_one_member(grid, kp, energy, np.random.default_rng(c)) for c in children])
    fields = fields[..., :, grid.backend.kx_slice]
    if members is None:
        fields = fields[0]
    return grid.backend.asarray(fields, complex=True)


def from_physical(grid: Grid, omega) -> object:
    """ω̂ (backend array, local block) of a given *global* physical vorticity (numpy, (..., n, n))."""
    omega = np.asarray(omega, dtype=float)
    if omega.shape[-2:] != (grid.n, grid.n):
        raise ParameterError(f"initial field of shape {omega.shape}: expected (..., {grid.n}, {grid.n})",
                          name="init")
    return grid.backend.asarray(np.fft.rfft2(omega)[..., :, grid.backend.kx_slice], complex=True)
