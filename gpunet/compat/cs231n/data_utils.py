"""CS231n's ``cs231n/data_utils.py`` for CIFAR-10, reading the extracted python batches
through gpunet's restricted unpickler (no pickle can run code) in CS231n's layout:
images (N, 32, 32, 3) float64 from ``load_CIFAR10``, (N, 3, 32, 32) from
``get_CIFAR10_data``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ... import _validate
from ...data import DatasetNotFoundError, load_cifar_batch
from ...data.cifar import TEST_BATCH, TRAIN_BATCHES
from ...data.locate import ENV_VAR

__all__ = ["get_CIFAR10_data", "load_CIFAR10", "load_CIFAR_batch"]


def load_CIFAR_batch(filename):
    """One CIFAR-10 batch file: X float64 (N, 32, 32, 3), Y int64 (N,)."""
    X, Y = load_cifar_batch(filename)
    return X.transpose(0, 2, 3, 1).astype(np.float64), Y


def _batches_dir(root) -> Path:
    """``root`` or ``root/cifar-10-batches-py``, whichever holds the six batch files."""
    hint = ("download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
            f"extract it and pass the cifar-10-batches-py folder (or set {ENV_VAR} to its parent)")
    if root is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise DatasetNotFoundError(f"CIFAR-10: no directory was given and ${ENV_VAR} is not set; {hint}")
    base = Path(root).expanduser()
    for directory in (base, base / "cifar-10-batches-py"):
        if all((directory / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
            return directory
    raise DatasetNotFoundError(f"CIFAR-10 not found: neither {base} nor {base / 'cifar-10-batches-py'} holds "
                               f"data_batch_1..5 and test_batch; {hint}")


def load_CIFAR10(ROOT):
    """All of CIFAR-10 from ``ROOT`` (the ``cifar-10-batches-py`` folder or its parent; None:
    ``$GPUNET_DATA``): Xtr (50000, 32, 32, 3), Ytr, Xte (10000, 32, 32, 3), Yte."""
    directory = _batches_dir(ROOT)
    parts = [load_CIFAR_batch(directory / name) for name in TRAIN_BATCHES]
    Xte, Yte = load_CIFAR_batch(directory / TEST_BATCH)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), Xte, Yte


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True,
                     cifar10_dir=None):
    """CIFAR-10 split as in CS231n: the first ``num_training`` training images, the next
    ``num_validation`` as validation, the first ``num_test`` test images; the training mean
    image subtracted (``subtract_mean``); images (N, 3, 32, 32) float64. Returns a dict
    with X_train, y_train, X_val, y_val, X_test, y_test."""
    fn = "get_CIFAR10_data"
    num_training = _validate.integer("num_training", num_training, low=1, fn=fn)
    num_validation = _validate.integer("num_validation", num_validation, low=0, fn=fn)
    num_test = _validate.integer("num_test", num_test, low=0, fn=fn)
    subtract_mean = _validate.boolean("subtract_mean", subtract_mean, fn=fn)
    X_train, y_train, X_test, y_test = load_CIFAR10(cifar10_dir)
    if num_training + num_validation > X_train.shape[0] or num_test > X_test.shape[0]:
        raise _validate.ArgumentError(
            f"{fn}: asked for {num_training} + {num_validation} training/validation and {num_test} "
            f"test images, the files hold {X_train.shape[0]} and {X_test.shape[0]}")
    X_val = X_train[num_training:num_training + num_validation]
    y_val = y_train[num_training:num_training + num_validation]
    X_train, y_train = X_train[:num_training], y_train[:num_training]
    X_test, y_test = X_test[:num_test], y_test[:num_test]
    if subtract_mean:
        mean_image = np.mean(X_train, axis=0)
        X_train, X_val, X_test = X_train - mean_image, X_val - mean_image, X_test - mean_image
    return {
        "X_train": X_train.transpose(0, 3, 1, 2).copy(), "y_train": y_train,
        "X_val": X_val.transpose(0, 3, 1, 2).copy(), "y_val": y_val,
        "X_test": X_test.transpose(0, 3, 1, 2).copy(), "y_test": y_test,
    }
