"""Transfer-learning sweep: subset-epochs/s with the shared frozen prefix against the naive loop
that runs every subset through the whole network, side by side (``bench/sweep_harness.py: measure_sharing``),
and the ratio to the layer-work floor it computes (``sharing_floor``).

Small network (5 x 16): ``singles`` (5 subsets) and ``all`` (31); random data, 16 samples of 32²,
2 epochs per subset, best of 2. The paper network (11 x 64) takes ~100 s for ``singles`` and
~140 s for ``all`` (sampled, ``per_first=1``) on one core: add it to ``NETWORKS`` on bigger machines.
"""
from __future__ import annotations

from .common import DEVICES, cuda_available, require, require_device

NETWORKS = {"small": (5, 16)}
SUBSETS = ["singles", "all"]


class Sharing:
    """Subset-epochs/s shared and naive, shared/naive wall time, and that ratio over its floor."""

    params = (list(NETWORKS), SUBSETS, DEVICES)
    param_names = ["network", "subsets", "device"]
    rounds = 1
    repeat = 1
    timeout = 900

    def setup_cache(self):
        tr = require(f"{__package__}.sweep_harness", "measure_sharing")
        out = {}
        for device in DEVICES:
            if device == "cuda" and not cuda_available():
                continue
            for net, (layers, width) in NETWORKS.items():
                for subsets in SUBSETS:
                    per_first = 1 if layers > 8 and subsets == "all" else None
                    out[(net, subsets, device)] = tr.measure_sharing(
                        layers, width, 5, n=32, samples=16, batch=16, epochs=2, subsets=subsets,
                        per_first=per_first, device=device, repeats=2)
        return out

    def setup(self, r, network, subsets, device):
        require_device(device)
        self.r = r[(network, subsets, device)]

    def _rate(self, key):
        return self.r["n_subsets"] * self.r["epochs"] / self.r[key]

    def track_subset_epochs_per_s_shared(self, r, network, subsets, device):
        return self._rate("shared_s")
    track_subset_epochs_per_s_shared.unit = "subset-epochs/s"

    def track_subset_epochs_per_s_naive(self, r, network, subsets, device):
        return self._rate("naive_s")
    track_subset_epochs_per_s_naive.unit = "subset-epochs/s"

    def track_shared_over_naive(self, r, network, subsets, device):
        return self.r["ratio"]
    track_shared_over_naive.unit = "shared/naive wall time"

    def track_ratio_to_floor(self, r, network, subsets, device):
        return self.r["ratio_over_floor"]
    track_ratio_to_floor.unit = "(shared/naive)/floor"
