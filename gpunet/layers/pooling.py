"""Max and average pooling over (pool_height, pool_width) windows with any stride.

The layer checks its inputs once and builds a :class:`~gpunet.backend.geometry.PoolGeometry`
(output size floored as in PyTorch: rows and columns no window reaches get zero gradient;
no padding). The math is in ``get_ops(xp)`` (``max_pool``, ``avg_pool`` and their backward
passes; generic in ``gpunet/backend/ops.py``): a loop over the kh*kw window offsets, each
a strided slice of the input, never a Python loop over pixels, no scatter. As in PyTorch,
max-pool ties send the gradient to the first maximum in row-major window order, and a
window holding NaN pools to NaN and sends its gradient to its last NaN.
"""

from __future__ import annotations

from .. import _validate
from ..backend import get_ops
from ..backend.geometry import PoolGeometry

__all__ = ["avg_pool_backward", "avg_pool_forward", "max_pool_backward", "max_pool_forward"]

_KEYS = {"pool_height", "pool_width", "stride"}


_geometries: dict = {}  # geometries that passed the checks, by shape and memo_key(pool_param)


def pool_geometry(fn: str, x_shape, pool_param) -> PoolGeometry:
    """Check a pooling's parameters against the 4-D ``x_shape``; returns its geometry (cached
    by shape and parameters: only a combination that passed is skipped)."""
    memo = _validate.memo_key(pool_param)
    key = None if memo is None else (tuple(x_shape), memo)
    return _validate.cached(_geometries, key, lambda: _checked_geometry(fn, x_shape, pool_param))


def _checked_geometry(fn: str, x_shape, pool_param) -> PoolGeometry:
    _validate.keys(fn, "pool_param", pool_param, _KEYS, {"pool_height", "pool_width"})
    kh = _validate.integer("pool_param['pool_height']", pool_param["pool_height"], low=1, fn=fn)
    kw = _validate.integer("pool_param['pool_width']", pool_param["pool_width"], low=1, fn=fn)
    stride = _validate.pair(fn, "pool_param['stride']", pool_param.get("stride", (kh, kw)), low=1)
    try:
        return PoolGeometry(tuple(x_shape), (kh, kw), stride)
    except ValueError as exc:
        raise _validate.ArgumentError(f"{fn}: {exc}") from None


def _checked(fn: str, x, pool_param):
    xp = _validate.float_inputs(fn, x=x)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    return xp, pool_geometry(fn, x.shape, pool_param)


def max_pool_forward(x, pool_param):
    """Max pooling of x (N, C, H, W); pool_param: 'pool_height', 'pool_width', 'stride'
    (int or (h, w); default: the window, i.e. non-overlapping). Returns out (N, C, OH, OW), cache."""
    xp, geo = _checked("max_pool_forward", x, pool_param)
    out = get_ops(xp).max_pool(x, geo)
    return out, (x, out, geo)


def max_pool_backward(dout, cache):
    """dx (N, C, H, W) of max pooling: each dout goes to the first maximum of its window."""
    x, out, geo = cache
    xp = _validate.float_inputs("max_pool_backward", dout=dout, x=x)
    _validate.shape("max_pool_backward", "dout", dout, out.shape, "(N, C, OH, OW) of the forward pass")
    return get_ops(xp).max_pool_backward(dout, x, out, geo)


def avg_pool_forward(x, pool_param):
    """Average pooling of x (N, C, H, W); pool_param as for :func:`max_pool_forward`.
    Returns out (N, C, OH, OW) and cache (x, geometry)."""
    xp, geo = _checked("avg_pool_forward", x, pool_param)
    return get_ops(xp).avg_pool(x, geo), (x, geo)


def avg_pool_backward(dout, cache):
    """dx (N, C, H, W) of average pooling: dout / (kh*kw) to every element of its window."""
    x, geo = cache
    xp = _validate.float_inputs("avg_pool_backward", dout=dout, x=x)
    _validate.shape("avg_pool_backward", "dout", dout, geo.out_shape, "(N, C, OH, OW) of the forward pass")
    return get_ops(xp).avg_pool_backward(dout, geo)
