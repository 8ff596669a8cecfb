"""CS231n's ``cs231n/layer_utils.py``: the sandwich layers (gpunet's fused versions)."""

from __future__ import annotations

from ... import layers as _L
from ...layers import (
    affine_relu_backward,
    affine_relu_forward,
    conv_bn_relu_backward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from .layers import zero_running_stats

__all__ = [
    "affine_relu_backward", "affine_relu_forward", "conv_bn_relu_backward", "conv_bn_relu_forward",
    "conv_relu_backward", "conv_relu_forward", "conv_relu_pool_backward", "conv_relu_pool_forward",
]


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """relu(spatial_batchnorm(conv(x))), running statistics starting at 0 as in CS231n."""
    if getattr(w, "ndim", None) == 4 and hasattr(x, "dtype"):
        zero_running_stats(bn_param, w.shape[0], x)
    return _L.conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
