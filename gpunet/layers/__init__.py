"""Functional layers with CS231n signatures: ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients``. Every function runs in the namespace of its
inputs (NumPy, CuPy or any Array API namespace), keeps their dtype, checks what it is
given, and never mutates its inputs or the cache it is handed.

Where to look: affine.py, activations.py, normalization.py, dropout.py, conv.py,
pooling.py, sandwich.py; the generic hot primitives in ``gpunet/backend/ops.py``; the
CUDA kernels in ``gpunet/cuda/``. The ``*_naive`` names are the readable loops of
``gpunet/reference.py``; ``*_fast`` and ``*_im2col`` name the vectorised layers, as CS231n.
"""

from .activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .affine import affine_backward, affine_forward
from .conv import conv_backward, conv_forward
from .dropout import dropout_backward, dropout_forward
from .normalization import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from .pooling import avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward
from .sandwich import (
    affine_relu_backward,
    affine_relu_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)

from ..reference import (
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)

# CS231n's names of the fast layers.
conv_forward_fast = conv_forward_im2col = conv_forward
conv_backward_fast = conv_backward_im2col = conv_backward
max_pool_forward_fast = max_pool_forward
max_pool_backward_fast = max_pool_backward

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward", "_alt", "_naive", "_fast", "_im2col"))]
