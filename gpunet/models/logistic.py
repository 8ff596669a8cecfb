"""I2DL's logistic classifier: affine - sigmoid - binary cross-entropy."""

from __future__ import annotations

import numpy as np

from .. import _validate
from .. import layers as L
from ..backend import get_array_module
from ..losses import bce_with_logits_loss
from .base import Model


class LogisticClassifier(Model):
    """p(y=1 | x) = sigmoid(x @ W + b) with W (D, 1), b (1,).

    ``loss(X)`` returns scores (N, 2) = [1 - p, p], so argmax is the predicted class
    like any classifier here; ``predict_proba(X)`` returns p (N,). Training uses the
    binary cross-entropy of sigmoid(z) in its fused, overflow-free form (same value and
    gradient as sigmoid followed by BCE, without the clipping).
    """

    reg_names = ("W",)

    def __init__(self, num_features, weight_scale=1e-3, reg=0.0, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        (num_features,) = self._sizes(num_features=num_features)
        self.params = {"W": self._weight((num_features, 1), weight_scale, num_features, 1),
                       "b": self._new(np.zeros(1))}

    def predict_proba(self, X):
        """p(y = 1 | x) of shape (N,)."""
        z, _ = L.affine_forward(self._input(X), self.params["W"], self.params["b"])
        p, _ = L.sigmoid_forward(z)
        return get_array_module(p).reshape(p, (p.shape[0],))

    def loss(self, X, y=None):
        """Scores (N, 2) when y is None, else (loss, grads) for labels y in {0, 1} (N,)."""
        X = self._input(X)
        z, cache = L.affine_forward(X, self.params["W"], self.params["b"])
        xp = get_array_module(z)
        if y is None:
            p, _ = L.sigmoid_forward(z)
            return xp.concat([1 - p, p], axis=1)
        _validate.labels("LogisticClassifier.loss", "y", y, X.shape[0])
        xp = get_array_module(z, y)  # arrays of two backends: the TypeError naming both
        target = xp.reshape(xp.astype(y, z.dtype), z.shape)
        loss, dz = bce_with_logits_loss(z, target)
        grads = {}
        _, grads["W"], grads["b"] = L.affine_backward(dz, cache, compute_dx=False)
        return self._regularize(loss, grads)
