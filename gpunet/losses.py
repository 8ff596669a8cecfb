"""Losses: each returns ``(loss, dx)`` with one reduction applied in forward and backward.

``reduction``: ``"mean"`` (default; over samples for the class losses ``softmax_loss`` and
``svm_loss``, over all elements for the elementwise ones), ``"sum"``, or ``"none"``
(per-sample / per-element losses; ``dx`` is then the gradient of their sum). Losses stay
on the device as 0-d arrays: reading one back (``float(loss)``) is the caller's choice.

Class labels must be integers in [0, C), binary probabilities and targets in [0, 1]. NumPy
inputs are range-checked here (as PyTorch does); on a device that check would be a host
sync every step, so a value out of range there makes its loss NaN instead (never a
plausible wrong number): the Solver checks labels once, on the host, before training.

float16 inputs are computed in float32 (their exponentials and sums overflow at 65504)
and the loss and gradient returned in float16.
"""

from __future__ import annotations

import math

from . import _validate
from .backend import get_array_module, get_ops
from .backend.namespace import arange, backend_of, to_numpy
from .backend.ops import host_dtype

REDUCTIONS = ("mean", "sum", "none")


def _reduction(fn: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _widen(xp, a):
    """``a`` in float32 if it is float16 (computations of a loss), else as given."""
    return xp.astype(a, xp.float32) if host_dtype(a.dtype) == "float16" else a


def _reduce(xp, per_item, grad, reduction, count, dtype):
    """Apply ``reduction`` to per-item losses and their gradient alike; both in ``dtype``."""
    if reduction != "none":
        per_item = xp.sum(per_item)
        if reduction == "mean":
            per_item, grad = per_item / count, grad / count
    if per_item.dtype != dtype:
        per_item, grad = xp.astype(per_item, dtype), xp.astype(grad, dtype)
    return per_item, grad


def _class_inputs(fn: str, x, y):
    """Check scores x (N, C) and labels y (N,); return xp, x's dtype, x to compute with
    (float32 for float16), the one-hot labels in its dtype and a 0/1 validity of each label."""
    xp = _validate.float_inputs(fn, x=x)
    _validate.ndim(fn, "x", x, 2, "(N, C) of class scores")
    n, c = x.shape
    if c == 0:
        raise ValueError(f"{fn}: scores x must have at least one class column, got shape {tuple(x.shape)}")
    if hasattr(y, "dtype"):
        get_array_module(x, y)  # arrays of two backends: the TypeError that names both
    if not hasattr(y, "dtype") or not xp.isdtype(y.dtype, "integral"):
        given = getattr(y, "dtype", type(y).__name__)
        raise ValueError(
            f"{fn}: labels y must be an integer array of class indices in [0, {c}), got dtype "
            f"{given}; convert with y.astype('int64') if the values are whole numbers"
        )
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{fn}: labels y must have shape ({n},) to match x {tuple(x.shape)}, got {tuple(y.shape)}")
    if backend_of(y) == "numpy" and n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= c:
            bad = int(y[(y < 0) | (y >= c)][0])
            raise ValueError(
                f"{fn}: labels must be in [0, {c}) for {c} classes, got {bad} (y ranges over [{lo}, {hi}])"
            )
    dtype, x = x.dtype, _widen(xp, x)
    classes = arange(c, like=x, dtype=y.dtype)
    onehot = xp.astype(xp.reshape(y, (n, 1)) == classes, x.dtype)  # all-zero row for a bad label
    valid = xp.sum(onehot, axis=1)  # 1.0 for a label in range, 0.0 otherwise
    return xp, dtype, x, onehot, valid


def _poison(xp, valid, a):
    """a where the label was valid, NaN where it was out of range (device arrays only)."""
    shape = (valid.shape[0],) + (1,) * (a.ndim - 1)
    return xp.where(xp.reshape(valid, shape) > 0, a, math.nan)


def softmax_loss(x, y, reduction: str = "mean"):
    """Cross-entropy of softmax(x) for scores x (N, C) and labels y (N,), log-sum-exp stable.
    Returns loss and dx (N, C)."""
    fn = "softmax_loss"
    _reduction(fn, reduction)
    xp, dtype, x, onehot, valid = _class_inputs(fn, x, y)
    shifted = x - xp.max(x, axis=1, keepdims=True)
    log_z = xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_z
    per_sample = -xp.sum(log_probs * onehot, axis=1)
    dx = xp.exp(log_probs) - onehot
    if backend_of(x) != "numpy":
        per_sample, dx = _poison(xp, valid, per_sample), _poison(xp, valid, dx)
    return _reduce(xp, per_sample, dx, reduction, x.shape[0], dtype)


def svm_loss(x, y, reduction: str = "mean"):
    """Multiclass hinge loss sum_j!=y max(0, x_j - x_y + 1) for scores x (N, C), labels y (N,).
    Returns loss and dx (N, C); the gradient is 0 at a margin of exactly 0."""
    fn = "svm_loss"
    _reduction(fn, reduction)
    xp, dtype, x, onehot, valid = _class_inputs(fn, x, y)
    correct = xp.sum(x * onehot, axis=1, keepdims=True)
    margins = xp.where(onehot > 0, 0.0, xp.maximum(x - correct + 1.0, 0.0))
    per_sample = xp.sum(margins, axis=1)
    positive = xp.astype(margins > 0, x.dtype)
    dx = positive - onehot * xp.sum(positive, axis=1, keepdims=True)
    if backend_of(x) != "numpy":
        per_sample, dx = _poison(xp, valid, per_sample), _poison(xp, valid, dx)
    return _reduce(xp, per_sample, dx, reduction, x.shape[0], dtype)


def _pairwise(fn, x, y, x_name="x", y_name="y"):
    """Check x and y of one shape and dtype; return xp, that dtype and both to compute with
    (float32 for float16)."""
    xp = _validate.float_inputs(fn, **{x_name: x, y_name: y})
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(
            f"{fn}: {y_name} must have the shape of {x_name} {tuple(x.shape)}, got {tuple(y.shape)}; "
            f"reshape one of them (e.g. {y_name}.reshape({x_name}.shape))"
        )
    return xp, x.dtype, _widen(xp, x), _widen(xp, y)


def _unit_interval(fn: str, xp, *named):
    """Refuse NumPy values outside [0, 1] (NaN included) of the (name, array) pairs on the
    host, as PyTorch does; for device arrays (a check would sync) return a boolean mask of
    the elements where all are inside (None: nothing to mask)."""
    inside = None
    for name, a in named:
        if backend_of(a) == "numpy":
            if a.size and not (float(a.min()) >= 0 and float(a.max()) <= 1):  # NaN fails both
                raise ValueError(f"{fn}: {name} must lie in [0, 1] (no NaN), got values in [{a.min()}, {a.max()}]")
        else:
            ok = xp.logical_and(a >= 0, a <= 1)
            inside = ok if inside is None else xp.logical_and(inside, ok)
    return inside


def _poison_outside(xp, inside, per_item):
    """per_item, NaN where ``inside`` (a mask from :func:`_unit_interval`) is false."""
    return per_item if inside is None else xp.where(inside, per_item, math.nan)


def bce_loss(probs, y, reduction: str = "mean", individual_losses: bool = False):
    """Binary cross-entropy of probabilities ``probs`` (any shape) against targets y in
    [0, 1] (same shape, float). Probabilities are clipped to [eps, 1 - eps] (eps: the dtype's
    machine epsilon, at least 1e-12) so the loss stays finite. ``individual_losses=True`` (the
    I2DL name) is ``reduction="none"``. Returns loss and dx (shape of probs)."""
    fn = "bce_loss"
    reduction = "none" if _validate.boolean("individual_losses", individual_losses, fn=fn) \
        else _reduction(fn, reduction)
    xp, dtype, p, t = _pairwise(fn, probs, y, "probs", "y")
    inside = _unit_interval(fn, xp, ("probabilities probs", probs), ("targets y", y))
    eps = max(1e-12, float(xp.finfo(dtype).eps))
    clipped = xp.clip(p, eps, 1 - eps)
    per_item = _poison_outside(xp, inside, -(t * xp.log(clipped) + (1 - t) * xp.log1p(-clipped)))
    kept = xp.astype(xp.logical_and(p >= eps, p <= 1 - eps), p.dtype)
    dx = kept * (clipped - t) / (clipped * (1 - clipped))
    return _reduce(xp, per_item, dx, reduction, math.prod(probs.shape), dtype)


def bce_with_logits_loss(logits, y, reduction: str = "mean"):
    """Binary cross-entropy of sigmoid(logits) against targets y in [0, 1], computed as
    max(x, 0) - x*y + log1p(exp(-|x|)): finite for any |x| (1e4 included). dx = sigmoid(x) - y."""
    fn = "bce_with_logits_loss"
    _reduction(fn, reduction)
    xp, dtype, x, t = _pairwise(fn, logits, y, "logits", "y")
    inside = _unit_interval(fn, xp, ("targets y", y))
    per_item = _poison_outside(xp, inside, xp.maximum(x, 0.0) - x * t + xp.log1p(xp.exp(-xp.abs(x))))
    dx = get_ops(xp).sigmoid(x) - t
    return _reduce(xp, per_item, dx, reduction, math.prod(x.shape), dtype)


def mse_loss(x, y, reduction: str = "mean"):
    """Squared error (x - y)**2 elementwise (shapes equal). Returns loss and dx = 2 (x - y)."""
    fn = "mse_loss"
    _reduction(fn, reduction)
    xp, dtype, x, y = _pairwise(fn, x, y)
    diff = x - y
    return _reduce(xp, diff * diff, 2 * diff, reduction, math.prod(x.shape), dtype)


def l1_loss(x, y, reduction: str = "mean"):
    """Absolute error |x - y| elementwise (shapes equal). Returns loss and dx = sign(x - y)."""
    fn = "l1_loss"
    _reduction(fn, reduction)
    xp, dtype, x, y = _pairwise(fn, x, y)
    diff = x - y
    return _reduce(xp, xp.abs(diff), xp.sign(diff), reduction, math.prod(x.shape), dtype)


def check_labels(y, num_classes: int, name: str = "y") -> None:
    """Host-side check that labels are integers in [0, num_classes) (reads y back once)."""
    host = to_numpy(y)
    if host.dtype.kind not in "iu":
        raise ValueError(f"{name}: labels must be integers in [0, {num_classes}), got dtype {host.dtype}")
    if host.size and (host.min() < 0 or host.max() >= num_classes):
        raise ValueError(
            f"{name}: labels must be in [0, {num_classes}) for {num_classes} classes, "
            f"got values in [{host.min()}, {host.max()}]"
        )
