"""Functional layers with CS231n signatures: ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients``. Every function runs in the namespace of its
inputs (NumPy, CuPy or any Array API namespace), keeps their dtype, checks what it is
given, and never mutates its inputs or the cache it is handed.

Where to look: affine.py, activations.py, normalization.py, dropout.py, conv.py,
pooling.py, sandwich.py; the generic hot primitives in ``gpunet/backend/ops.py``; the
CUDA kernels in ``gpunet/cuda/``. The ``*_naive`` names are the readable loops of
``gpunet/reference.py``; ``*_fast`` and ``*_im2col`` name the vectorised layers, as CS231n.
"""

# Each module's __all__ is its public layers: a new layer is a function there, a layer object
# in gpunet/nn/layers.py and a test, nothing else.
from ..reference import (
    avg_pool_backward_naive,
    avg_pool_forward_naive,
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from .activations import *
from .affine import *
from .conv import *
from .dropout import *
from .normalization import *
from .pooling import *
from .sandwich import *

# CS231n's names of the fast layers.
conv_forward_fast = conv_forward_im2col = conv_forward
conv_backward_fast = conv_backward_im2col = conv_backward
max_pool_forward_fast = max_pool_forward
max_pool_backward_fast = max_pool_backward

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward", "_alt", "_naive", "_fast", "_im2col"))]
