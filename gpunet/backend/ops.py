"""Hot primitives, written once against ``xp``, that a backend may override.

:class:`Ops` is the generic version: portable (Array API subset), the fallback for any
namespace, and the reference that faster backend versions are tested against.
``get_ops(xp)`` returns the implementation for a namespace: NumPy gets its own
subclass, CuPy the one with custom CUDA kernels (``gpunet/cuda``).

Convolution columns use one layout everywhere: ``cols`` has shape
``(C*kh*kw, N*OH*OW)``, rows ordered ``(c, i, j)`` and columns ``(n, oh, ow)``.
Convolutions split the batch so that one chunk's columns fit a byte budget
(``budget``; ``None`` = no limit); a split forward keeps ``x`` instead of the columns and
the backward pass recomputes them chunk by chunk, with the same results.
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

    def relu_(self, x):
        """max(x, 0) written into x (for an array the caller owns, e.g. a fresh conv output); returns x."""
        x[...] = self.xp.maximum(x, 0.0)
        return x

    def relu_backward_(self, dy, y):
        """:meth:`relu_backward` written into dy (a gradient the caller owns); returns dy."""
        dy[...] = self.relu_backward(dy, y)
        return dy

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

    # --- convolution layer (im2col + GEMM), split into batch chunks by a column budget ---
    @staticmethod
    def conv_chunk(n: int, rows: int, out_hw, itemsize: int, budget) -> int:
        """Samples per chunk so that a chunk's columns (``rows`` x chunk*OH*OW) fit ``budget``
        bytes (``None``: the whole batch); at least one sample."""
        if budget is None:
            return max(n, 1)
        per_sample = rows * out_hw[0] * out_hw[1] * itemsize
        return max(1, min(n, int(budget // max(per_sample, 1))))

    def conv2d_forward(self, x, w, b, stride, pad, budget=None):
        """Convolution of x (N, C, H, W) with w (F, C, kh, kw) plus b (F,) by im2col and GEMM.

        Returns ``out`` (N, F, OH, OW) and ``saved`` for :meth:`conv2d_backward`: the
        columns when the whole batch fits ``budget`` bytes, else ``x`` (columns recomputed).
        """
        xp = self.xp
        n, c, h, wd = x.shape
        f, _, kh, kw = w.shape
        oh, ow = conv_output_size(h, kh, stride[0], pad[0]), conv_output_size(wd, kw, stride[1], pad[1])
        w2, b2 = xp.reshape(w, (f, c * kh * kw)), xp.reshape(b, (f, 1))
        nb = self.conv_chunk(n, c * kh * kw, (oh, ow), _itemsize(x), budget)
        if nb >= n:
            cols = self.im2col(x, kh, kw, stride, pad)  # (C*kh*kw, N*OH*OW)
            out = xp.matmul(w2, cols) + b2
            return xp.permute_dims(xp.reshape(out, (f, n, oh, ow)), (1, 0, 2, 3)), ("cols", cols)
        out = zeros((n, f, oh, ow), like=x)
        for s in range(0, n, nb):
            m = min(nb, n - s)
            part = xp.matmul(w2, self.im2col(x[s : s + m, ...], kh, kw, stride, pad)) + b2
            out[s : s + m, ...] = xp.permute_dims(xp.reshape(part, (f, m, oh, ow)), (1, 0, 2, 3))
        return out, ("x", x)

    def conv2d_backward(self, dout, x_shape, w, stride, pad, saved, compute_dx=True, budget=None):
        """Gradients (dx or None, dw, db) of :meth:`conv2d_forward` for dout (N, F, OH, OW)."""
        xp = self.xp
        n = x_shape[0]
        f, c, kh, kw = w.shape
        oh, ow = dout.shape[2], dout.shape[3]
        w2 = xp.reshape(w, (f, c * kh * kw))
        kind, data = saved
        db = xp.sum(xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (f, n * oh * ow)), axis=1)
        if kind == "cols":
            chunks = [(0, n, data)]
        else:
            nb = self.conv_chunk(n, c * kh * kw, (oh, ow), _itemsize(dout), budget)
            chunks = [(s, min(nb, n - s), None) for s in range(0, n, nb)]
        dw = None
        dx = zeros(x_shape, like=dout) if compute_dx and kind != "cols" else None
        for s, m, cols in chunks:
            if cols is None:
                cols = self.im2col(data[s : s + m, ...], kh, kw, stride, pad)
            d2 = xp.reshape(xp.permute_dims(dout[s : s + m, ...], (1, 0, 2, 3)), (f, m * oh * ow))
            part = xp.matmul(d2, cols.T)
            dw = part if dw is None else dw + part
            if compute_dx:
                dcols = xp.matmul(w2.T, d2)
                part_dx = self.col2im(dcols, (m,) + tuple(x_shape[1:]), kh, kw, stride, pad)
                if dx is None:
                    dx = part_dx
                else:
                    dx[s : s + m, ...] = part_dx
        return dx, xp.reshape(dw, w.shape), db

    def conv_relu_pool_forward(self, x, w, b, stride, pad, pool, budget=None):
        """s = relu(conv(x) + b) and its max pool; ``pool`` = (kh, kw, stride, out_hw).

        Returns (s, pooled, saved) with ``saved`` as :meth:`conv2d_forward`'s.
        """
        a, saved = self.conv2d_forward(x, w, b, stride, pad, budget)
        s = self.relu_(a)  # the convolution's output is ours: rectified in place
        return s, self.max_pool(s, *pool), saved

    def conv_relu_pool_backward(self, dout, s, out, relu_y, pool, x_shape, w, stride, pad, saved,
                                compute_dx=True, budget=None):
        """(dx or None, dw, db) of :meth:`conv_relu_pool_forward`: max-pool backward of dout
        (N, F, PH, PW) from s and out, ReLU backward from relu_y, convolution backward."""
        ds = self.max_pool_backward(dout, s, out, *pool)
        ds = self.relu_backward_(ds, relu_y)
        return self.conv2d_backward(ds, x_shape, w, stride, pad, saved, compute_dx, budget)

    # --- pooling: a loop over the kh*kw window offsets, each a strided slice ----------
    @staticmethod
    def _window(i: int, j: int, stride, out_hw):
        """Index of the input elements at window offset (i, j) of every output position."""
        (sh, sw), (oh, ow) = stride, out_hw
        return (slice(None), slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
                slice(j, j + sw * (ow - 1) + 1, sw))

    def max_pool(self, x, kh: int, kw: int, stride, out_hw):
        """Maximum of x (N, C, H, W) over each (kh, kw) window: (N, C, OH, OW)."""
        xp = self.xp
        out = x[self._window(0, 0, stride, out_hw)]
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    out = xp.maximum(out, x[self._window(i, j, stride, out_hw)])
        return out

    def max_pool_backward(self, dout, x, out, kh: int, kw: int, stride, out_hw):
        """dx (N, C, H, W): each dout goes to the first maximum of its window (row-major)."""
        xp = self.xp
        dx = zeros(x.shape, like=dout)
        routed = None  # positions whose gradient has been sent already
        for i in range(kh):
            for j in range(kw):
                region = self._window(i, j, stride, out_hw)
                hit = x[region] == out
                if routed is not None:
                    hit = xp.logical_and(hit, xp.logical_not(routed))
                    routed = xp.logical_or(routed, hit)
                else:
                    routed = hit
                dx[region] = dx[region] + xp.where(hit, dout, 0.0)
        return dx

    def avg_pool(self, x, kh: int, kw: int, stride, out_hw):
        """Mean of x (N, C, H, W) over each (kh, kw) window: (N, C, OH, OW)."""
        total = x[self._window(0, 0, stride, out_hw)]
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    total = total + x[self._window(i, j, stride, out_hw)]
        return total / (kh * kw)

    def avg_pool_backward(self, dout, x_shape, kh: int, kw: int, stride, out_hw):
        """dx of ``x_shape``: dout / (kh*kw) added to every element of its window."""
        share = dout / (kh * kw)
        dx = zeros(x_shape, like=dout)
        for i in range(kh):
            for j in range(kw):
                region = self._window(i, j, stride, out_hw)
                dx[region] = dx[region] + share
        return dx

    # --- GEMM shapes ------------------------------------------------------------------
    def matmul_tn(self, a, b):
        """a.T @ b for 2-D a (K, M) and b (K, N): (M, N), e.g. an affine layer's dw."""
        return self.xp.matmul(a.T, b)

    # --- optimizer updates (in place on w and the state arrays) ----------------------
    def sgd(self, w, dw, lr: float):
        """w = w - lr*dw (in place); returns w."""
        w[...] = w - lr * dw
        return w

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
        dtype = host_dtype(like.dtype)
        host = np.random.default_rng(seed).random(shape).astype(dtype)
        # float64 draws just below 1 round to 1.0 in float32/float16: keep the interval open
        np.minimum(host, np.nextafter(dtype.type(1), dtype.type(0)), out=host)
        return from_host(host, like)


def host_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a NumPy, CuPy or array_api_strict dtype."""
    return np.dtype(str(dtype).rsplit(".", 1)[-1])


def _itemsize(a) -> int:
    return host_dtype(a.dtype).itemsize


_cache: dict[str, Ops] = {}
_cache_lock = threading.Lock()


def get_ops(xp) -> Ops:
    """The primitives for namespace ``xp``, built once and cached."""
    key = xp.__name__
    with _cache_lock:
        ops = _cache.get(key)
        if ops is None:
            if xp is np:
                from .numpy_ops import NumpyOps

                ops = NumpyOps(xp)
            elif key == "cupy":
                from ..cuda.ops import CupyOps

                ops = CupyOps(xp)
            else:
                ops = Ops(xp)
            _cache[key] = ops
        return ops


def __getattr__(name):
    if name == "NumpyOps":  # the class lives in numpy_ops.py (NumPy-only code)
        from .numpy_ops import NumpyOps

        return NumpyOps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
