"""Readable loop implementations of convolution and pooling, written from the definitions.

These are CS231n's ``*_naive`` functions (``gpunet.layers.conv_forward_naive`` and
friends) and the oracle the fast paths are tested against: one loop iteration per output
element, which cuts its window out of the (padded) input and reduces it. Slow on purpose.

Any geometry is accepted, with PyTorch's floor semantics: the output length is
``(size + 2*pad - dilation*(k - 1) - 1) // stride + 1``, and input rows or columns no
window covers get a zero gradient. Max-pool ties send the gradient to the first maximum
in row-major window order. Inputs of any backend are accepted; the loops run on the host
in the inputs' dtype and the results go back to the inputs' backend.
"""

from __future__ import annotations

import numpy as np

from . import _validate
from .backend.geometry import check_elements
from .backend.namespace import from_host, to_numpy

__all__ = [
    "avg_pool_backward_naive",
    "avg_pool_forward_naive",
    "conv_backward_naive",
    "conv_forward_naive",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
]


def _out_size(fn: str, window: str, axis: str, size: int, k: int, stride: int, pad: int,
              dilation: int = 1) -> int:
    span = dilation * (k - 1) + 1
    if size + 2 * pad < span:
        raise _validate.ArgumentError(
            f"{fn}: the window ({window} = {k}) spans {span} {axis} positions but the padded input "
            f"x has only {size + 2 * pad} (size {size} + 2*pad {pad}); use a smaller window or more padding"
        )
    return (size + 2 * pad - span) // stride + 1


def _window(start: int, k: int, step: int) -> slice:
    """The input positions ``start, start + step, ...`` (k of them) of one window."""
    return slice(start, start + step * (k - 1) + 1, step)


# --- convolution ----------------------------------------------------------------------


def _conv_geometry(fn: str, x, w, b, conv_param):
    _validate.float_inputs(fn, x=x, w=w, b=b)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    _validate.ndim(fn, "w", w, 4, "(F, C, HH, WW)")
    _validate.shape(fn, "b", b, (w.shape[0],), "F = w.shape[0]")
    if w.shape[1] != x.shape[1]:
        raise _validate.ArgumentError(
            f"{fn}: w must have shape (F, C, HH, WW) with C = {x.shape[1]} channels of x, "
            f"got w.shape = {tuple(w.shape)}"
        )
    _validate.keys(fn, "conv_param", conv_param, {"stride", "pad", "dilation"})
    stride = _validate.pair(fn, "conv_param['stride']", conv_param.get("stride", 1))
    pad = _validate.pair(fn, "conv_param['pad']", conv_param.get("pad", 0))
    dilation = _validate.pair(fn, "conv_param['dilation']", conv_param.get("dilation", 1))
    if min(stride) < 1 or min(pad) < 0 or min(dilation) < 1:
        raise _validate.ArgumentError(
            f"{fn}: stride and dilation must be >= 1 and pad >= 0, got stride={stride}, "
            f"pad={pad}, dilation={dilation}"
        )
    if min(w.shape[2:]) < 1:
        raise _validate.ArgumentError(f"{fn}: w must have a non-empty kernel (F, C, HH, WW), got "
                                      f"w.shape = {tuple(w.shape)}")
    out_h = _out_size(fn, "w.shape[2]", "height", x.shape[2], w.shape[2], stride[0], pad[0], dilation[0])
    out_w = _out_size(fn, "w.shape[3]", "width", x.shape[3], w.shape[3], stride[1], pad[1], dilation[1])
    n, c, h, wd = x.shape
    try:
        check_elements("the padded input", (n, c, h + 2 * pad[0], wd + 2 * pad[1]))
        check_elements("the output", (n, w.shape[0], out_h, out_w))
    except ValueError as exc:
        raise _validate.ArgumentError(f"{fn}: {exc}") from None
    return stride, pad, dilation, (out_h, out_w)


