"""CS231n's ``cs231n/fast_layers.py``: every fast name is gpunet's vectorised layer (im2col
and GEMM for convolution, strided windows for pooling; no Cython build needed), so each
``*_backward_*`` accepts the cache of any ``*_forward_*`` of this module."""

from __future__ import annotations

from ...layers import conv_backward, conv_forward, max_pool_backward, max_pool_forward

__all__ = [
    "conv_backward_fast", "conv_backward_im2col", "conv_backward_strides", "conv_forward_fast",
    "conv_forward_im2col", "conv_forward_strides", "max_pool_backward_fast",
    "max_pool_backward_im2col", "max_pool_backward_reshape", "max_pool_forward_fast",
    "max_pool_forward_im2col", "max_pool_forward_reshape",
]

conv_forward_fast = conv_forward_strides = conv_forward_im2col = conv_forward
conv_backward_fast = conv_backward_strides = conv_backward_im2col = conv_backward
max_pool_forward_fast = max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward
max_pool_backward_fast = max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward
