"""Sandwich layers (CS231n ``layer_utils``): common sequences as one forward/backward."""

from __future__ import annotations

from .. import _validate
from ..backend import get_ops
from . import conv as _conv
from .activations import relu_backward, relu_forward
from .affine import _flat, affine_grads
from .conv import checked_inputs, conv_backward, conv_forward
from .normalization import spatial_batchnorm_backward, spatial_batchnorm_forward
from .pooling import pool_geometry

__all__ = [
    "affine_relu_backward",
    "affine_relu_forward",
    "conv_bn_relu_backward",
    "conv_bn_relu_forward",
    "conv_relu_backward",
    "conv_relu_forward",
    "conv_relu_pool_backward",
    "conv_relu_pool_forward",
]


def affine_relu_forward(x, w, b):
    """relu(x.reshape(N, D) @ w + b), the bias add and ReLU fused. Returns out (N, M), cache."""
    xp = _validate.float_inputs("affine_relu_forward", x=x, w=w, b=b)
    out = get_ops(xp).bias_relu(xp.matmul(_flat(xp, "affine_relu_forward", x, w, b), w), b)
    return out, ((x, w, b), out)


def affine_relu_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx, dw, db) of :func:`affine_relu_forward`."""
    fc_cache, out = cache
    xp = _validate.float_inputs("relu_backward", dout=dout, x=out)  # relu_backward's checks
    _validate.shape("relu_backward", "dout", dout, out.shape, "the shape of x")
    return affine_grads(xp, get_ops(xp).relu_backward(dout, out), fc_cache, compute_dx)


def conv_relu_forward(x, w, b, conv_param):
    """relu(conv(x)). Returns out (N, F, OH, OW) and cache.

    One primitive, ``get_ops(xp).conv_relu_forward`` (NumPy: ReLU of each chunk of the
    convolution while it is in cache).
    """
    xp, geo = checked_inputs("conv_forward", x, w, b, conv_param)
    s, saved = get_ops(xp).conv_relu_forward(x, w, b, geo, _conv.get_column_budget())
    return s, ((w, geo, saved), s)


def conv_relu_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx, dw, db) of :func:`conv_relu_forward`."""
    (w, geo, saved), s = cache
    xp = _validate.float_inputs("relu_backward", dout=dout, x=s)  # relu_backward's checks
    _validate.shape("relu_backward", "dout", dout, s.shape, "the shape of x")
    return get_ops(xp).conv_relu_backward(dout, s, w, geo, saved, compute_dx, _conv.get_column_budget())


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """max_pool(relu(conv(x))). Returns out and cache (the caches of the three layers).

    One primitive, ``get_ops(xp).conv_relu_pool_forward``, so that a backend can fuse the
    three (NumPy: ReLU and pooling of each chunk of the convolution while it is in cache).
    """
    xp, geo = checked_inputs("conv_forward", x, w, b, conv_param)
    pool = pool_geometry("max_pool_forward", geo.out_shape, pool_param)
    s, out, saved = get_ops(xp).conv_relu_pool_forward(x, w, b, geo, pool, _conv.get_column_budget())
    return out, ((w, geo, saved), s, (s, out, pool))


def conv_relu_pool_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx, dw, db) of :func:`conv_relu_pool_forward`."""
    (w, geo, saved), s, (_, out, pool) = cache
    xp = _validate.float_inputs("max_pool_backward", dout=dout, x=s)
    _validate.shape("max_pool_backward", "dout", dout, out.shape, "(N, C, OH, OW) of the forward pass")
    return get_ops(xp).conv_relu_pool_backward(dout, s, out, w, geo, pool, saved, compute_dx,
                                               _conv.get_column_budget())


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """relu(spatial_batchnorm(conv(x))). Returns out and cache."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx, dw, db, dgamma, dbeta) of :func:`conv_bn_relu_forward`."""
    conv_cache, bn_cache, relu_cache = cache
    dan, dgamma, dbeta = spatial_batchnorm_backward(relu_backward(dout, relu_cache), bn_cache)
    dx, dw, db = conv_backward(dan, conv_cache, compute_dx)
    return dx, dw, db, dgamma, dbeta
