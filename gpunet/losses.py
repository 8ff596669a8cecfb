"""Losses: each returns ``(loss, dx)`` with one reduction applied in forward and backward.

``reduction``: ``"mean"`` (default; over samples for the class losses ``softmax_loss`` and
``svm_loss``, over all elements for the elementwise ones), ``"sum"``, or ``"none"``
(per-sample / per-element losses; ``dx`` is then the gradient of their sum). Losses stay
on the device as 0-d arrays: reading one back (``float(loss)``) is the caller's choice.

Class labels must be integers in [0, C). NumPy labels are range-checked here; on a device
that check would be a host sync every step, so a label out of range there makes that
sample's loss and gradient NaN instead (never a plausible wrong number): the Solver
checks labels once, on the host, before training.
"""

from __future__ import annotations

import math

from .backend import get_ops
from .backend.namespace import arange, backend_of, to_numpy
from . import _validate

REDUCTIONS = ("mean", "sum", "none")


def _reduction(fn: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(xp, per_item, grad, reduction, count):
    """Apply ``reduction`` to per-item losses and their gradient alike."""
    if reduction == "none":
        return per_item, grad
    total = xp.sum(per_item)
    if reduction == "sum":
        return total, grad
    return total / count, grad / count


def _class_inputs(fn: str, x, y):
    """Check scores x (N, C) and labels y (N,); return xp and a 0/1 validity of each label."""
    xp = _validate.float_inputs(fn, x=x)
    _validate.ndim(fn, "x", x, 2, "(N, C) of class scores")
    n, c = x.shape
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
            raise ValueError(f"{fn}: labels must be in [0, {c}) for {c} classes, got {bad} (y ranges over [{lo}, {hi}])")
    classes = arange(c, like=x, dtype=y.dtype)
    onehot = xp.astype(xp.reshape(y, (n, 1)) == classes, x.dtype)  # all-zero row for a bad label
    valid = xp.sum(onehot, axis=1)  # 1.0 for a label in range, 0.0 otherwise
    return xp, onehot, valid


def _poison(xp, valid, a):
    """a where the label was valid, NaN where it was out of range (device arrays only)."""
    shape = (valid.shape[0],) + (1,) * (a.ndim - 1)
    return xp.where(xp.reshape(valid, shape) > 0, a, math.nan)


def softmax_loss(x, y, reduction: str = "mean"):
    """Cross-entropy of softmax(x) for scores x (N, C) and labels y (N,), log-sum-exp stable.
    Returns loss and dx (N, C)."""
    fn = "softmax_loss"
    _reduction(fn, reduction)
    xp, onehot, valid = _class_inputs(fn, x, y)
    shifted = x - xp.max(x, axis=1, keepdims=True)
    log_z = xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_z
    per_sample = -xp.sum(log_probs * onehot, axis=1)
    dx = xp.exp(log_probs) - onehot
    if backend_of(x) != "numpy":
        per_sample, dx = _poison(xp, valid, per_sample), _poison(xp, valid, dx)
    return _reduce(xp, per_sample, dx, reduction, x.shape[0])


def svm_loss(x, y, reduction: str = "mean"):
    """Multiclass hinge loss sum_j!=y max(0, x_j - x_y + 1) for scores x (N, C), labels y (N,).
    Returns loss and dx (N, C); the gradient is 0 at a margin of exactly 0."""
    fn = "svm_loss"
    _reduction(fn, reduction)
    xp, onehot, valid = _class_inputs(fn, x, y)
    correct = xp.sum(x * onehot, axis=1, keepdims=True)
    margins = xp.where(onehot > 0, 0.0, xp.maximum(x - correct + 1.0, 0.0))
    per_sample = xp.sum(margins, axis=1)
    positive = xp.astype(margins > 0, x.dtype)
    dx = positive - onehot * xp.sum(positive, axis=1, keepdims=True)
    if backend_of(x) != "numpy":
        per_sample, dx = _poison(xp, valid, per_sample), _poison(xp, valid, dx)
    return _reduce(xp, per_sample, dx, reduction, x.shape[0])


def _pairwise(fn, x, y, x_name="x", y_name="y"):
    xp = _validate.float_inputs(fn, **{x_name: x, y_name: y})
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(
            f"{fn}: {y_name} must have the shape of {x_name} {tuple(x.shape)}, got {tuple(y.shape)}; "
            f"reshape one of them (e.g. {y_name}.reshape({x_name}.shape))"
        )
    return xp


def _targets_in_unit_interval(fn, y):
    if backend_of(y) == "numpy" and y.size and (float(y.min()) < 0 or float(y.max()) > 1):
        raise ValueError(f"{fn}: targets y must lie in [0, 1], got values in [{y.min()}, {y.max()}]")


def bce_loss(probs, y, reduction: str = "mean", individual_losses: bool = False):
    """Binary cross-entropy of probabilities ``probs`` (any shape) against targets y in
    [0, 1] (same shape, float). Probabilities are clipped to [eps, 1 - eps] (eps: the dtype's
    machine epsilon, at least 1e-12) so the loss stays finite. ``individual_losses=True`` (the
    I2DL name) is ``reduction="none"``. Returns loss and dx (shape of probs)."""
    fn = "bce_loss"
    reduction = "none" if individual_losses else _reduction(fn, reduction)
    xp = _pairwise(fn, probs, y, "probs", "y")
    _targets_in_unit_interval(fn, y)
    eps = max(1e-12, float(xp.finfo(probs.dtype).eps))
    p = xp.clip(probs, eps, 1 - eps)
    per_item = -(y * xp.log(p) + (1 - y) * xp.log1p(-p))
    inside = xp.astype(xp.logical_and(probs >= eps, probs <= 1 - eps), probs.dtype)
    dx = inside * (p - y) / (p * (1 - p))
    return _reduce(xp, per_item, dx, reduction, math.prod(probs.shape))


def bce_with_logits_loss(logits, y, reduction: str = "mean"):
    """Binary cross-entropy of sigmoid(logits) against targets y in [0, 1], computed as
    max(x, 0) - x*y + log1p(exp(-|x|)): finite for any |x| (1e4 included). dx = sigmoid(x) - y."""
    fn = "bce_with_logits_loss"
    _reduction(fn, reduction)
    xp = _pairwise(fn, logits, y, "logits", "y")
    _targets_in_unit_interval(fn, y)
    x = logits
    per_item = xp.maximum(x, 0.0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))
    dx = get_ops(xp).sigmoid(x) - y
    return _reduce(xp, per_item, dx, reduction, math.prod(x.shape))


def mse_loss(x, y, reduction: str = "mean"):
    """Squared error (x - y)**2 elementwise (shapes equal). Returns loss and dx = 2 (x - y)."""
    fn = "mse_loss"
    _reduction(fn, reduction)
    xp = _pairwise(fn, x, y)
    diff = x - y
    return _reduce(xp, diff * diff, 2 * diff, reduction, math.prod(x.shape))


def l1_loss(x, y, reduction: str = "mean"):
    """Absolute error |x - y| elementwise (shapes equal). Returns loss and dx = sign(x - y)."""
    fn = "l1_loss"
    _reduction(fn, reduction)
    xp = _pairwise(fn, x, y)
    diff = x - y
    return _reduce(xp, xp.abs(diff), xp.sign(diff), reduction, math.prod(x.shape))


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
