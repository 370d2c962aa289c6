"""SGS closures evaluated online: Π as the explicit extra term of the LES equation.

:class:`solver.equation.Equation` accepts ``extra(omega_hat, t) -> spectral array``, added to the
explicit tendency N. A closure term here is such a callable on the LES grid and its backend:

    ω̂ ─► ψ̄ = irfft2(ω̂/k²), ω̄ = irfft2(ω̂) ─► Π (physical) ─► rfft2(Π) × mask

with ``mask`` = every LES mode below Nyquist but k = 0 (the mean vorticity stays zero): the LES
(:func:`solver.sgs.les_equation`) evolves all of those modes with the exact Jacobian J(ψ̄, ω̄), the
one Π was formed with, so the closure's whole Π acts (docs/science.md §3). Π has the data's sign (CONTRACTS.md, FDNS store): ∂ω̄/∂t + J(ψ̄, ω̄) = … + Π.

- :class:`PhysicsClosure`: Smagorinsky, Leith and their dynamic versions from
  :mod:`solver.closures` (numpy, serial; on a torch backend the fields go through the host).
- :class:`CNNClosure`: a :class:`suite.model.ClosureCNN` evaluated on the solver's device with the
  normalization it was trained with: (ψ̄, ω̄) standardized in float64 with the model's training
  mean/std, cast to float32 (exactly what :func:`suite.dataset.to_tensors` feeds the training),
  the network, then Π = y·std_Π + mean_Π in float64 (:func:`suite.dataset.denormalize`). All
  ensemble members go through the network as one batch.

    >>> term = make_closure("cnn", grid, model=model, norm=norm)
    >>> eq = les_equation(grid, params, forcing=f, extra=term)

The terms are serial (one process; an LES ensemble is batched, not slab-decomposed).
"""
from __future__ import annotations

import numpy as np
import torch

from solver import closures
from solver.sgs import LES_JACOBIAN

PHYSICS = closures.MODELS  # smag, leith, dsmag, dleith
NAMES = ("none",) + PHYSICS + ("cnn",)


# --------------------------------------------------------------------------------------------
# normalization (the training convention, on torch tensors)


def standardize(x: torch.Tensor, norm: dict, name: str) -> torch.Tensor:
    """(x − mean) / std of variable ``name`` (``psi``, ``omega`` or ``pi``), in x's dtype."""
    return (x - norm["mean"][name]) / norm["std"][name]


def destandardize(z: torch.Tensor, norm: dict, name: str) -> torch.Tensor:
    """z · std + mean of variable ``name``, computed in float64 (as :func:`suite.dataset.denormalize`)."""
    return z.double() * norm["std"][name] + norm["mean"][name]


def network_input(psi: torch.Tensor, omega: torch.Tensor, norm: dict) -> torch.Tensor:
    """The network's input ``(B, 2, n, n)`` float32 from physical ψ̄, ω̄ of shape ``(..., n, n)``:
    standardized in float64, then cast (the order of :func:`suite.dataset.to_tensors`)."""
    n = psi.shape[-1]
    z = torch.stack([standardize(psi.double(), norm, "psi"), standardize(omega.double(), norm, "omega")], dim=-3)
    return z.reshape(-1, 2, n, n).float()


# --------------------------------------------------------------------------------------------
# closure terms


class ClosureTerm:
    """Base class: ``term(omega_hat, t)`` -> masked spectral Π̂; ``pi(omega_hat)`` -> physical Π."""

    name = "abstract"

    def __init__(self, grid):
        self.grid, self.backend = grid, grid.backend
        # the modes the LES equation evolves (every mode below Nyquist but k = 0)
        self.mask = grid.mask(LES_JACOBIAN["dealias"])

    def fields(self, omega_hat):
        """(ψ̄, ω̄) physical backend arrays of a spectral vorticity (leading batch dims kept)."""
        be = self.backend
        return be.irfft2(omega_hat * self.grid.inv_k2), be.irfft2(omega_hat)

    def pi(self, omega_hat):
        """Physical Π (backend array, shape of the physical fields)."""
        raise NotImplementedError

    def __call__(self, omega_hat, t: float = 0.0):
        return self.backend.rfft2(self.pi(omega_hat)) * self.mask

    def describe(self) -> dict:
        return {"closure": self.name}


class PhysicsClosure(ClosureTerm):
    """One of :data:`PHYSICS` with LES filter width ``delta`` (Δ) and constants ``cs``, ``cl``."""

    def __init__(self, grid, model: str, delta: float, cs: float = 0.17, cl: float = 0.17,
                 test_ratio: float = 2.0):
        if model not in PHYSICS:
            raise ValueError(f"model = {model!r}: must be one of {', '.join(PHYSICS)}")
        super().__init__(grid)
        self.name, self.delta, self.cs, self.cl, self.test_ratio = model, float(delta), cs, cl, test_ratio

    def pi(self, omega_hat):
        be = self.backend
        psi, omega = (be.to_numpy(a) for a in self.fields(omega_hat))
        p = closures.predict(self.name, psi, omega, self.grid.L, self.delta, cs=self.cs, cl=self.cl,
                             test_ratio=self.test_ratio)
        return be.asarray(p)

    def describe(self) -> dict:
        return {"closure": self.name, "delta": self.delta, "cs": self.cs, "cl": self.cl,
                "test_ratio": self.test_ratio}


class CNNClosure(ClosureTerm):
    """A trained :class:`suite.model.ClosureCNN` with its training normalization ``norm``.

    The network runs on the backend's device (torch backend) or on the CPU (numpy backend), in
    inference mode, all members as one batch."""

    name = "cnn"

    def __init__(self, grid, model: torch.nn.Module, norm: dict, label: str = "cnn"):
        super().__init__(grid)
        be = self.backend
        self.device = torch.device(be.device) if be.is_torch else torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.norm, self.label = norm, label

    def _tensor(self, a):
        return a.to(self.device) if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))

    @torch.inference_mode()
    def predict(self, psi, omega) -> torch.Tensor:
        """Π (float64 tensor, shape of ``psi``) from physical ψ̄, ω̄ (torch tensors or numpy)."""
        psi, omega = self._tensor(psi), self._tensor(omega)
        y = self.model(network_input(psi, omega, self.norm).to(self.device))
        return destandardize(y[:, 0], self.norm, "pi").reshape(psi.shape)

    def pi(self, omega_hat):
        be = self.backend
        p = self.predict(*self.fields(omega_hat))
        return be.asarray(p) if be.is_torch else p.numpy()

    def describe(self) -> dict:
        return {"closure": self.label, "model_config": dict(getattr(self.model, "config", {})),
                "norm": self.norm}


def make_closure(name: str, grid, *, delta: float = 0.0, cs: float = 0.17, cl: float = 0.17,
                 model=None, norm=None, label: str | None = None):
    """The online term of closure ``name`` (one of :data:`NAMES`); None for ``none`` (no extra term)."""
    if name == "none":
        return None
    if name in PHYSICS:
        if not delta > 0:
            raise ValueError(f"delta = {delta!r}: the physics closures need the LES filter width > 0")
        return PhysicsClosure(grid, name, delta, cs=cs, cl=cl)
    if name == "cnn":
        if model is None or norm is None:
            raise ValueError("closure 'cnn' needs model= and norm= (suite.model.load_model)")
        return CNNClosure(grid, model, norm, label=label or "cnn")
    raise ValueError(f"closure {name!r}: must be one of {', '.join(NAMES)}")
