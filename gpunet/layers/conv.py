"""2-D convolution (cross-correlation, as CS231n and PyTorch) by im2col and GEMM.

The math is ``get_ops(xp).conv2d_forward`` / ``conv2d_backward``: the generic version and
the column layout are in ``gpunet/backend/ops.py``, NumPy's in ``numpy_ops.py``, the CUDA
kernels in ``gpunet/cuda/conv.py``.

Memory: the batch is split so that one chunk's im2col columns never exceed the column
budget (default 256 MiB; :func:`set_column_budget`, or the environment variable
``GPUNET_CONV_BUDGET_MB`` read at import). Results do not depend on the budget.
"""

from __future__ import annotations

import os

from ..backend import get_ops
from ..backend.ops import conv_output_size
from .. import _validate

_KEYS = {"stride", "pad"}
BUDGET_ENV = "GPUNET_CONV_BUDGET_MB"
DEFAULT_BUDGET_MB = 256


def _budget_from_env() -> int:
    raw = os.environ.get(BUDGET_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_BUDGET_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise ValueError(f"{BUDGET_ENV} must be a number of MiB > 0, got {raw!r}")
    return int(mb * 2**20)


_column_budget = _budget_from_env()


def set_column_budget(nbytes: int) -> int:
    """Set the most bytes one chunk of convolution columns may take; returns the old value.

    Convolutions split the batch to stay under it (at least one sample per chunk).
    """
    global _column_budget
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"set_column_budget: nbytes must be an int >= 1, got {nbytes!r}")
    old, _column_budget = _column_budget, nbytes
    return old


def get_column_budget() -> int:
    """The current convolution column budget in bytes."""
    return _column_budget


def conv_geometry(fn: str, x_shape, w_shape, conv_param):
    """Check a convolution's shapes and return ((sh, sw), (ph, pw), (OH, OW))."""
    _validate.keys(fn, "conv_param", conv_param, _KEYS)
    stride = _validate.pair(fn, "conv_param['stride']", conv_param.get("stride", 1))
    pad = _validate.pair(fn, "conv_param['pad']", conv_param.get("pad", 0))
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
    xp, stride, pad, _ = checked_inputs("conv_forward", x, w, b, conv_param)
    out, saved = get_ops(xp).conv2d_forward(x, w, b, stride, pad, _column_budget)
    return out, (x.shape, w, b, stride, pad, saved)


def checked_inputs(fn: str, x, w, b, conv_param):
    """Check a convolution's inputs; returns (xp, stride, pad, (OH, OW))."""
    xp = _validate.float_inputs(fn, x=x, w=w, b=b)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    _validate.ndim(fn, "w", w, 4, "(F, C, HH, WW)")
    _validate.shape(fn, "b", b, (w.shape[0],), "F = w.shape[0]")
    stride, pad, out_hw = conv_geometry(fn, x.shape, w.shape, conv_param)
    return xp, stride, pad, out_hw


def conv_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx (N, C, H, W), dw (F, C, HH, WW), db (F,)) of :func:`conv_forward`.

    ``compute_dx=False`` skips dx (returns None), e.g. for a model's first layer.
    """
    x_shape, w, b, stride, pad, saved = cache
    fn = "conv_backward"
    xp = _validate.float_inputs(fn, dout=dout, w=w)
    f, _, kh, kw = w.shape
    n = x_shape[0]
    oh = conv_output_size(x_shape[2], kh, stride[0], pad[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], pad[1])
    _validate.shape(fn, "dout", dout, (n, f, oh, ow), "(N, F, OH, OW) of the forward pass")
    return get_ops(xp).conv2d_backward(dout, x_shape, w, stride, pad, saved, compute_dx, _column_budget)
