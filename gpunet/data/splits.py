"""Seeded train/val/test splits and per-channel normalisation (host NumPy arrays).

Statistics are computed on the training split only and then applied to every split,
so nothing about val/test leaks into training.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from .. import _validate
from .._validate import ArgumentError, boolean, integer, real


def split_size(what: str, size, n: int | None, fn: str = "split_indices") -> int | None:
    """``size`` (a fraction in [0, 1) or an int count of samples) as a count of ``n``
    samples; with ``n=None`` only its type and range are checked (returns None)."""
    try:
        if isinstance(size, Integral):  # Python or NumPy int; bool is refused by integer()
            count = integer(what, size, low=0, high=None if n is None else max(n - 1, 0), fn=fn)
            return None if n is None else count
        real(what, size, low=0.0, high=1.0, high_open=True, fn=fn)
    except ArgumentError as exc:
        raise ArgumentError(
            f"{exc}; {what} is a fraction in [0, 1) of the samples or an int count of them, "
            f"e.g. {what}=0.1 or {what}=100"
        ) from None
    return None if n is None else int(round(float(size) * n))


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder);
    the result sums to exactly ``total`` and never exceeds ``counts``."""
    if total == 0 or counts.sum() == 0:
        return np.zeros_like(counts)
    ideal = counts * (total / counts.sum())
    base = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - base), kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return base


def split_indices(y, *, val=0.1, test=0.0, seed=0, stratify=True):
    """Disjoint index arrays ``(train, val, test)`` covering ``range(len(y))``.

    ``y`` is the label vector (or an int ``n`` for an unlabelled, unstratified split).
    ``val``/``test`` are fractions in [0, 1) of all samples or sample counts. With
    ``stratify`` each class is split in proportion to its size. Deterministic for a given
    ``seed`` (int or ``np.random.Generator``); each returned array is in shuffled order.
    """
    seed = _validate.seed("seed", seed, fn="split_indices")
    stratify = boolean("stratify", stratify, fn="split_indices")
    if isinstance(y, Integral):
        n, classes, stratify = integer("y", y, low=0, fn="split_indices"), (), False
    else:
        labels = np.asarray(y)
        if labels.ndim != 1:
            raise ArgumentError(f"split_indices: labels must be 1-D (N,), got shape {labels.shape}")
        n = labels.shape[0]
        classes, inverse = np.unique(labels, return_inverse=True)
    n_val, n_test = split_size("val", val, n), split_size("test", test, n)
    need = max(len(classes), 1)
    if n - n_val - n_test < need:
        raise ArgumentError(
            f"split_indices: val={val!r} ({n_val} samples) and test={test!r} ({n_test}) leave "
            f"{max(n - n_val - n_test, 0)} of {n} samples for training; at least {need} are "
            f"needed ({'one per class' if len(classes) else 'one'}); make val and test "
            f"smaller, together at most {n - need} samples"
        )
    rng = np.random.default_rng(seed)
    if not stratify:
        perm = rng.permutation(n)
        return perm[n_test + n_val :], perm[n_test : n_test + n_val], perm[:n_test]

    counts = np.bincount(inverse, minlength=len(classes))
    test_k = _allocate(counts, n_test)
    val_k = _allocate(counts - test_k, n_val)
    parts = ([], [], [])
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        t, v = test_k[k], val_k[k]
        parts[2].append(members[:t])
        parts[1].append(members[t : t + v])
        parts[0].append(members[t + v :])
    train, val_idx, test_idx = (rng.permutation(np.concatenate(p)) for p in parts)
    return train, val_idx, test_idx


def train_val_test_split(X, y, *, val=0.1, test=0.2, seed=0, stratify=True):
    """``(X_train, y_train, X_val, y_val, X_test, y_test)``: rows of ``X`` (N, ...) and
    ``y`` (N,) split by :func:`split_indices` (fractions or counts, seeded, stratified)."""
    X, y = np.asarray(X), np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same number of samples, got X {X.shape} and y {y.shape}"
        )
    tr, va, te = split_indices(y, val=val, test=test, seed=seed, stratify=stratify)
    return X[tr], y[tr], X[va], y[va], X[te], y[te]


def channel_stats(X, *, block: int = 4096, eps: float = 1e-8):
    """Per-channel ``(mean, std)`` of ``X`` (N, C, ...) over every axis but axis 1, as
    float32 arrays of shape (C,); for 2-D ``X`` (N, D) that is per feature.

    Accumulated in float64 over blocks of samples (no full-size float64 copy). A channel
    whose std is below ``eps`` gets std 1, so it normalises to 0 instead of inf.
    """
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(
            f"channel_stats needs X of shape (N, C, ...) with N > 0, got shape {X.shape}"
        )
    n, c = X.shape[0], X.shape[1]
    X3 = X.reshape(n, c, -1)
    count = n * X3.shape[2]
    total = np.zeros(c)
    for i in range(0, n, block):
        total += X3[i : i + block].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    sq = np.zeros(c)
    for i in range(0, n, block):
        d = X3[i : i + block].astype(np.float64) - mean[:, None]
        sq += np.einsum("nck,nck->c", d, d)
    std = np.sqrt(sq / count)
    std[std < eps] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(X, mean, std):
    """``(X - mean) / std`` with ``mean``/``std`` (C,) broadcast over axis 1 of ``X``
    (N, C, ...); a new array in ``X``'s float dtype (``X`` is not modified)."""
    X = np.asarray(X)
    mean, std = np.asarray(mean), np.asarray(std)
    if X.ndim < 2 or mean.shape != (X.shape[1],) or std.shape != (X.shape[1],):
        raise ValueError(
            f"normalize expects X (N, C, ...) with mean and std of shape (C,); got X "
            f"{X.shape}, mean {mean.shape}, std {std.shape}"
        )
    dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float32)
    shape = (1, X.shape[1]) + (1,) * (X.ndim - 2)
    out = X.astype(dtype, copy=True)
    out -= mean.astype(dtype).reshape(shape)
    out /= std.astype(dtype).reshape(shape)
    return out
