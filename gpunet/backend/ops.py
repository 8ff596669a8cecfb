"""Hot primitives, written once against ``xp``, that a backend may override.

:class:`Ops` is the generic version: portable (Array API subset), the fallback for any
namespace, and the reference that faster backend versions are tested against.
``get_ops(xp)`` returns the implementation for a namespace: NumPy gets its own
subclass, CuPy the one with custom CUDA kernels (``gpunet/cuda``).

Convolution columns use one layout everywhere: ``cols`` has shape
``(C*kh*kw, N*OH*OW)``, rows ordered ``(c, i, j)`` and columns ``(n, oh, ow)``.
"""

from __future__ import annotations

import threading

import numpy as np

from .namespace import from_host, zeros


def conv_output_size(size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a window ``k`` sliding with ``stride`` over ``size + 2*pad``."""
    return (size + 2 * pad - k) // stride + 1


class Ops:
    """Generic implementations (any Array API namespace)."""

    name = "generic"

    def __init__(self, xp):
        self.xp = xp

    # --- activations ------------------------------------------------------------
    def sigmoid(self, x):
        """1 / (1 + exp(-x)) in the tanh form: no overflow, no warning, any dtype."""
        return 0.5 * self.xp.tanh(0.5 * x) + 0.5

    def sigmoid_backward(self, dy, y):
        """dx from the saved output y = sigmoid(x): dy * y * (1 - y)."""
        return dy * y * (1 - y)

    def relu_backward(self, dy, y):
        """dx from the saved output (or input; same sign) of ReLU; 0 at the kink."""
        return self.xp.where(y > 0, dy, 0.0)

    def leaky_relu_backward(self, dy, x, slope: float):
        """dx of max(x, slope*x) (slope < 1) from the saved input x; slope at x = 0."""
        return self.xp.where(x > 0, dy, dy * slope)

    def bias_relu(self, x, b):
        """max(x + b, 0) with b broadcast over the last axis."""
        return self.xp.maximum(x + b, 0.0)

    # --- convolution ------------------------------------------------------------
    def im2col(self, x, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int]):
        """Columns ``(C*kh*kw, N*OH*OW)`` of the zero-padded ``x`` of shape (N, C, H, W)."""
        xp = self.xp
        n, c, h, w = x.shape
        (sh, sw), (ph, pw) = stride, pad
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        xpad = self._pad(x, ph, pw)
        cols = zeros((c, kh, kw, n, oh, ow), like=x)
        for i in range(kh):
            for j in range(kw):
                patch = xpad[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
                cols[:, i, j, ...] = xp.permute_dims(patch, (1, 0, 2, 3))
        return xp.reshape(cols, (c * kh * kw, n * oh * ow))

    def col2im(self, cols, x_shape, kh: int, kw: int, stride, pad):
        """Adjoint of :meth:`im2col`: sum columns back into an array of ``x_shape``."""
        xp = self.xp
        n, c, h, w = x_shape
        (sh, sw), (ph, pw) = stride, pad
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        cols6 = xp.reshape(cols, (c, kh, kw, n, oh, ow))
        dxpad = zeros((n, c, h + 2 * ph, w + 2 * pw), like=cols)
        for i in range(kh):
            for j in range(kw):
                region = (slice(None), slice(None),
                          slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))
                dxpad[region] = dxpad[region] + xp.permute_dims(cols6[:, i, j, ...], (1, 0, 2, 3))
        return dxpad[:, :, ph : ph + h, pw : pw + w]

    def _pad(self, x, ph: int, pw: int):
        if ph == 0 and pw == 0:
            return x
        n, c, h, w = x.shape
        out = zeros((n, c, h + 2 * ph, w + 2 * pw), like=x)
        out[:, :, ph : ph + h, pw : pw + w] = x
        return out

    # --- optimizer updates (in place on w and the state arrays) ----------------------
    def sgd_momentum(self, w, dw, v, lr: float, momentum: float):
        """v = momentum*v - lr*dw; w += v (in place); returns w."""
        v[...] = momentum * v - lr * dw
        w[...] = w + v
        return w

    def adam(self, w, dw, m, v, t: int, lr: float, beta1: float, beta2: float, eps: float):
        """One Adam step with bias correction at step ``t`` (>= 1), in place; returns w."""
        xp = self.xp
        m[...] = beta1 * m + (1 - beta1) * dw
        v[...] = beta2 * v + (1 - beta2) * (dw * dw)
        mhat = m / (1 - beta1**t)
        vhat = v / (1 - beta2**t)
        w[...] = w - lr * mhat / (xp.sqrt(vhat) + eps)
        return w

    # --- randomness -------------------------------------------------------------
    def uniform(self, shape, like, seed=None):
        """Uniform [0, 1) numbers of ``shape`` next to ``like`` (its dtype and device).

        ``seed`` (an int or a ``numpy.random.Generator``) draws on the host with NumPy's
        PCG64, in float64 whatever the dtype, so every backend and dtype sees the same
        numbers; ``None`` draws fresh entropy.
        """
        host = np.random.default_rng(seed).random(shape).astype(host_dtype(like.dtype))
        return from_host(host, like)


def host_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a NumPy, CuPy or array_api_strict dtype."""
    return np.dtype(str(dtype).rsplit(".", 1)[-1])


class NumpyOps(Ops):
    """NumPy (CPU) versions; identical results to :class:`Ops`."""

    name = "numpy"


_cache: dict[str, Ops] = {}
_cache_lock = threading.Lock()


def get_ops(xp) -> Ops:
    """The primitives for namespace ``xp``, built once and cached."""
    key = xp.__name__
    with _cache_lock:
        ops = _cache.get(key)
        if ops is None:
            if xp is np:
                ops = NumpyOps(xp)
            elif key == "cupy":
                from ..cuda.ops import CupyOps

                ops = CupyOps(xp)
            else:
                ops = Ops(xp)
            _cache[key] = ops
        return ops
