"""2-D convolution (cross-correlation, as CS231n and PyTorch) by im2col and GEMM.

The layer checks its inputs once and builds a :class:`~gpunet.backend.geometry.ConvGeometry`
(any stride, padding and dilation; output size floored as in PyTorch); the math is
``get_ops(xp).conv2d_forward`` / ``conv2d_backward``: generic in ``gpunet/backend/ops.py``,
NumPy's in ``numpy_ops.py``, CuPy's over the kernels of ``gpunet/cuda/conv.py``.

Memory: the batch is split so that one chunk's im2col columns never exceed the column
budget (default 256 MiB; :func:`set_column_budget`, or the environment variable
``GPUNET_CONV_BUDGET_MB``, read on first use). Results do not depend on the budget.
"""

from __future__ import annotations

import math
import os

from .. import _validate
from ..backend import get_ops
from ..backend.geometry import ConvGeometry

__all__ = ["conv_backward", "conv_forward"]

_KEYS = {"stride", "pad", "dilation"}
BUDGET_ENV = "GPUNET_CONV_BUDGET_MB"
DEFAULT_BUDGET_MB = 256

_column_budget: int | None = None  # None: not read from the environment yet


def _budget_from_env() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0):
        raise ValueError(
            f"environment variable {BUDGET_ENV} must be a number of MiB > 0 (e.g. {BUDGET_ENV}="
            f"{DEFAULT_BUDGET_MB}), got {raw!r}; fix or unset it"
        )
    return max(1, int(mb * 2**20))


def set_column_budget(nbytes: int) -> int:
    """Set the most bytes one chunk of convolution columns may take; returns the old value.

    Convolutions split the batch to stay under it (at least one sample per chunk).
    """
    global _column_budget
    nbytes = _validate.integer("nbytes", nbytes, low=1, fn="set_column_budget")
    old, _column_budget = get_column_budget(), nbytes
    return old


def get_column_budget() -> int:
    """The convolution column budget in bytes (from ``GPUNET_CONV_BUDGET_MB`` on first use)."""
    global _column_budget
    if _column_budget is None:
        _column_budget = _budget_from_env()
    return _column_budget


_geometries: dict = {}  # geometries that passed the checks, by shapes and memo_key(conv_param)


def conv_geometry(fn: str, x_shape, w_shape, conv_param) -> ConvGeometry:
    """Check a convolution's parameters against its shapes; returns its geometry (cached by
    shapes and parameters: only a combination that passed is skipped)."""
    memo = _validate.memo_key(conv_param)
    key = None if memo is None else (tuple(x_shape), tuple(w_shape), memo)
    return _validate.cached(_geometries, key, lambda: _checked_geometry(fn, x_shape, w_shape, conv_param))


def _checked_geometry(fn: str, x_shape, w_shape, conv_param) -> ConvGeometry:
    _validate.keys(fn, "conv_param", conv_param, _KEYS)
    stride = _validate.pair(fn, "conv_param['stride']", conv_param.get("stride", 1), low=1)
    pad = _validate.pair(fn, "conv_param['pad']", conv_param.get("pad", 0), low=0)
    dilation = _validate.pair(fn, "conv_param['dilation']", conv_param.get("dilation", 1), low=1)
    try:
        return ConvGeometry(tuple(x_shape), tuple(w_shape), stride, pad, dilation)
    except ValueError as exc:
        raise _validate.ArgumentError(f"{fn}: {exc}") from None


def checked_inputs(fn: str, x, w, b, conv_param):
    """Check a convolution's inputs; returns (xp, geometry)."""
    xp = _validate.float_inputs(fn, x=x, w=w, b=b)
    _validate.ndim(fn, "x", x, 4, "(N, C, H, W)")
    _validate.ndim(fn, "w", w, 4, "(F, C, HH, WW)")
    _validate.shape(fn, "b", b, (w.shape[0],), "F = w.shape[0]")
    return xp, conv_geometry(fn, x.shape, w.shape, conv_param)


def conv_forward(x, w, b, conv_param):
    """Convolution of x (N, C, H, W) with filters w (F, C, HH, WW) and bias b (F,).

    conv_param: 'stride', 'pad' and 'dilation' (int or (h, w) pair; defaults 1, 0, 1; zero
    padding). Returns out (N, F, OH, OW), OH = (H + 2*pad - dilation*(HH - 1) - 1) // stride + 1,
    and cache.
    """
    xp, geo = checked_inputs("conv_forward", x, w, b, conv_param)
    out, saved = get_ops(xp).conv2d_forward(x, w, b, geo, get_column_budget())
    return out, (w, geo, saved)


def conv_backward(dout, cache, compute_dx: bool = True):
    """Gradients (dx (N, C, H, W), dw (F, C, HH, WW), db (F,)) of :func:`conv_forward`.

    ``compute_dx=False`` skips dx (returns None), e.g. for a model's first layer.
    """
    w, geo, saved = cache
    fn = "conv_backward"
    xp = _validate.float_inputs(fn, dout=dout, w=w)
    _validate.shape(fn, "dout", dout, geo.out_shape, "(N, F, OH, OW) of the forward pass")
    return get_ops(xp).conv2d_backward(dout, w, geo, saved, compute_dx, get_column_budget())
