"""Weight initialisation and random generators.

Weights are drawn on the host with a seeded NumPy Generator and then placed on the
current backend, so the same seed gives the same weights on every backend. Every random
draw in gpunet goes through a Generator the caller owns (a model's ``rng``, a Solver's),
never NumPy's global state."""

from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np

from . import _validate
from .backend import asarray
from .backend.geometry import MAX_ELEMENTS


def as_rng(rng, name: str = "seed", fn: str | None = None) -> np.random.Generator:
    """A numpy Generator from a Generator (returned as is), a seed (int >= 0 or SeedSequence)
    or None (fresh entropy); ``name`` and ``fn`` name the argument in the error."""
    rng = _validate.seed(name, rng, fn=fn)
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def weight_std(init, fan_in: int, fan_out: int, name: str = "init", fn: str | None = None) -> float:
    """Standard deviation of a normal init: "he" sqrt(2/fan_in) (ReLU nets), "xavier"
    sqrt(2/(fan_in+fan_out)) (Glorot), or a number >= 0 used as is (CS231n's weight_scale)."""
    if not isinstance(init, str):
        return _validate.real(name, init, low=0.0, fn=fn)
    if _validate.choice(name, init, ("he", "xavier"), fn=fn) == "he":
        return math.sqrt(2.0 / fan_in)
    return math.sqrt(2.0 / (fan_in + fan_out))


_budget: contextvars.ContextVar = contextvars.ContextVar("gpunet_parameter_budget", default=None)


@contextlib.contextmanager
def parameter_budget(elements: int, what: str):
    """Within the block, new parameters (:func:`check_shape`) may hold at most ``elements``
    numbers in all (``what`` says where the limit comes from): building a model from a file's
    description allocates no more than the file holds."""
    token = _budget.set([elements, what])
    try:
        yield
    finally:
        _budget.reset(token)


def check_shape(shape, fn: str | None = None) -> tuple:
    """``shape`` of new parameters, refused when no array could hold that many elements (or
    when they pass the :func:`parameter_budget` in force)."""
    n, where = math.prod(shape), f"{fn}: " if fn else ""
    if n > MAX_ELEMENTS:
        raise _validate.ArgumentError(
            f"{where}parameters of shape {tuple(shape)} ({n:.3g} elements) are more than any array "
            "can hold; use smaller sizes")
    budget = _budget.get()
    if budget is not None:
        if n > budget[0]:
            raise _validate.ArgumentError(
                f"{where}parameters of shape {tuple(shape)} ({n:.3g} elements) are more than "
                f"{budget[1]}; the sizes do not fit")
        budget[0] -= n
    return tuple(shape)


def normal(shape, std: float, rng, dtype):
    """N(0, std^2) weights of ``shape`` on the current backend."""
    return asarray(as_rng(rng).standard_normal(check_shape(shape)) * std, dtype=dtype)


def constant(shape, value: float, dtype):
    return asarray(np.full(check_shape(shape), value), dtype=dtype)
