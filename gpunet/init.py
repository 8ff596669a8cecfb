"""Weight initialisation and random generators.

Weights are drawn on the host with a seeded NumPy Generator and then placed on the
current backend, so the same seed gives the same weights on every backend. Every random
draw in gpunet goes through a Generator the caller owns (a model's ``rng``, a Solver's),
never NumPy's global state."""

from __future__ import annotations

import math

import numpy as np

from .backend import asarray


def as_rng(rng) -> np.random.Generator:
    """A numpy Generator from a Generator (returned as is), an int seed or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def weight_std(init, fan_in: int, fan_out: int) -> float:
    """Standard deviation of a normal init: "he" sqrt(2/fan_in) (ReLU nets), "xavier"
    sqrt(2/(fan_in+fan_out)) (Glorot), or a number used as is (CS231n's weight_scale)."""
    if init == "he":
        return math.sqrt(2.0 / fan_in)
    if init == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if isinstance(init, (int, float)) and not isinstance(init, bool) and init >= 0:
        return float(init)
    raise ValueError(f"init must be 'he', 'xavier' or a standard deviation >= 0, got {init!r}")


def normal(shape, std: float, rng, dtype):
    """N(0, std^2) weights of ``shape`` on the current backend."""
    return asarray(as_rng(rng).standard_normal(shape) * std, dtype=dtype)


def constant(shape, value: float, dtype):
    return asarray(np.full(shape, value), dtype=dtype)
