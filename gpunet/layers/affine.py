"""Affine (fully connected) layer: out = x.reshape(N, D) @ w + b."""

from __future__ import annotations

import math

from .. import _validate
from ..backend import get_ops

__all__ = ["affine_backward", "affine_forward"]


def affine_forward(x, w, b):
    """Forward pass of an affine layer.

    x: (N, d_1, ..., d_k), w: (D, M) with D = d_1*...*d_k, b: (M,).
    Returns out (N, M) and cache (x, w, b).
    """
    xp = _validate.float_inputs("affine_forward", x=x, w=w, b=b)
    x2 = _flat(xp, "affine_forward", x, w, b)
    out = xp.matmul(x2, w)
    out += b  # in place on the fresh product: no second (N, M) array
    return out, (x, w, b)


def affine_backward(dout, cache, compute_dx: bool = True):
    """Backward pass of an affine layer.

    dout: (N, M); cache from :func:`affine_forward`. Returns dx (shape of x; ``None``
    when ``compute_dx`` is False, e.g. for a model's first layer), dw (D, M), db (M,).
    """
    x, w, b = cache
    xp = _validate.float_inputs("affine_backward", dout=dout, x=x, w=w)
    _validate.shape("affine_backward", "dout", dout, (x.shape[0], w.shape[1]), "N, M of the forward pass")
    return affine_grads(xp, dout, cache, compute_dx)


def affine_grads(xp, dout, cache, compute_dx: bool = True):
    """:func:`affine_backward` after its checks, for a dout (N, M) a sandwich layer made itself."""
    x, w, b = cache
    x2 = _flat(xp, "affine_backward", x, w, b)
    dw = get_ops(xp).matmul_tn(x2, dout)  # x2.T @ dout; NumPy's matmul misses BLAS at N = 1
    db = xp.sum(dout, axis=0)
    dx = xp.reshape(xp.matmul(dout, w.T), x.shape) if compute_dx else None
    return dx, dw, db


def _flat(xp, fn: str, x, w, b):
    if x.ndim < 2:
        raise ValueError(
            f"{fn}: x must have shape (N, d_1, ..., d_k) with at least 2 dimensions, got "
            f"{tuple(x.shape)}; for one sample use x[None]"
        )
    n, d = x.shape[0], math.prod(x.shape[1:])
    _validate.ndim(fn, "w", w, 2, "(D, M)")
    if w.shape[0] != d:
        raise ValueError(
            f"{fn}: w must have shape (D, M) with D = {d} = prod(x.shape[1:]) for x of shape "
            f"{tuple(x.shape)}, got w.shape = {tuple(w.shape)}"
        )
    _validate.shape(fn, "b", b, (w.shape[1],), "M = w.shape[1]")
    return xp.reshape(x, (n, d))
