"""Inverted dropout: keep each unit with probability p and scale it by 1/p in training,
so test mode is the identity."""

from __future__ import annotations

from ..backend import get_ops
from .. import _validate

_KEYS = {"p", "mode", "seed", "rng"}


def dropout_forward(x, dropout_param):
    """Inverted dropout of x (any shape).

    dropout_param: 'p' keep probability in (0, 1]; 'mode' 'train'|'test'; optional
    'seed' (int: the same mask every call, as CS231n for gradient checks, without
    touching NumPy's global RNG) or 'rng' (a numpy Generator the mask is drawn from).
    Returns out (shape of x) and cache (dropout_param, mask); mask is None in test mode.
    """
    fn = "dropout_forward"
    _validate.keys(fn, "dropout_param", dropout_param, _KEYS, {"p", "mode"})
    mode = _validate.mode(fn, "dropout_param", dropout_param)
    p = dropout_param["p"]
    if not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(
            f"{fn}: dropout_param['p'] is the keep probability and must be in (0, 1], got {p!r}"
        )
    xp = _validate.float_inputs(fn, x=x)
    if mode == "test" or p == 1:
        return x, (dropout_param, None)
    source = dropout_param.get("seed", dropout_param.get("rng"))
    u = get_ops(xp).uniform(tuple(x.shape), like=x, seed=source)
    mask = xp.astype(u < p, x.dtype) / p
    return x * mask, (dropout_param, mask)


def dropout_backward(dout, cache):
    """dx = dout * mask (training) or dout (test mode)."""
    _, mask = cache
    _validate.float_inputs("dropout_backward", dout=dout)
    if mask is None:
        return dout
    _validate.shape("dropout_backward", "dout", dout, mask.shape, "the shape of x")
    return dout * mask
