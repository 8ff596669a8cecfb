"""I2DL's batchnorm/dropout exercise (``exercise_code/layers.py``): CS231n's batch
normalization (running statistics starting at 0) and dropout whose ``p`` is the DROP
probability."""

from __future__ import annotations

from ... import _validate
from ...layers import (
    batchnorm_backward,
    batchnorm_backward_alt,
    dropout_backward,
    spatial_batchnorm_backward,
)
from .._course import seeded_dropout
from ..cs231n.layers import batchnorm_forward, spatial_batchnorm_forward

__all__ = [
    "batchnorm_backward", "batchnorm_backward_alt", "batchnorm_forward", "dropout_backward",
    "dropout_forward", "spatial_batchnorm_backward", "spatial_batchnorm_forward",
]


def dropout_forward(x, dropout_param):
    """Inverted dropout, I2DL: ``p`` DROPS each unit with probability p (kept units are
    scaled by 1/(1-p)); ``seed`` re-seeds NumPy's global state before drawing the mask.
    Returns out and (dropout_param, mask)."""
    fn = "dropout_forward"

    def keep_of(p):
        return 1.0 - _validate.probability("dropout_param['p'] (the drop probability)", p,
                                           zero=True, one=False, fn=fn)

    return seeded_dropout(fn, x, dropout_param, keep_of)
