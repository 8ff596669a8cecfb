"""I2DL's ``networks/classifier.py``: logistic regression y = sigmoid([X, 1] @ W)."""

from __future__ import annotations

import numpy as np

from .... import _validate
from .... import layers as _L
from ....backend import asarray, get_array_module
from .base_networks import Network

__all__ = ["Classifier"]


class Classifier(Network):
    """y = sigmoid(X @ W[:-1] + W[-1]) for X (N, D): W (D + 1, 1) holds the bias as its last
    row (I2DL appends a column of ones to X). ``forward(X)`` -> (N, 1); ``backward(dout)``
    -> dW (D + 1, 1), the gradient of sum(dout * y) (a mean loss's dout carries the 1/N)."""

    def __init__(self, num_features=2):
        super().__init__("classifier")
        self.num_features = _validate.integer("num_features", num_features, low=1, fn="Classifier")
        self.W = None
        self.initialize_weights()

    def initialize_weights(self, weights=None):
        """W from ``weights`` (shape (num_features + 1, 1)), else N(0, 0.001^2) draws from
        NumPy's global state."""
        shape = (self.num_features + 1, 1)
        if weights is None:
            weights = asarray(0.001 * np.random.randn(*shape))
        elif tuple(getattr(weights, "shape", ())) != shape:
            raise _validate.ArgumentError(
                f"Classifier.initialize_weights: weights must have shape (num_features + 1, 1) = {shape}, "
                f"got {getattr(weights, 'shape', type(weights).__name__)}")
        self.W = weights

    def forward(self, X):
        if self.W is None:
            raise RuntimeError("Classifier: W is not initialized; call initialize_weights() first")
        z, affine_cache = _L.affine_forward(X, self.W[:-1, ...], self.W[-1, ...])
        y, sigmoid_cache = _L.sigmoid_forward(z)
        self.cache = (affine_cache, sigmoid_cache)
        return y

    def backward(self, dout):
        if self.cache is None:
            raise RuntimeError("Classifier.backward called before forward")
        affine_cache, sigmoid_cache = self.cache
        _, dw, db = _L.affine_backward(_L.sigmoid_backward(dout, sigmoid_cache), affine_cache, compute_dx=False)
        xp = get_array_module(dw)
        return xp.concat([dw, xp.reshape(db, (1, 1))], axis=0)

    def sigmoid(self, x):
        """1 / (1 + exp(-x)) elementwise, of an array or a Python number (as a 0-d float64 array)."""
        if type(x) in (int, float):
            x = asarray(np.float64(x))
        return _L.sigmoid_forward(x)[0]
