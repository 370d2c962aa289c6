"""Layer-freezing subsets of an ``L``-layer network, written as masks (docs/CONTRACTS.md, "Models").

A mask is a string of ``0``/``1``, one character per layer, layer 1 first: ``"01000"`` re-trains
conv2 only. A *subset specification* is one of the named families or explicit masks separated by
commas:

=============  =====================================================  ============
spec           subsets                                                count
=============  =====================================================  ============
``singles``    one layer each                                         ``L``
``pairs``      every two layers                                       ``L(L-1)/2``
``all``        every non-empty subset                                 ``2^L - 1``
``prefixes``   layers 1..k, k = 1..L                                  ``L``
``suffixes``   layers k..L, k = 1..L                                  ``L``
masks          e.g. ``"10000,01100"``                                 as given
=============  =====================================================  ============

Families and masks combine with commas (``"singles,prefixes,suffixes"``: their union, duplicates
removed, in the family order below). :func:`random_elements` draws the capacity-matched control of
the sweep (a random set of parameter elements across all layers, as many as a subset re-trains).

    >>> select("singles", 3)
    ['100', '010', '001']
    >>> first_trainable("00110")       # 1-based; 0 for the all-zero mask (the base network)
    3

Order: a family's masks are sorted by first trainable layer, then by the mask read as a number
from layer 1 (descending, so ``100`` comes before ``011`` and ``010`` before ``001``); explicit
masks alone keep the given order with duplicates removed.
"""
from __future__ import annotations

import itertools

import numpy as np

from .errors import ConfigError

FAMILIES = ("singles", "pairs", "all", "prefixes", "suffixes")


def _accepted(layers: int) -> str:
    return (f"accepted are {', '.join(FAMILIES)} or comma-separated masks of {layers} characters 0/1 "
            f"(layer 1 first, at least one 1), e.g. {'1' + '0' * (layers - 1)!r}")


def check_mask(mask: str, layers: int, field: str = "transfer.subsets") -> str:
    """``mask`` stripped and validated for an ``layers``-layer network; ConfigError otherwise."""
    m = mask.strip() if isinstance(mask, str) else mask
    if not isinstance(m, str) or len(m) != layers or set(m) - {"0", "1"}:
        length = len(m) if isinstance(m, str) else "?"
        raise ConfigError(f"{field} contains {mask!r} (length {length}): {_accepted(layers)}", field=field)
    if "1" not in m:
        raise ConfigError(f"{field} contains {mask!r}: a mask must re-train at least one layer; "
                          f"{_accepted(layers)}", field=field)
    return m


def _key(mask: str) -> tuple:
    return first_trainable(mask), [-int(c) for c in mask]


def select(spec: str, layers: int, field: str = "transfer.subsets") -> list[str]:
    """The masks of a subset specification for an ``layers``-layer network (ConfigError if invalid)."""
    if not isinstance(layers, int) or layers < 1:
        raise ConfigError(f"layers = {layers!r}: must be an integer >= 1", field="model.layers")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{field} = {spec!r}: {_accepted(layers)}", field=field)
    parts = [p.strip() for p in spec.split(",")]
    if not any(p in FAMILIES for p in parts):  # explicit masks only: the given order
        seen = {}
        for part in parts:
            seen.setdefault(check_mask(part, layers, field), None)
        return list(seen)
    out: dict = {}
    for part in parts:
        for m in (_family(part, layers) if part in FAMILIES else [check_mask(part, layers, field)]):
            out.setdefault(m, None)
    return sorted(out, key=_key)


def _family(name: str, L: int) -> list[str]:
    if name == "singles":
        return ["".join("1" if i == k else "0" for i in range(L)) for k in range(L)]
    if name == "pairs":
        return ["".join("1" if i in (a, b) else "0" for i in range(L)) for a, b in itertools.combinations(range(L), 2)]
    if name == "all":
        return ["".join(b) for b in itertools.product("01", repeat=L) if "1" in b]
    if name == "prefixes":
        return ["1" * k + "0" * (L - k) for k in range(1, L + 1)]
    return ["0" * k + "1" * (L - k) for k in range(L)]  # suffixes


def random_elements(sizes: list[int], k: int, seed: int) -> list[np.ndarray]:
    """The capacity-matched control: ``k`` parameter elements drawn uniformly without replacement
    from all ``sum(sizes)`` elements of the network (every layer, weights and biases), as one boolean
    array per parameter tensor (flattened, of length ``sizes[i]``). Seeded by ``seed`` alone."""
    total = int(sum(sizes))
    if not 0 < k <= total:
        raise ValueError(f"k = {k}: must be in 1..{total}")
    flat = np.zeros(total, dtype=bool)
    flat[np.random.default_rng(seed).choice(total, size=k, replace=False)] = True
    return np.split(flat, np.cumsum(sizes)[:-1])


def first_trainable(mask: str) -> int:
    """1-based index of the first re-trained layer; 0 when nothing is re-trained."""
    return mask.index("1") + 1 if "1" in mask else 0


def n_trained(mask: str) -> int:
    """Number of re-trained layers."""
    return mask.count("1")


def full(layers: int) -> str:
    """Every layer trained (the from-scratch reference)."""
    return "1" * layers


def none(layers: int) -> str:
    """No layer trained (the base-network reference)."""
    return "0" * layers
