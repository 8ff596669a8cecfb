"""``CupyOps``: the CuPy backend's hot primitives, each one custom CUDA kernel
(``gpunet/cuda``).

``gpunet.backend.get_ops(cupy)`` returns an instance. Every method keeps the signature
and results of the generic :class:`gpunet.backend.ops.Ops` (the reference it is tested
against) and falls back to it for inputs a kernel is not built for (mixed dtypes,
non-float dtypes, float16 optimizer state). Importing this module imports no CuPy: the
kernels are described at import and built on first use.
"""

from __future__ import annotations

import numpy as np

from ..cuda import conv, optim
from ..cuda.activations import (
    BIAS_RELU_FORWARD,
    LEAKY_RELU_BACKWARD,
    RELU_BACKWARD,
    SIGMOID_BACKWARD,
    SIGMOID_FORWARD,
)
from .geometry import ConvGeometry
from .ops import Ops, host_dtype


class CupyOps(Ops):
    """Kernel-backed primitives for CuPy arrays (see ``gpunet/cuda/README.md``)."""

    name = "cupy"

    # --- activations ------------------------------------------------------------
    def sigmoid(self, x):
        if not SIGMOID_FORWARD.supports(x):
            return super().sigmoid(x)
        return SIGMOID_FORWARD(x)

    def sigmoid_backward(self, dy, y):
        if not SIGMOID_BACKWARD.supports(dy, y):
            return super().sigmoid_backward(dy, y)
        return SIGMOID_BACKWARD(dy, y)

    def relu_backward(self, dy, y):
        if not RELU_BACKWARD.supports(dy, y):
            return super().relu_backward(dy, y)
        return RELU_BACKWARD(dy, y)

    def leaky_relu_backward(self, dy, x, slope: float):
        if not LEAKY_RELU_BACKWARD.supports(dy, x):
            return super().leaky_relu_backward(dy, x, slope)
        return LEAKY_RELU_BACKWARD(dy, x, slope)

    def bias_relu(self, x, b):
        if not BIAS_RELU_FORWARD.supports(x, b):
            return super().bias_relu(x, b)
        return BIAS_RELU_FORWARD(x, b)

    # --- convolution ------------------------------------------------------------
    def im2col(self, x, geo: ConvGeometry):
        if not conv.IM2COL.supports(x):
            return super().im2col(x, geo)
        return conv.im2col(self.xp, x, geo)

    def col2im(self, cols, geo: ConvGeometry):
        if not conv.COL2IM.supports(cols):
            return super().col2im(cols, geo)
        return conv.col2im(self.xp, cols, geo)

    # --- optimizer updates ----------------------------------------------------------
    def sgd_momentum(self, w, dw, v, lr: float, momentum: float):
        if not optim.SGD_MOMENTUM.supports(w, dw, v):
            return super().sgd_momentum(w, dw, v, lr, momentum)
        return optim.sgd_momentum(w, dw, v, lr, momentum)

    def adam(self, w, dw, m, v, t: int, lr: float, beta1: float, beta2: float, eps: float):
        if not optim.ADAM.supports(w, dw, m, v):
            return super().adam(w, dw, m, v, t, lr, beta1, beta2, eps)
        return optim.adam(w, dw, m, v, t, lr, beta1, beta2, eps)

    # --- randomness -------------------------------------------------------------
    def uniform(self, shape, like, seed=None):
        """Uniform [0, 1) next to ``like``; drawn on the device (cupy.random) without a
        seed, on the host (the same numbers as every backend) with one."""
        if seed is not None:
            return super().uniform(shape, like, seed)
        dtype = host_dtype(like.dtype)
        if dtype in (np.float32, np.float64):
            return self.xp.random.random(shape, dtype=dtype)
        # float16: draw float32 and keep values that round up to 1.0 below 1
        u = self.xp.random.random(shape, dtype=np.float32).astype(dtype)
        return self.xp.minimum(u, np.nextafter(dtype.type(1), dtype.type(0)))
