"""CS231n's ``cs231n/layers.py``: gpunet's layers with the course's conventions where
they differ (float losses, zero-started running statistics, global-seed dropout)."""

from __future__ import annotations

from ... import layers as _L
from ... import losses as _losses
from ..._validate import probability
from ...backend.namespace import zeros
from ...layers import (
    affine_backward,
    affine_forward,
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    batchnorm_backward,
    batchnorm_backward_alt,
    conv_backward_naive,
    conv_forward_naive,
    dropout_backward,
    layernorm_backward,
    layernorm_forward,
    max_pool_backward_naive,
    max_pool_forward_naive,
    relu_backward,
    relu_forward,
    spatial_batchnorm_backward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from .._course import host_float, seeded_dropout

__all__ = [
    "affine_backward", "affine_forward", "avg_pool_backward_naive", "avg_pool_forward_naive",
    "batchnorm_backward", "batchnorm_backward_alt", "batchnorm_forward", "conv_backward_naive",
    "conv_forward_naive", "dropout_backward", "dropout_forward", "layernorm_backward",
    "layernorm_forward", "max_pool_backward_naive", "max_pool_forward_naive", "relu_backward",
    "relu_forward", "softmax_loss", "spatial_batchnorm_backward", "spatial_batchnorm_forward",
    "spatial_groupnorm_backward", "spatial_groupnorm_forward", "svm_loss",
]


def zero_running_stats(bn_param, channels: int, like) -> None:
    """Start absent running statistics of ``channels`` features at 0 (next to ``like``), as
    CS231n does; gpunet starts the variance at 1."""
    if isinstance(bn_param, dict):
        for key in ("running_mean", "running_var"):
            if key not in bn_param:
                bn_param[key] = zeros((channels,), like=like)


def batchnorm_forward(x, gamma, beta, bn_param):
    """gpunet's :func:`gpunet.layers.batchnorm_forward` with CS231n's running statistics
    starting at 0."""
    if getattr(x, "ndim", None) == 2:  # other shapes: gpunet reports them
        zero_running_stats(bn_param, x.shape[1], x)
    return _L.batchnorm_forward(x, gamma, beta, bn_param)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """gpunet's :func:`gpunet.layers.spatial_batchnorm_forward` with CS231n's running
    statistics starting at 0."""
    if getattr(x, "ndim", None) == 4:
        zero_running_stats(bn_param, x.shape[1], x)
    return _L.spatial_batchnorm_forward(x, gamma, beta, bn_param)


def dropout_forward(x, dropout_param):
    """Inverted dropout, CS231n 2019+: ``p`` keeps each unit with probability p; ``seed``
    re-seeds NumPy's global state before drawing (the same mask every call), otherwise
    the mask is drawn from NumPy's global state. Returns out and (dropout_param, mask)."""
    fn = "dropout_forward"
    return seeded_dropout(fn, x, dropout_param,
                          lambda p: probability("dropout_param['p'] (the keep probability)", p, fn=fn))


def svm_loss(x, y):
    """Multiclass SVM loss of scores x (N, C) for labels y (N,): (loss as a float, dx)."""
    loss, dx = _losses.svm_loss(x, y)
    return host_float(loss), dx


def softmax_loss(x, y):
    """Softmax cross-entropy of scores x (N, C) for labels y (N,): (loss as a float, dx)."""
    loss, dx = _losses.softmax_loss(x, y)
    return host_float(loss), dx
