"""The CS231n conventions every course model adds to its gpunet model."""

from __future__ import annotations

import numpy as np

from ..._course import host_float


class CourseModel:
    """Mixed in before a :class:`gpunet.models.Model`: the initial weights come from NumPy's
    global state (``np.random.randn``, so ``np.random.seed`` gives the course's weights) and
    ``loss(X, y)`` returns the loss as a Python float."""

    def _standard_normal(self, shape) -> np.ndarray:
        return np.random.randn(*shape)

    def loss(self, X, y=None):
        """Scores (N, C) when y is None, else (loss as a float, grads)."""
        out = super().loss(X, y)
        if y is None:
            return out
        loss, grads = out
        return host_float(loss), grads
