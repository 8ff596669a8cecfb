"""Fully connected classifiers: CS231n's TwoLayerNet and FullyConnectedNet."""

from __future__ import annotations

import numpy as np

from .. import _validate
from .. import layers as L
from ..layers.dropout import keep_probability
from ..losses import softmax_loss
from .base import Model

_ACTIVATIONS = {
    "relu": (L.relu_forward, L.relu_backward),
    "sigmoid": (L.sigmoid_forward, L.sigmoid_backward),
}


class TwoLayerNet(Model):
    """affine - relu (or sigmoid, as in I2DL) - affine - softmax.

    params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); weights N(0, weight_scale^2)
    (``weight_scale`` may also be "he" or "xavier").
    """

    reg_names = ("W1", "W2")

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3,
                 reg=0.0, activation="relu", dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        input_dim, hidden_dim, num_classes = self._sizes(input_dim=input_dim, hidden_dim=hidden_dim,
                                                         num_classes=num_classes)
        self.activation = _validate.choice("activation", activation, sorted(_ACTIVATIONS), fn=type(self).__name__)
        self.params = {
            "W1": self._weight((input_dim, hidden_dim), weight_scale, input_dim, hidden_dim),
            "b1": self._new(np.zeros(hidden_dim)),
            "W2": self._weight((hidden_dim, num_classes), weight_scale, hidden_dim, num_classes),
            "b2": self._new(np.zeros(num_classes)),
        }

    def loss(self, X, y=None):
        """Scores (N, C) when y is None, else (loss, grads)."""
        X = self._input(X)
        p = self.params
        act_forward, act_backward = _ACTIVATIONS[self.activation]
        a, fc1 = L.affine_forward(X, p["W1"], p["b1"])
        h, act = act_forward(a)
        scores, fc2 = L.affine_forward(h, p["W2"], p["b2"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dh, grads["W2"], grads["b2"] = L.affine_backward(dscores, fc2)
        _, grads["W1"], grads["b1"] = L.affine_backward(act_backward(dh, act), fc1, compute_dx=False)
        return self._regularize(loss, grads)


class FullyConnectedNet(Model):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    params: W1..WL, b1..bL, and gamma1..gamma(L-1), beta1..beta(L-1) with normalization.
    Weights N(0, weight_scale^2), or per layer "he" / "xavier" scaled.
    ``dropout_keep_ratio`` is the keep probability (1 = no dropout). ``seed`` makes the
    initialisation and the stream of dropout masks reproducible: masks differ from call to
    call (what training needs) and repeat from run to run. Set
    ``model.dropout_param['seed']`` to use one fixed mask on every call (CS231n's
    gradient-check trick; ``gpunet.compat.cs231n.FullyConnectedNet(seed=...)`` does this).
    """

    #: the dropout layer (the CS231n compat model swaps in its own seed convention)
    dropout_forward = staticmethod(L.dropout_forward)

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        fn = type(self).__name__
        if isinstance(hidden_dims, (str, bytes)) or not hasattr(hidden_dims, "__iter__"):
            raise _validate.ArgumentError(
                f"{fn}: hidden_dims must be a list of layer sizes such as [100, 50], got {hidden_dims!r}")
        hidden_dims = self._sizes(**{f"hidden_dims[{i}]": d for i, d in enumerate(hidden_dims)})
        input_dim, num_classes = self._sizes(input_dim=input_dim, num_classes=num_classes)
        self.normalization = _validate.choice("normalization", normalization, (None, "batchnorm", "layernorm"), fn=fn)
        keep = keep_probability(fn, "dropout_keep_ratio (the keep probability)", dropout_keep_ratio, self.dtype)
        self.use_dropout = keep != 1
        self.num_layers = len(hidden_dims) + 1
        self.reg_names = tuple(f"W{i}" for i in range(1, self.num_layers + 1))
        dims = [input_dim, *hidden_dims, num_classes]
        params = {}
        for i in range(1, self.num_layers + 1):
            params[f"W{i}"] = self._weight((dims[i - 1], dims[i]), weight_scale, dims[i - 1], dims[i])
            params[f"b{i}"] = self._new(np.zeros(dims[i]))
            if normalization and i < self.num_layers:
                params[f"gamma{i}"] = self._new(np.ones(dims[i]))
                params[f"beta{i}"] = self._new(np.zeros(dims[i]))
        self.params = params
        self.dropout_param = {"mode": "train", "p": keep, "rng": self.rng}
        self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)] if normalization else []
        if normalization == "batchnorm":
            for bn_param, d in zip(self.bn_params, hidden_dims):
                bn_param["running_mean"], bn_param["running_var"] = self._new(np.zeros(d)), self._new(np.ones(d))

    def loss(self, X, y=None):
        """Scores (N, C) when y is None, else (loss, grads)."""
        X = self._input(X)
        mode = "test" if y is None else "train"
        self.dropout_param["mode"] = mode
        for bn_param in self.bn_params:
            bn_param["mode"] = mode
        p, caches, out = self.params, [], X
        for i in range(1, self.num_layers):
            out, cache = self._hidden_forward(i, out)
            caches.append(cache)
        scores, last = L.affine_forward(out, p[f"W{self.num_layers}"], p[f"b{self.num_layers}"])
        if y is None:
            return scores
        loss, dout = softmax_loss(scores, y)
        grads = {}
        n = self.num_layers
        dout, grads[f"W{n}"], grads[f"b{n}"] = L.affine_backward(dout, last)
        for i in range(n - 1, 0, -1):
            dout = self._hidden_backward(i, dout, caches[i - 1], grads, compute_dx=i > 1)
        return self._regularize(loss, grads)

    def _hidden_forward(self, i, x):
        p = self.params
        if self.normalization is None:
            out, main = L.affine_relu_forward(x, p[f"W{i}"], p[f"b{i}"])
        else:
            a, fc = L.affine_forward(x, p[f"W{i}"], p[f"b{i}"])
            norm = L.batchnorm_forward if self.normalization == "batchnorm" else L.layernorm_forward
            an, nc = norm(a, p[f"gamma{i}"], p[f"beta{i}"], self.bn_params[i - 1])
            out, rc = L.relu_forward(an)
            main = (fc, nc, rc)
        drop = None
        if self.use_dropout:
            out, drop = self.dropout_forward(out, self.dropout_param)
        return out, (main, drop)

    def _hidden_backward(self, i, dout, cache, grads, compute_dx):
        main, drop = cache
        if drop is not None:
            dout = L.dropout_backward(dout, drop)
        if self.normalization is None:
            dx, grads[f"W{i}"], grads[f"b{i}"] = L.affine_relu_backward(dout, main, compute_dx)
            return dx
        fc, nc, rc = main
        norm_backward = L.batchnorm_backward_alt if self.normalization == "batchnorm" else L.layernorm_backward
        da, grads[f"gamma{i}"], grads[f"beta{i}"] = norm_backward(L.relu_backward(dout, rc), nc)
        dx, grads[f"W{i}"], grads[f"b{i}"] = L.affine_backward(da, fc, compute_dx)
        return dx

    def get_buffers(self) -> dict:
        if self.normalization != "batchnorm":
            return {}
        return {f"bn{i}.{key}": bn[key] for i, bn in enumerate(self.bn_params, start=1)
                for key in ("running_mean", "running_var")}

    def set_buffers(self, buffers: dict) -> None:
        super().set_buffers(buffers)
        for name, value in buffers.items():
            layer, _, key = name.partition(".")
            self.bn_params[int(layer[2:]) - 1][key] = value
