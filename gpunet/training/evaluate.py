"""Evaluation in batches: accuracy and validation loss of a model with the CS231n contract.

The model runs in test mode (``model.loss(X)`` returns scores (N, C)) on batches placed
next to its parameters. Correct counts and the summed softmax cross-entropy
(:func:`gpunet.losses.softmax_loss`) stay on the device and are read back once per
evaluation. Labels are checked on the host (:func:`gpunet.losses.check_labels`) once,
before training or evaluation, never per batch on a device.
"""

from __future__ import annotations

import math

from .._validate import ArgumentError
from ..backend import get_array_module
from ..data.batches import rows
from ..losses import check_labels, softmax_loss
from .device import DeviceSums
from .state import first_param


def num_classes(model, X, name: str = "X") -> int:
    """Columns of the scores ``model.loss`` gives for the first row of ``X`` (test mode);
    an error the model raises for it names ``X`` as ``name``."""
    return _scores(model, rows(X, slice(0, 1), first_param(model)), 1, name).shape[1]


def check_class_labels(y, classes: int, name: str) -> None:
    """Labels ``y`` (any backend; read back once) must be integers in [0, classes)."""
    try:
        check_labels(y, classes, name=name)
    except ValueError as exc:
        raise ValueError(f"{exc}: the model gives {classes} class scores, so labels must lie "
                         f"in [0, {classes - 1}]") from None


def evaluate(model, X, y, *, batch_size: int, parallel, num_samples=None, rng=None,
             with_loss: bool = False, check: bool = True) -> tuple[float, float]:
    """``(accuracy, mean softmax cross-entropy or nan)`` of ``model`` on rows of ``X``
    (N, ...) with labels ``y`` (N,), in batches of ``batch_size``; with ``num_samples`` < N
    on a subsample drawn by ``rng`` without replacement; ``check``: check ``y`` first."""
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]} labels; give one label per row")
    if n == 0:
        raise ValueError("cannot evaluate on an empty set (X has 0 rows)")
    idx = None
    if num_samples is not None and n > num_samples:
        idx = rng.choice(n, num_samples, replace=False)
        n = num_samples
    like = first_param(model)
    sums = DeviceSums(2 if with_loss else 1)  # correct predictions (and summed loss)
    lo, hi = parallel.share(n)
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        index = slice(start, stop) if idx is None else idx[start:stop]
        scores = _scores(model, rows(X, index, like), stop - start, "X")
        if check and start == lo:
            check_class_labels(y, scores.shape[1], "y")
        yb = rows(y, index, like)
        xp = get_array_module(scores, yb)
        yb = xp.astype(yb, xp.int64)
        correct = xp.sum(xp.astype(xp.argmax(scores, axis=1) == yb, xp.int64))
        if with_loss:
            sums.add(correct, softmax_loss(scores, yb, reduction="sum")[0])
        else:
            sums.add(correct)
    host = parallel.total(sums.read())  # the one read-back
    return float(host[0]) / n, (float(host[1]) / n if with_loss else math.nan)


def _scores(model, Xb, n: int, name: str):
    """``model.loss(Xb)`` checked to be scores of shape (n, C); a ValueError or TypeError
    of the model becomes an ArgumentError naming the samples ``name``."""
    try:
        scores = model.loss(Xb)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"the model cannot take {name} (samples of shape {tuple(Xb.shape[1:])}): "
                            f"{exc}") from exc
    if len(scores.shape) != 2 or scores.shape[0] != n:
        raise ValueError(f"model.loss(X) returned scores of shape {tuple(scores.shape)}; "
                         f"expected ({n}, num_classes)")
    return scores
