"""What both course layers share: NumPy's global random state as the courses use it,
losses read back as Python floats, and copies that leave the caller's arrays alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _validate
from .. import optim as _optim
from ..backend import get_array_module, to_numpy
from ..layers import dropout_forward as _dropout_forward


def global_rng() -> np.random.Generator:
    """A Generator drawing from NumPy's global state (``np.random.seed`` / ``np.random.rand``):
    its uniform draws are the ones ``np.random.rand`` would have made."""
    return np.random.Generator(np.random.get_bit_generator())  # type: ignore[attr-defined]


def seeded_dropout(fn: str, x, dropout_param: dict, keep_of: Callable[[Any], float]):
    """Inverted dropout as the courses draw it: ``keep_of(dropout_param['p'])`` is the keep
    probability; ``dropout_param['seed']`` re-seeds NumPy's global state before every mask
    (so every call uses the same mask), otherwise the mask comes from the global state as
    it stands. Returns out and the course's cache (dropout_param, mask)."""
    _validate.keys(fn, "dropout_param", dropout_param, {"p", "mode", "seed"}, {"p", "mode"})
    keep = keep_of(dropout_param["p"])
    if "seed" in dropout_param:
        np.random.seed(_validate.integer("dropout_param['seed']", dropout_param["seed"],
                                         low=0, high=2**32 - 1, fn=fn))
    out, (_, mask) = _dropout_forward(x, {"p": keep, "mode": dropout_param["mode"], "rng": global_rng()})
    return out, (dropout_param, mask)


def host_float(value) -> float:
    """A 0-d loss of any backend as a Python float (the courses' losses are floats)."""
    return float(to_numpy(value))


def copy(a):
    """A copy of array ``a`` on its own device."""
    return a.copy() if hasattr(a, "copy") else get_array_module(a).asarray(a, copy=True)


def copying_update(rule: str, w, dw, config):
    """gpunet's update rule ``rule`` applied to a copy of ``w`` and of the state arrays in
    ``config`` (replaced in config by the new state): ``(next_w, config)`` as the courses'
    rules return, the caller's arrays unchanged."""
    if isinstance(config, dict):
        for key in _optim.STATE_KEYS[rule]:
            if hasattr(config.get(key), "shape"):
                config[key] = copy(config[key])
    return _optim.UPDATE_RULES[rule](copy(w) if hasattr(w, "shape") else w, dw, config)
