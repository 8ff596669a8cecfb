"""Inverted dropout: keep each unit with probability p and scale it by 1/p in training,
so test mode is the identity."""

from __future__ import annotations

import numpy as np

from .. import _validate
from ..backend import get_ops
from ..backend.ops import host_dtype

__all__ = ["dropout_backward", "dropout_forward"]

_KEYS = {"p", "mode", "seed", "rng"}


def dropout_forward(x, dropout_param):
    """Inverted dropout of x (any shape).

    dropout_param: 'p' keep probability in (0, 1]; 'mode' 'train'|'test'; optional
    'seed' (int >= 0: the same mask every call, as CS231n for gradient checks, without
    touching NumPy's global RNG; wins over 'rng') or 'rng' (a numpy Generator the mask is
    drawn from, so masks differ from call to call).
    Returns out (shape of x) and cache (dropout_param, mask); mask is None in test mode.
    """
    fn = "dropout_forward"
    _validate.keys(fn, "dropout_param", dropout_param, _KEYS, {"p", "mode"})
    mode = _validate.mode(fn, "dropout_param", dropout_param)
    source = _mask_source(fn, dropout_param)
    xp = _validate.float_inputs(fn, x=x)
    p = keep_probability(fn, "dropout_param['p'] (the keep probability)", dropout_param["p"], x.dtype)
    if mode == "test" or p == 1:
        return x, (dropout_param, None)
    u = get_ops(xp).uniform(tuple(x.shape), like=x, seed=source)
    mask = xp.astype(u < p, x.dtype) / p
    return x * mask, (dropout_param, mask)


def keep_probability(fn: str, name: str, p, dtype) -> float:
    """``p`` as a keep probability in (0, 1] whose scale 1/p of the kept units is finite in
    ``dtype`` (float16/32/64; 1e-300 is not a float32 keep probability)."""
    p = _validate.probability(name, p, fn=fn)
    biggest = float(np.finfo(host_dtype(dtype)).max)
    if 1 / p > biggest:
        raise _validate.ArgumentError(f"{fn}: {name} = {p:g} is too small for {host_dtype(dtype).name} "
                                      f"(1/p overflows); use p >= {1 / biggest:.3g}")
    return p


def _mask_source(fn: str, dropout_param):
    """The seed or Generator the mask is drawn from (None: fresh entropy); both are checked."""
    rng = dropout_param.get("rng")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise _validate.ArgumentError(
            f"{fn}: dropout_param['rng'] must be a numpy.random.Generator, got {rng!r}; for the "
            "same mask on every call use dropout_param['seed'] instead"
        )
    if "seed" in dropout_param:
        return _validate.integer("dropout_param['seed']", dropout_param["seed"], low=0, fn=fn)
    return rng


def dropout_backward(dout, cache):
    """dx = dout * mask (training) or dout (test mode)."""
    _, mask = cache
    if mask is None:
        _validate.float_inputs("dropout_backward", dout=dout)
        return dout
    _validate.float_inputs("dropout_backward", dout=dout, x=mask)  # the mask is x's dtype and backend
    _validate.shape("dropout_backward", "dout", dout, mask.shape, "the shape of x")
    return dout * mask
