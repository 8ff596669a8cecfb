"""CS231n's ``cs231n/classifiers/cnn.py``: ThreeLayerConvNet, plus the names of ``layers``,
``fast_layers`` and ``layer_utils``."""

from __future__ import annotations

import numpy as np

from .... import models as _models
from ..fast_layers import *
from ..layer_utils import *
from ..layers import *
from ._course_model import CourseModel


class ThreeLayerConvNet(CourseModel, _models.ThreeLayerConvNet):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax (float32 by default, as
    CS231n; pass dtype=np.float64 for gradient checks)."""

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32):
        super().__init__(input_dim, num_filters, filter_size, hidden_dim, num_classes, weight_scale, reg, dtype)
