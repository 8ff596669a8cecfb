"""Elementwise activations. Backward passes go through ``get_ops(xp)`` so CuPy runs
the custom kernels in ``gpunet/cuda/activations.py``; the generic math is in
``gpunet/backend/ops.py``."""

from __future__ import annotations

from .. import _validate
from ..backend import get_ops

__all__ = [
    "leaky_relu_backward",
    "leaky_relu_forward",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "tanh_backward",
    "tanh_forward",
]


def relu_forward(x):
    """max(x, 0) of any shape. Returns out and cache x."""
    xp = _validate.float_inputs("relu_forward", x=x)
    return xp.maximum(x, 0.0), x


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (0 at the kink x = 0, as PyTorch)."""
    x = cache
    xp = _validate.float_inputs("relu_backward", dout=dout, x=x)
    _validate.shape("relu_backward", "dout", dout, x.shape, "the shape of x")
    return get_ops(xp).relu_backward(dout, x)


def leaky_relu_forward(x, negative_slope: float = 0.01):
    """x where x > 0, else negative_slope * x. Returns out and cache (x, negative_slope)."""
    xp = _validate.float_inputs("leaky_relu_forward", x=x)
    slope = _validate.real("negative_slope", negative_slope, low=0.0, fn="leaky_relu_forward")
    return xp.where(x > 0, x, x * slope), (x, slope)


def leaky_relu_backward(dout, cache):
    """dx = dout where x > 0, else negative_slope * dout."""
    x, slope = cache
    xp = _validate.float_inputs("leaky_relu_backward", dout=dout, x=x)
    _validate.shape("leaky_relu_backward", "dout", dout, x.shape, "the shape of x")
    return get_ops(xp).leaky_relu_backward(dout, x, slope)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), accurate on both tails, no overflow. Returns out and cache out."""
    xp = _validate.float_inputs("sigmoid_forward", x=x)
    out = get_ops(xp).sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """dx = dout * y * (1 - y) from the saved output y."""
    y = cache
    xp = _validate.float_inputs("sigmoid_backward", dout=dout, y=y)
    _validate.shape("sigmoid_backward", "dout", dout, y.shape, "the shape of x")
    return get_ops(xp).sigmoid_backward(dout, y)


def tanh_forward(x):
    """tanh(x). Returns out and cache out."""
    xp = _validate.float_inputs("tanh_forward", x=x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """dx = dout * (1 - y**2) from the saved output y."""
    y = cache
    _validate.float_inputs("tanh_backward", dout=dout, y=y)
    _validate.shape("tanh_backward", "dout", dout, y.shape, "the shape of x")
    return dout * (1 - y * y)
