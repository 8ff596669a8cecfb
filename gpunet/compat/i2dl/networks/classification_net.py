"""I2DL's ``networks/classification_net.py``: a fully connected classifier of any depth
with a configurable activation object and L2 regularisation reg * sum(W**2)."""

from __future__ import annotations

import numpy as np

from .... import _validate
from .... import layers as _L
from ....backend import asarray, get_array_module
from .base_networks import Network
from .layer import Sigmoid

__all__ = ["ClassificationNet"]


class ClassificationNet(Network):
    """{affine - activation} x (num_layer - 1) - affine. params W1..W{num_layer},
    b1..b{num_layer}, weights N(0, std^2) drawn from NumPy's global state.
    ``forward(X)`` -> scores (N, num_classes); ``backward(dy)`` fills and returns ``grads``
    (the gradient of sum(dy * scores) plus 2 * reg * W; a mean loss's dy carries the 1/N)."""

    def __init__(self, activation=None, num_layer=2, input_size=3 * 32 * 32, hidden_size=100,
                 std=1e-3, num_classes=10, reg=0, **kwargs):
        super().__init__("cifar10_classification_net")
        fn = "ClassificationNet"
        self.activation = Sigmoid() if activation is None else activation
        self.num_layer = _validate.integer("num_layer", num_layer, low=1, fn=fn)
        sizes = [_validate.integer(name, v, low=1, fn=fn) for name, v in
                 (("input_size", input_size), ("hidden_size", hidden_size), ("num_classes", num_classes))]
        self.reg_strength = _validate.real("reg", reg, low=0.0, fn=fn)
        std = _validate.real("std", std, low=0.0, fn=fn)
        dims = [sizes[0]] + [sizes[1]] * (self.num_layer - 1) + [sizes[2]]
        self.params = {}
        for i in range(1, self.num_layer + 1):
            self.params[f"W{i}"] = asarray(std * np.random.randn(dims[i - 1], dims[i]))
            self.params[f"b{i}"] = asarray(np.zeros(dims[i]))
        self.grads = {name: 0.0 for name in self.params}
        self.reg = {}

    def forward(self, X):
        xp = get_array_module(X)
        out = xp.reshape(X, (X.shape[0], -1))
        self.cache, self.reg = {}, {}
        for i in range(1, self.num_layer + 1):
            w = self.params[f"W{i}"]
            out, self.cache[f"affine{i}"] = _L.affine_forward(out, w, self.params[f"b{i}"])
            self.reg[f"W{i}"] = self.reg_strength * xp.sum(w * w)
            if i < self.num_layer:
                out, self.cache[f"activation{i}"] = self.activation.forward(out)
        return out

    def backward(self, dy):
        if not self.cache:
            raise RuntimeError("ClassificationNet.backward called before forward")
        dout = dy
        for i in range(self.num_layer, 0, -1):
            if i < self.num_layer:
                dout = self.activation.backward(dout, self.cache[f"activation{i}"])
            dout, dw, self.grads[f"b{i}"] = _L.affine_backward(dout, self.cache[f"affine{i}"], compute_dx=i > 1)
            self.grads[f"W{i}"] = dw + 2 * self.reg_strength * self.params[f"W{i}"]
        return self.grads
