"""The :class:`Dataset` every loader returns: six host NumPy splits plus metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .._validate import boolean
from .._validate import seed as check_seed
from .locate import DataSource
from .splits import channel_stats, normalize, split_indices, split_size

_SPLITS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test splits on the host: ``X_*`` float32 (N, C, H, W) for images or
    (N, D) for tables/flattened images, ``y_*`` int64 (N,) class indices.

    ``mean``/``std`` (float32, shape (C,) of the unflattened sample) are the per-channel
    statistics of the training split that were applied to all three splits, or ``None``
    when the data is not normalised. ``source`` says which files were read and how they
    were found (``str(ds.source)`` is one line for a user; ``None`` for arrays made in
    memory). ``as_solver_data()`` gives the Solver's data dict.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    source: DataSource | None = None
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (1, 28, 28), or (784,) once flattened."""
        return tuple(self.X_train.shape[1:])

    @property
    def num_features(self) -> int:
        """Values per sample: the input size of a fully connected first layer."""
        return math.prod(self.sample_shape)

    @property
    def is_flat(self) -> bool:
        return self.X_train.ndim == 2

    def as_solver_data(self, include_test: bool = False) -> dict:
        """The CS231n Solver's ``data`` dict: ``X_train, y_train, X_val, y_val`` (plus
        ``X_test, y_test`` if asked), host NumPy arrays (not copies)."""
        keys = _SPLITS if include_test else _SPLITS[:4]
        return {k: getattr(self, k) for k in keys}

    def splits(self) -> dict:
        """All six arrays by name (``X_train`` ... ``y_test``)."""
        return self.as_solver_data(include_test=True)

    def flatten(self) -> Dataset:
        """The same data with every sample flattened to (D,) for an MLP (views, no copy)."""
        return replace(
            self,
            **{k: getattr(self, k).reshape(len(getattr(self, k)), -1) for k in _SPLITS[::2]},
        )

    def normalized(self) -> Dataset:
        """Per-channel standardised copy: mean/std from the training split only, applied
        to train, val and test; the statistics are kept in ``mean``/``std``."""
        if self.mean is not None:
            raise ValueError(
                f"dataset {self.name!r} is already normalised (mean/std are set); "
                "load it with normalize=False to get the raw values"
            )
        mean, std = channel_stats(self.X_train)
        return replace(
            self,
            mean=mean,
            std=std,
            **{k: normalize(getattr(self, k), mean, std) for k in _SPLITS[::2]},
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={getattr(self, k).shape}" for k in _SPLITS[::2])
        norm = "normalised" if self.mean is not None else "not normalised"
        return (
            f"Dataset({self.name!r}, {shapes}, num_classes={self.num_classes}, {norm}"
            + (f", source={str(self.source)!r})" if self.source else ")")
        )


def make_dataset(
    name: str,
    X,
    y,
    classes,
    *,
    X_test=None,
    y_test=None,
    val=0.1,
    test=0.2,
    seed=0,
    stratify=True,
    normalize=True,
    flatten=False,
    scale=None,
    source: DataSource | None = None,
    info: dict | None = None,
) -> Dataset:
    """Split ``X`` (N, ...) / ``y`` (N,) into train/val(/test) and wrap it in a Dataset.

    With an official test set (``X_test``/``y_test``) only ``val`` is carved out of
    ``X``; otherwise ``val`` and ``test`` both are. Each split becomes float32 (times
    ``scale`` if given, e.g. 1/255 for uint8 pixels), then is optionally normalised
    (training-split statistics) and flattened.
    """
    y = np.asarray(y, dtype=np.int64)
    if X_test is not None:
        tr, va, _ = split_indices(y, val=val, test=0, seed=seed, stratify=stratify)
        Xte, yte = X_test, np.asarray(y_test, dtype=np.int64)
    else:
        tr, va, te = split_indices(y, val=val, test=test, seed=seed, stratify=stratify)
        Xte, yte = X[te], y[te]
    # Split first (cheap on uint8), then convert each split to a fresh float32 array
    # that may be normalised in place: peak memory stays near one float32 copy.
    Xs = [_to_float32(part, scale) for part in (X[tr], X[va], Xte)]
    mean = std = None
    if normalize:
        mean, std = channel_stats(Xs[0])
        shape = (1, -1) + (1,) * (Xs[0].ndim - 2)
        for part in Xs:
            part -= mean.reshape(shape)
            part /= std.reshape(shape)
    ds = Dataset(
        name=name,
        X_train=Xs[0],
        y_train=y[tr],
        X_val=Xs[1],
        y_val=y[va],
        X_test=Xs[2],
        y_test=yte,
        classes=tuple(classes),
        mean=mean,
        std=std,
        source=source,
        info=dict(info or {}),
    )
    if flatten:
        ds = ds.flatten()
    return ds


def check_options(fn: str, *, val, test=0.0, seed, stratify, normalize, flatten) -> None:
    """Check the options every loader takes before it reads a file (the sizes against
    the number of samples are checked again when splitting)."""
    split_size("val", val, None, fn)
    split_size("test", test, None, fn)
    check_seed("seed", seed, fn=fn)
    for name, flag in (("stratify", stratify), ("normalize", normalize), ("flatten", flatten)):
        boolean(name, flag, fn=fn)


def _to_float32(X, scale) -> np.ndarray:
    """A new float32 array ``X * scale`` (or a float32 copy of ``X``)."""
    out = np.array(X, dtype=np.float32, copy=True)
    if scale is not None:
        out *= np.float32(scale)
    return out
