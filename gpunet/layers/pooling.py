"""Max and average pooling over (pool_height, pool_width) windows with any stride.

The math is in ``get_ops(xp)`` (``max_pool``, ``avg_pool`` and their backward passes;
generic in ``gpunet/backend/ops.py``): a loop over the kh*kw window offsets, each a
strided slice of the input, never a Python loop over pixels, no scatter. Max-pool ties
send the gradient to the first maximum in row-major window order (as PyTorch),
deterministically.
"""

from __future__ import annotations

from ..backend import get_ops
from ..backend.ops import conv_output_size
from .. import _validate

_KEYS = {"pool_height", "pool_width", "stride"}


def pool_geometry(fn: str, x, pool_param):
    """Check a pooling's input and return (kh, kw, (sh, sw), (OH, OW))."""
    _validate.keys(fn, "pool_param", pool_param, _KEYS, {"pool_height", "pool_width"})
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    return pool_shape_geometry(fn, tuple(x.shape), pool_param)


def pool_shape_geometry(fn: str, x_shape, pool_param):
    """:func:`pool_geometry` for an input of 4-D ``x_shape`` that does not exist yet."""
    _validate.keys(fn, "pool_param", pool_param, _KEYS, {"pool_height", "pool_width"})
    kh, kw = pool_param["pool_height"], pool_param["pool_width"]
    for name, k in (("pool_height", kh), ("pool_width", kw)):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{fn}: pool_param['{name}'] must be an int >= 1, got {k!r}")
    stride = _validate.pair(fn, "pool_param['stride']", pool_param.get("stride", (kh, kw)))
    if min(stride) < 1:
        raise ValueError(f"{fn}: pool_param['stride'] must be >= 1, got {stride}")
    out = []
    for axis, size, k, s in (("height", x_shape[2], kh, stride[0]), ("width", x_shape[3], kw, stride[1])):
        span = size - k
        if span < 0 or span % s:
            raise ValueError(
                f"{fn}: the {axis} does not tile: (size {size} - window {k}) = {span} must be "
                f">= 0 and divisible by stride {s}; change the window, stride or input size"
            )
        out.append(conv_output_size(size, k, s, 0))
    return kh, kw, stride, tuple(out)


def max_pool_forward(x, pool_param):
    """Max pooling of x (N, C, H, W); pool_param: 'pool_height', 'pool_width', 'stride'
    (int or (h, w); default: the window, i.e. non-overlapping). Returns out (N, C, OH, OW), cache."""
    xp = _validate.float_inputs("max_pool_forward", x=x)
    kh, kw, stride, out_hw = pool_geometry("max_pool_forward", x, pool_param)
    out = get_ops(xp).max_pool(x, kh, kw, stride, out_hw)
    return out, (x, out, pool_param)


def max_pool_backward(dout, cache):
    """dx (N, C, H, W) of max pooling: each dout goes to the first maximum of its window."""
    x, out, pool_param = cache
    xp = _validate.float_inputs("max_pool_backward", dout=dout, x=x)
    kh, kw, stride, out_hw = pool_geometry("max_pool_backward", x, pool_param)
    _validate.shape("max_pool_backward", "dout", dout, out.shape, "(N, C, OH, OW) of the forward pass")
    return get_ops(xp).max_pool_backward(dout, x, out, kh, kw, stride, out_hw)


def avg_pool_forward(x, pool_param):
    """Average pooling of x (N, C, H, W); pool_param as for :func:`max_pool_forward`.
    Returns out (N, C, OH, OW) and cache."""
    xp = _validate.float_inputs("avg_pool_forward", x=x)
    kh, kw, stride, out_hw = pool_geometry("avg_pool_forward", x, pool_param)
    return get_ops(xp).avg_pool(x, kh, kw, stride, out_hw), (x.shape, (kh, kw, stride, out_hw))


def avg_pool_backward(dout, cache):
    """dx (N, C, H, W) of average pooling: dout / (kh*kw) to every element of its window."""
    x_shape, (kh, kw, stride, out_hw) = cache
    xp = _validate.float_inputs("avg_pool_backward", dout=dout)
    _validate.shape("avg_pool_backward", "dout", dout, x_shape[:2] + out_hw, "(N, C, OH, OW) of the forward pass")
    return get_ops(xp).avg_pool_backward(dout, x_shape, kh, kw, stride, out_hw)

