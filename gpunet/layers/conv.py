"""2-D convolution (cross-correlation, as CS231n and PyTorch) by im2col and one GEMM.

The column layout and the generic im2col/col2im are in ``gpunet/backend/ops.py``;
the CUDA kernels in ``gpunet/cuda/conv.py``.
"""

from __future__ import annotations

from ..backend import get_ops
from ..backend.ops import conv_output_size
from . import _checks

_KEYS = {"stride", "pad"}


def conv_geometry(fn: str, x_shape, w_shape, conv_param):
    """Check a convolution's shapes and return ((sh, sw), (ph, pw), (OH, OW))."""
    _checks.keys(fn, "conv_param", conv_param, _KEYS)
    stride = _checks.pair(fn, "conv_param['stride']", conv_param.get("stride", 1))
    pad = _checks.pair(fn, "conv_param['pad']", conv_param.get("pad", 0))
    if min(stride) < 1 or min(pad) < 0:
        raise ValueError(f"{fn}: stride must be >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    n, c, h, w = x_shape
    f, wc, kh, kw = w_shape
    if wc != c:
        raise ValueError(
            f"{fn}: w must have shape (F, C, HH, WW) with C = {c} channels of x {tuple(x_shape)}, "
            f"got w.shape = {tuple(w_shape)}"
        )
    out = []
    for axis, size, k, s, p in (("height", h, kh, stride[0], pad[0]), ("width", w, kw, stride[1], pad[1])):
        span = size + 2 * p - k
        if span < 0 or span % s:
            raise ValueError(
                f"{fn}: the {axis} does not tile: (size {size} + 2*pad {p} - kernel {k}) = {span} "
                f"must be >= 0 and divisible by stride {s}; change pad, stride or the input size"
            )
        out.append(conv_output_size(size, k, s, p))
    return stride, pad, tuple(out)


def conv_forward(x, w, b, conv_param):
    """Convolution of x (N, C, H, W) with filters w (F, C, HH, WW) and bias b (F,).

    conv_param: 'stride' and 'pad' (int or (h, w) pair; defaults 1 and 0; zero padding).
    Returns out (N, F, OH, OW), OH = (H + 2*pad - HH) / stride + 1, and cache.
    """
    fn = "conv_forward"
    xp = _checks.float_inputs(fn, x=x, w=w, b=b)
    _checks.ndim(fn, "x", x, 4, "(N, C, H, W)")
    _checks.ndim(fn, "w", w, 4, "(F, C, HH, WW)")
    f, _, kh, kw = w.shape
    _checks.shape(fn, "b", b, (f,), "F = w.shape[0]")
    stride, pad, (oh, ow) = conv_geometry(fn, x.shape, w.shape, conv_param)
    n = x.shape[0]
    cols = get_ops(xp).im2col(x, kh, kw, stride, pad)  # (C*HH*WW, N*OH*OW)
    out = xp.matmul(xp.reshape(w, (f, -1)), cols) + xp.reshape(b, (f, 1))
    out = xp.permute_dims(xp.reshape(out, (f, n, oh, ow)), (1, 0, 2, 3))
    return out, (x.shape, w, b, stride, pad, cols)


def conv_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx (N, C, H, W), dw (F, C, HH, WW), db (F,)) of :func:`conv_forward`.

    ``compute_dx=False`` skips dx (returns None), e.g. for a model's first layer.
    """
    x_shape, w, b, stride, pad, cols = cache
    fn = "conv_backward"
    xp = _checks.float_inputs(fn, dout=dout, w=w)
    f, _, kh, kw = w.shape
    n = x_shape[0]
    oh = conv_output_size(x_shape[2], kh, stride[0], pad[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], pad[1])
    _checks.shape(fn, "dout", dout, (n, f, oh, ow), "(N, F, OH, OW) of the forward pass")
    dout2 = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (f, n * oh * ow))
    db = xp.sum(dout2, axis=1)
    dw = xp.reshape(xp.matmul(dout2, cols.T), w.shape)
    dx = None
    if compute_dx:
        dcols = xp.matmul(xp.reshape(w, (f, -1)).T, dout2)
        dx = get_ops(xp).col2im(dcols, x_shape, kh, kw, stride, pad)
    return dx, dw, db
