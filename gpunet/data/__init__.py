"""Datasets, splits, normalisation and minibatches.

Every loader returns a :class:`Dataset` of host NumPy arrays (``X_*`` float32, images
(N, C, H, W); ``y_*`` int64) with a seeded, stratified train/val(/test) split and, by
default, per-channel standardisation computed on the training split::

    ds = gpunet.data.load_digits()                  # shipped with gpunet, no download
    solver = Solver(model, ds.as_solver_data(), ...)
    for Xb, yb in gpunet.data.BatchIterator(ds.X_train, ds.y_train, 128, shuffle=True, seed=0):
        ...                                         # Xb, yb on the current backend

``load_dataset(name)`` picks a loader by the names the ``gpunet train`` CLI uses.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from .._validate import ArgumentError
from .batches import BatchIterator, iterate_minibatches
from .cifar import load_cifar10, load_cifar_batch
from .dataset import Dataset
from .embedded import load_breast_cancer, load_digits
from .errors import DataFormatError, DatasetNotFoundError, IDXFormatError, UnsafePickleError
from .idx import read_idx, write_idx
from .locate import DataSource
from .mnist import load_fashion_mnist, load_mnist
from .safe_pickle import RestrictedUnpickler, safe_load_pickle
from .splits import channel_stats, normalize, split_indices, train_val_test_split

#: name -> (loader, takes a path argument)
DATASETS: dict[str, tuple[Callable[..., Dataset], bool]] = {
    "digits": (load_digits, False),
    "breast-cancer": (load_breast_cancer, False),
    "fashion-mnist": (load_fashion_mnist, True),
    "mnist": (load_mnist, True),
    "cifar10": (load_cifar10, True),
}


def load_dataset(name: str, path=None, **kwargs) -> Dataset:
    """Load a dataset by name (one of :data:`DATASETS`: ``digits``, ``breast-cancer``,
    ``fashion-mnist``, ``mnist``, ``cifar10``); ``path`` and ``kwargs`` (``val``,
    ``seed``, ``normalize``, ``flatten``, ...) go to its loader. An unknown name or
    keyword is an :class:`ArgumentError` listing what is accepted."""
    if not isinstance(name, str):
        raise ArgumentError(f"load_dataset: name must be a str such as 'digits', got {name!r}")
    key = name.strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        close = difflib.get_close_matches(key, DATASETS, n=1)
        raise ArgumentError(
            f"load_dataset: unknown dataset {name!r}; expected one of {', '.join(DATASETS)}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    loader, takes_path = DATASETS[key]
    accepted = [p.name for p in inspect.signature(loader).parameters.values()
                if p.kind is p.KEYWORD_ONLY]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hint = (" (the splits are already shuffled with `seed`; minibatches are shuffled by "
                "BatchIterator(..., shuffle=True) and the Solver)") if "shuffle" in unknown else ""
        raise ArgumentError(
            f"load_dataset({key!r}): unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted)}{hint}"
        )
    if takes_path:
        return loader(path, **kwargs)
    if path is not None:
        raise ArgumentError(
            f"load_dataset: dataset {key!r} ships inside gpunet and takes no path; got path={path!r}"
        )
    return loader(**kwargs)


__all__ = [
    "BatchIterator",
    "DATASETS",
    "DataFormatError",
    "DataSource",
    "Dataset",
    "DatasetNotFoundError",
    "IDXFormatError",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "channel_stats",
    "iterate_minibatches",
    "load_breast_cancer",
    "load_cifar10",
    "load_cifar_batch",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "normalize",
    "read_idx",
    "safe_load_pickle",
    "split_indices",
    "train_val_test_split",
    "write_idx",
]
