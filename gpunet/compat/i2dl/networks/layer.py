"""I2DL's ``networks/layer.py``: the affine layer (dw and db averaged over the batch, as
exercise 5's solution), sigmoid functions, and activation layers as objects with
``forward(x) -> (out, cache)`` and ``backward(dout, cache) -> dx``."""

from __future__ import annotations

from .... import layers as _L
from ....layers import affine_forward, sigmoid_backward, sigmoid_forward

__all__ = ["LeakyRelu", "Relu", "Sigmoid", "Tanh", "affine_backward", "affine_forward",
           "sigmoid_backward", "sigmoid_forward"]


def affine_backward(dout, cache):
    """dx (shape of x), and dw (D, M), db (M,) averaged over the N samples of dout (N, M)."""
    dx, dw, db = _L.affine_backward(dout, cache)
    n = max(dout.shape[0], 1)
    return dx, dw / n, db / n


class Sigmoid:
    """1 / (1 + exp(-x)); the cache is the output."""

    def forward(self, x):
        return _L.sigmoid_forward(x)

    def backward(self, dout, cache):
        return _L.sigmoid_backward(dout, cache)


class Relu:
    """max(x, 0); the cache is the input."""

    def forward(self, x):
        return _L.relu_forward(x)

    def backward(self, dout, cache):
        return _L.relu_backward(dout, cache)


class LeakyRelu:
    """x for x > 0, else slope * x."""

    def __init__(self, slope: float = 0.01):
        self.slope = slope

    def forward(self, x):
        return _L.leaky_relu_forward(x, self.slope)

    def backward(self, dout, cache):
        return _L.leaky_relu_backward(dout, cache)


class Tanh:
    """tanh(x); the cache is the output."""

    def forward(self, x):
        return _L.tanh_forward(x)

    def backward(self, dout, cache):
        return _L.tanh_backward(dout, cache)
