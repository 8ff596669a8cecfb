"""CS231n's ``cs231n/classifiers/fc_net.py``: TwoLayerNet and FullyConnectedNet, plus the
names of ``layers`` and ``layer_utils`` (the notebooks import them from here)."""

from __future__ import annotations

import numpy as np

from .... import _validate
from .... import models as _models
from ....backend.namespace import zeros
from ..layer_utils import *
from ..layers import *
from ..layers import dropout_forward as _course_dropout
from ._course_model import CourseModel


class TwoLayerNet(CourseModel, _models.TwoLayerNet):
    """affine - relu - affine - softmax, in float64 as in CS231n (whose TwoLayerNet has no
    dtype argument); params W1 (D, H), b1, W2 (H, C), b2."""

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0,
                 dtype=np.float64):
        super().__init__(input_dim, hidden_dim, num_classes, weight_scale, reg, dtype=dtype)


class FullyConnectedNet(CourseModel, _models.FullyConnectedNet):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    CS231n's conventions: ``dropout_keep_ratio`` keeps each unit with that probability and
    ``seed`` fixes the dropout mask (NumPy's global state is re-seeded before every mask, so
    every ``loss()`` call uses the same one, as the gradient checks need); batchnorm running
    statistics start at 0. The older keywords work too: ``dropout`` is the keep probability
    (its meaning since 2019; 1 = no dropout) and ``use_batchnorm=True`` is
    ``normalization='batchnorm'``.
    """

    dropout_forward = staticmethod(_course_dropout)

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None, *,
                 dropout=None, use_batchnorm=None):
        fn = type(self).__name__
        if dropout is not None:
            if dropout_keep_ratio != 1:
                raise _validate.ArgumentError(
                    f"{fn}: give dropout_keep_ratio or the older dropout, not both")
            dropout_keep_ratio = _validate.probability(
                "dropout (the keep probability since CS231n 2019, 1 = no dropout; it was the drop "
                "probability before)", dropout, fn=fn)
        if use_batchnorm is not None:
            if _validate.boolean("use_batchnorm", use_batchnorm, fn=fn) and normalization not in (None, "batchnorm"):
                raise _validate.ArgumentError(
                    f"{fn}: use_batchnorm=True contradicts normalization={normalization!r}; give one of them")
            normalization = "batchnorm" if use_batchnorm else normalization
        seed = _validate.integer("seed", seed, low=0, high=2**32 - 1, allow_none=True, fn=fn)
        super().__init__(hidden_dims, input_dim, num_classes, dropout_keep_ratio, normalization, reg,
                         weight_scale, dtype)
        self.dropout_param = {"mode": "train", "p": self.dropout_param["p"]}
        if seed is not None:
            self.dropout_param["seed"] = seed
        for bn_param in self.bn_params if normalization == "batchnorm" else ():
            rv = bn_param["running_var"]  # gpunet starts it at 1, CS231n at 0
            bn_param["running_var"] = zeros(rv.shape, like=rv)
