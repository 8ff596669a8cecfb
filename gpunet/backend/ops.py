"""Hot primitives, written once against ``xp``, that a backend may override.

:class:`Ops` is the generic version: portable (Array API subset), the fallback for any
namespace, and the reference that faster backend versions are tested against
(``numpy_ops.NumpyOps``, ``cupy_ops.CupyOps``; ``get_ops(xp)`` in ``dispatch.py`` picks one).
Convolutions and pools take a :class:`~gpunet.backend.geometry.ConvGeometry` /
:class:`~gpunet.backend.geometry.PoolGeometry` built once by the layer.

Convolution columns use one layout everywhere: ``cols`` has shape
``(C*kh*kw, N*OH*OW)``, rows ordered ``(c, i, j)`` and columns ``(n, oh, ow)``.
Convolutions split the batch so that one chunk's columns fit a byte budget
(``budget``; ``None`` = no limit); a split forward keeps ``x`` instead of the columns
(:class:`ConvSaved`) and the backward pass recomputes them chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import ConvGeometry, PoolGeometry
from .namespace import from_host, full, zeros


@dataclass(frozen=True, eq=False)
class ConvSaved:
    """What a convolution's forward pass keeps for its backward pass: the whole batch's
    columns ``cols``, or (batch split into chunks) the input ``x``."""

    x: Any = None
    cols: Any = None


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """(start, count) of consecutive chunks of ``size`` samples covering a batch of ``n``;
    one empty chunk for an empty batch (so that sums over chunks have a first term)."""
    return [(s, min(size, n - s)) for s in range(0, max(n, 1), size)]


class Ops:
    """Generic implementations (any Array API namespace)."""

    name = "generic"

    def __init__(self, xp):
        self.xp = xp

    # --- activations ------------------------------------------------------------
    def sigmoid(self, x):
        """1 / (1 + exp(-x)), accurate relative to its value on both tails: with
        e = exp(-|x|) <= 1 (never overflows), 1 / (1 + e) for x >= 0 and e / (1 + e) below."""
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1.0, e) / (1.0 + e)

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
    def im2col(self, x, geo: ConvGeometry):
        """Columns ``(C*kh*kw, n*OH*OW)`` of the zero-padded ``x`` (n, C, H, W)."""
        xp = self.xp
        n = x.shape[0]
        _, c, kh, kw = geo.w_shape
        oh, ow = geo.out_hw
        xpad = self._pad(x, geo.pad)
        cols = zeros((c, kh, kw, n, oh, ow), like=x)
        for i in range(kh):
            for j in range(kw):
                cols[:, i, j, ...] = xp.permute_dims(xpad[geo.tap(i, j)], (1, 0, 2, 3))
        return xp.reshape(cols, (c * kh * kw, n * oh * ow))

    def col2im(self, cols, geo: ConvGeometry):
        """Adjoint of :meth:`im2col`: the columns (C*kh*kw, n*OH*OW) summed back into
        an array (n, C, H, W)."""
        xp = self.xp
        _, c, h, w = geo.x_shape
        _, _, kh, kw = geo.w_shape
        (oh, ow), (ph, pw) = geo.out_hw, geo.pad
        n = cols.shape[1] // (oh * ow)
        cols6 = xp.reshape(cols, (c, kh, kw, n, oh, ow))
        dxpad = zeros((n, c, h + 2 * ph, w + 2 * pw), like=cols)
        for i in range(kh):
            for j in range(kw):
                region = geo.tap(i, j)
                dxpad[region] = dxpad[region] + xp.permute_dims(cols6[:, i, j, ...], (1, 0, 2, 3))
        return dxpad[:, :, ph : ph + h, pw : pw + w]

    def _pad(self, x, pad):
        ph, pw = pad
        if ph == 0 and pw == 0:
            return x
        n, c, h, w = x.shape
        out = zeros((n, c, h + 2 * ph, w + 2 * pw), like=x)
        out[:, :, ph : ph + h, pw : pw + w] = x
        return out

    # --- convolution layer (im2col + GEMM), split into batch chunks by a column budget ---
    @staticmethod
    def conv_chunk(n: int, sample_bytes: int, budget) -> int:
        """Samples per chunk so that a chunk's columns (``sample_bytes`` per sample) fit
        ``budget`` bytes (``None``: the whole batch); at least one sample."""
        if budget is None:
            return max(n, 1)
        return max(1, min(n, int(budget // max(sample_bytes, 1))))

    def conv2d_forward(self, x, w, b, geo: ConvGeometry, budget=None):
        """Convolution of x (N, C, H, W) with w (F, C, kh, kw) plus b (F,) by im2col and GEMM.

        Returns ``out`` (N, F, OH, OW) and the :class:`ConvSaved` for :meth:`conv2d_backward`:
        the columns when the whole batch fits ``budget`` bytes, else ``x``.
        """
        xp = self.xp
        n, f = x.shape[0], w.shape[0]
        oh, ow = geo.out_hw
        w2, b2 = xp.reshape(w, (f, geo.rows)), xp.reshape(b, (f, 1))
        nb = self.conv_chunk(n, geo.rows * oh * ow * _itemsize(x), budget)
        if nb >= n:
            cols = self.im2col(x, geo)  # (C*kh*kw, N*OH*OW)
            out = xp.matmul(w2, cols) + b2
            return xp.permute_dims(xp.reshape(out, (f, n, oh, ow)), (1, 0, 2, 3)), ConvSaved(cols=cols)
        out = zeros((n, f, oh, ow), like=x)
        for s, m in chunks(n, nb):
            part = xp.matmul(w2, self.im2col(x[s : s + m, ...], geo)) + b2
            out[s : s + m, ...] = xp.permute_dims(xp.reshape(part, (f, m, oh, ow)), (1, 0, 2, 3))
        return out, ConvSaved(x=x)

    def conv2d_backward(self, dout, w, geo: ConvGeometry, saved: ConvSaved, compute_dx: bool = True,
                        budget=None):
        """Gradients (dx or None, dw, db) of :meth:`conv2d_forward` for dout (N, F, OH, OW)."""
        xp = self.xp
        n, f = dout.shape[0], w.shape[0]
        oh, ow = geo.out_hw
        w2 = xp.reshape(w, (f, geo.rows))
        db = xp.sum(xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (f, n * oh * ow)), axis=1)
        if saved.cols is not None:
            parts = [(0, n, saved.cols)]
        else:
            nb = self.conv_chunk(n, geo.rows * oh * ow * _itemsize(dout), budget)
            parts = [(s, m, None) for s, m in chunks(n, nb)]
        dw = None
        dx = zeros((n,) + geo.x_shape[1:], like=dout) if compute_dx and len(parts) > 1 else None
        for s, m, cols in parts:
            if cols is None:
                cols = self.im2col(saved.x[s : s + m, ...], geo)
            d2 = xp.reshape(xp.permute_dims(dout[s : s + m, ...], (1, 0, 2, 3)), (f, m * oh * ow))
            part = xp.matmul(d2, cols.T)
            dw = part if dw is None else dw + part
            if compute_dx:
                part_dx = self.col2im(xp.matmul(w2.T, d2), geo)
                if dx is None:
                    dx = part_dx
                else:
                    dx[s : s + m, ...] = part_dx
        return dx, xp.reshape(dw, w.shape), db

    def conv_relu_forward(self, x, w, b, geo: ConvGeometry, budget=None):
        """s = relu(conv(x) + b) (N, F, OH, OW) and the :class:`ConvSaved` of :meth:`conv2d_forward`."""
        a, saved = self.conv2d_forward(x, w, b, geo, budget)
        return self.relu_(a), saved  # the convolution's output is ours: rectified in place

    def conv_relu_backward(self, dout, s, w, geo: ConvGeometry, saved: ConvSaved, compute_dx: bool = True,
                           budget=None):
        """(dx or None, dw, db) of :meth:`conv_relu_forward` for dout (N, F, OH, OW), from its output s."""
        return self.conv2d_backward(self.relu_backward(dout, s), w, geo, saved, compute_dx, budget)

    def conv_relu_pool_forward(self, x, w, b, geo: ConvGeometry, pool: PoolGeometry, budget=None):
        """s = relu(conv(x) + b) and its max pool over ``pool``.

        Returns (s, pooled, saved) with ``saved`` as :meth:`conv2d_forward`'s.
        """
        s, saved = self.conv_relu_forward(x, w, b, geo, budget)
        return s, self.max_pool(s, pool), saved

    def conv_relu_pool_backward(self, dout, s, out, w, geo: ConvGeometry, pool: PoolGeometry, saved: ConvSaved,
                                compute_dx: bool = True, budget=None):
        """(dx or None, dw, db) of :meth:`conv_relu_pool_forward` for dout (N, F, PH, PW),
        from its s and pooled output ``out``: max-pool, ReLU and convolution backward."""
        ds = self.max_pool_backward(dout, s, out, pool)
        ds = self.relu_backward_(ds, s)
        return self.conv2d_backward(ds, w, geo, saved, compute_dx, budget)

    # --- pooling: a loop over the kh*kw window offsets, each a strided slice ----------
    def max_pool(self, x, geo: PoolGeometry):
        """Maximum of x (N, C, H, W) over each window: (N, C, OH, OW); NaN if the window
        holds one."""
        xp = self.xp
        first, *rest = geo.windows()
        out = x[first]
        for region in rest:
            out = xp.maximum(out, x[region])
        return out

    def max_pool_backward(self, dout, x, out, geo: PoolGeometry):
        """dx (N, C, H, W): each dout goes to the first maximum of its window (row-major),
        or, in a window holding NaN, to its last NaN (both as PyTorch)."""
        xp = self.xp
        windows = geo.windows()
        chosen = full(out.shape, -1, like=out, dtype=xp.int32)  # the window offset that gets dout
        for k, region in enumerate(windows):
            v = x[region]
            first_max = xp.logical_and(v == out, chosen < 0)
            chosen = xp.where(xp.logical_or(first_max, xp.isnan(v)), k, chosen)
        dx = zeros(x.shape, like=dout)
        for k, region in enumerate(windows):
            dx[region] = dx[region] + xp.where(chosen == k, dout, 0.0)
        return dx

    def avg_pool(self, x, geo: PoolGeometry):
        """Mean of x (N, C, H, W) over each window: (N, C, OH, OW)."""
        first, *rest = geo.windows()
        total = x[first]
        for region in rest:
            total = total + x[region]
        return total / (geo.kernel[0] * geo.kernel[1])

    def avg_pool_backward(self, dout, geo: PoolGeometry):
        """dx (N, C, H, W): dout / (kh*kw) added to every element of its window."""
        share = dout / (geo.kernel[0] * geo.kernel[1])
        dx = zeros((dout.shape[0],) + geo.x_shape[1:], like=dout)
        for region in geo.windows():
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