def conv_forward_naive(x, w, b, conv_param):
    """Cross-correlation of x (N, C, H, W) with filters w (F, C, HH, WW) plus bias b (F,).

    conv_param: 'stride', 'pad' (zero padding), 'dilation' (ints or (h, w) pairs; 1, 0, 1).
    Returns out (N, F, OH, OW) and cache (x, w, b, conv_param).
    """
    (sh, sw), (ph, pw), (dil_h, dil_w), (oh, ow) = _conv_geometry("conv_forward_naive", x, w, b, conv_param)
    xh, wh, bh = to_numpy(x), to_numpy(w), to_numpy(b)
    n, f, kh, kw = xh.shape[0], wh.shape[0], wh.shape[2], wh.shape[3]
    xpad = np.pad(xh, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((n, f, oh, ow), dtype=xh.dtype)
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    window = xpad[i, :, _window(r * sh, kh, dil_h), _window(s * sw, kw, dil_w)]  # (C, HH, WW)
                    out[i, k, r, s] = np.sum(window * wh[k]) + bh[k]
    return from_host(out, like=x), (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """Gradients (dx, dw, db) of :func:`conv_forward_naive` for dout (N, F, OH, OW)."""
    x, w, b, conv_param = cache
    fn = "conv_backward_naive"
    (sh, sw), (ph, pw), (dil_h, dil_w), (oh, ow) = _conv_geometry(fn, x, w, b, conv_param)
    _validate.float_inputs(fn, dout=dout, x=x)
    _validate.shape(fn, "dout", dout, (x.shape[0], w.shape[0], oh, ow), "(N, F, OH, OW) of the forward pass")
    xh, wh, douth = to_numpy(x), to_numpy(w), to_numpy(dout)
    n, _, h, wd = xh.shape
    f, _, kh, kw = wh.shape
    xpad = np.pad(xh, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(wh)
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    rows, cols = _window(r * sh, kh, dil_h), _window(s * sw, kw, dil_w)
                    g = douth[i, k, r, s]
                    dxpad[i, :, rows, cols] += g * wh[k]  # each window input was multiplied by w[k]
                    dw[k] += g * xpad[i, :, rows, cols]  # and each weight by its window input
    db = douth.sum(axis=(0, 2, 3))
    dx = np.ascontiguousarray(dxpad[:, :, ph : ph + h, pw : pw + wd])  # padding gets no gradient
    return from_host(dx, like=x), from_host(dw, like=x), from_host(db, like=x)


# --- pooling --------------------------------------------------------------------------


def _pool_geometry(fn: str, x, pool_param):
    _validate.float_inputs(fn, x=x)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    _validate.keys(fn, "pool_param", pool_param, {"pool_height", "pool_width", "stride"},
                   {"pool_height", "pool_width"})
    kh = _validate.integer("pool_param['pool_height']", pool_param["pool_height"], low=1, fn=fn)
    kw = _validate.integer("pool_param['pool_width']", pool_param["pool_width"], low=1, fn=fn)
    sh, sw = _validate.pair(fn, "pool_param['stride']", pool_param.get("stride", (kh, kw)))
    if min(sh, sw) < 1:
        raise _validate.ArgumentError(f"{fn}: pool_param['stride'] must be >= 1, got {(sh, sw)}")
    oh = _out_size(fn, "pool_param['pool_height']", "height", x.shape[2], kh, sh, 0)
    ow = _out_size(fn, "pool_param['pool_width']", "width", x.shape[3], kw, sw, 0)
    return kh, kw, sh, sw, oh, ow


def _pool_backward_geometry(fn: str, dout, x, pool_param):
    kh, kw, sh, sw, oh, ow = _pool_geometry(fn, x, pool_param)
    _validate.float_inputs(fn, dout=dout, x=x)
    _validate.shape(fn, "dout", dout, tuple(x.shape[:2]) + (oh, ow), "(N, C, OH, OW) of the forward pass")
    return kh, kw, sh, sw, oh, ow


def _windows(shape, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int):
    """Every output element (i, k, r, s) of a pooling with the index of its input window."""
    n, c = shape[:2]
    for i in range(n):
        for k in range(c):
            for r in range(oh):
                for s in range(ow):
                    yield (i, k, r, s), (i, k, _window(r * sh, kh, 1), _window(s * sw, kw, 1))


def _pool_forward(fn: str, x, pool_param, reduce):
    kh, kw, sh, sw, oh, ow = _pool_geometry(fn, x, pool_param)
    xh = to_numpy(x)
    out = np.zeros(xh.shape[:2] + (oh, ow), dtype=xh.dtype)
    for o, window in _windows(xh.shape, kh, kw, sh, sw, oh, ow):
        out[o] = reduce(xh[window])
    return from_host(out, like=x), (x, pool_param)


def max_pool_forward_naive(x, pool_param):
    """Maximum of x (N, C, H, W) over each window. pool_param: 'pool_height', 'pool_width',
    'stride' (int or (h, w); default: the window). Returns out (N, C, OH, OW), cache (x, pool_param)."""
    return _pool_forward("max_pool_forward_naive", x, pool_param, np.max)


def max_pool_backward_naive(dout, cache):
    """dx (N, C, H, W) of max pooling: each dout goes to the first maximum of its window."""
    x, pool_param = cache
    kh, kw, sh, sw, oh, ow = _pool_backward_geometry("max_pool_backward_naive", dout, x, pool_param)
    xh, douth = to_numpy(x), to_numpy(dout)
    dx = np.zeros_like(xh)
    for o, (i, k, rows, cols) in _windows(xh.shape, kh, kw, sh, sw, oh, ow):
        a, b = np.unravel_index(np.argmax(xh[i, k, rows, cols]), (kh, kw))  # the first maximum
        dx[i, k, rows.start + a, cols.start + b] += douth[o]
    return from_host(dx, like=x)


def avg_pool_forward_naive(x, pool_param):
    """Mean of x (N, C, H, W) over each window; pool_param as for :func:`max_pool_forward_naive`."""
    return _pool_forward("avg_pool_forward_naive", x, pool_param, np.mean)


def avg_pool_backward_naive(dout, cache):
    """dx (N, C, H, W) of average pooling: dout / (kh*kw) to every element of its window."""
    x, pool_param = cache
    kh, kw, sh, sw, oh, ow = _pool_backward_geometry("avg_pool_backward_naive", dout, x, pool_param)
    xh, douth = to_numpy(x), to_numpy(dout)
    dx = np.zeros_like(xh)
    for o, window in _windows(xh.shape, kh, kw, sh, sw, oh, ow):
        dx[window] += douth[o] / (kh * kw)
    return from_host(dx, like=x)
