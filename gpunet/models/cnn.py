"""CS231n's ThreeLayerConvNet: conv - relu - 2x2 max pool - affine - relu - affine - softmax."""

from __future__ import annotations

import numpy as np

from .. import _validate
from .. import layers as L
from ..losses import softmax_loss
from .base import Model


class ThreeLayerConvNet(Model):
    """params: W1 (F, C, fs, fs), b1 (F,), W2 (F*H/2*W/2, hidden), b2, W3 (hidden, classes), b3.

    The convolution keeps the spatial size (stride 1, pad (fs - 1) / 2, fs odd); the pool
    halves it (H and W must be even). ``weight_scale``: a standard deviation, "he" or "xavier".
    """

    reg_names = ("W1", "W2", "W3")

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
            raise _validate.ArgumentError(
                f"ThreeLayerConvNet: input_dim must be (C, H, W), e.g. (3, 32, 32), got {input_dim!r}")
        c, h, w, num_filters, filter_size, hidden_dim, num_classes = self._sizes(
            **{"input_dim[0]": input_dim[0], "input_dim[1]": input_dim[1], "input_dim[2]": input_dim[2]},
            num_filters=num_filters, filter_size=filter_size, hidden_dim=hidden_dim, num_classes=num_classes)
        if filter_size % 2 == 0:
            raise _validate.ArgumentError(
                f"ThreeLayerConvNet: filter_size must be odd so padding keeps the size, got {filter_size}")
        if h % 2 or w % 2:
            raise _validate.ArgumentError(
                f"ThreeLayerConvNet: input_dim (C, H, W) must have an even height and width for the 2x2 "
                f"pool, got {h}x{w}")
        fan_conv = c * filter_size * filter_size
        flat = num_filters * (h // 2) * (w // 2)
        self.conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        self.pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        self.params = {
            "W1": self._weight((num_filters, c, filter_size, filter_size), weight_scale, fan_conv,
                               num_filters * filter_size * filter_size),
            "b1": self._new(np.zeros(num_filters)),
            "W2": self._weight((flat, hidden_dim), weight_scale, flat, hidden_dim),
            "b2": self._new(np.zeros(hidden_dim)),
            "W3": self._weight((hidden_dim, num_classes), weight_scale, hidden_dim, num_classes),
            "b3": self._new(np.zeros(num_classes)),
        }

    def loss(self, X, y=None):
        """Scores (N, C) for X (N, C, H, W) when y is None, else (loss, grads)."""
        X = self._input(X)
        p = self.params
        a1, c1 = L.conv_relu_pool_forward(X, p["W1"], p["b1"], self.conv_param, self.pool_param)
        a2, c2 = L.affine_relu_forward(a1, p["W2"], p["b2"])
        scores, c3 = L.affine_forward(a2, p["W3"], p["b3"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads = {}
        da2, grads["W3"], grads["b3"] = L.affine_backward(dscores, c3)
        da1, grads["W2"], grads["b2"] = L.affine_relu_backward(da2, c2)
        _, grads["W1"], grads["b1"] = L.conv_relu_pool_backward(da1, c1, compute_dx=False)
        return self._regularize(loss, grads)
