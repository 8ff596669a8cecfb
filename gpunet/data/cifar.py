"""CIFAR-10 from its "python version" batches, read without trusting the pickles.

Each batch goes through :func:`~gpunet.data.safe_pickle.safe_load_pickle` (no code runs,
time and memory bounded by the file's size), then its content is checked against the
format: ``data`` uint8 (N, 3072), ``labels`` N integers in 0..9 (a list or an integer
array), ``batches.meta`` a dict with 10 ``label_names``. Anything else is a
:class:`~gpunet.data.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .dataset import Dataset, check_options, make_dataset
from .errors import DataFormatError, describe
from .locate import ENV_VAR, locate
from .safe_pickle import safe_load_pickle

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"


# --- CIFAR-10 --------------------------------------------------------------------------


def _text_keys(d, path, what: str) -> dict:
    """The dict ``d`` with bytes keys decoded (Python 2 pickles), else a DataFormatError."""
    if not isinstance(d, dict):
        raise DataFormatError(f"{path}: expected {what} (a dict), found {describe(d)}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _labels(labels, n: int, path) -> np.ndarray:
    """``labels`` (a list of ints or an integer array, one per image) as int64 (n,)."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or len(labels) != n:
        raise DataFormatError(
            f"{path}: 'labels' must be a list of {n} integers (one per row of 'data'), "
            f"found {describe(labels)}"
        )
    for i, v in enumerate(labels):
        if type(v) is not int or not 0 <= v <= 9:
            raise DataFormatError(
                f"{path}: labels must be integers 0..9, found labels[{i}] = {describe(v)}"
            )
    return np.array(labels, dtype=np.int64)


def load_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: images uint8 (N, 3, 32, 32) (RGB planes) and labels
    int64 (N,) in 0..9, checked against the format."""
    batch = _text_keys(safe_load_pickle(path), path, "a CIFAR-10 batch with 'data' and 'labels'")
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        found = ", ".join(sorted(describe(k) for k in batch)[:10])
        raise DataFormatError(
            f"{path}: a CIFAR-10 batch needs the keys 'data' and 'labels', missing "
            f"{missing} (found {found}); is this the CIFAR-10 *python* version "
            "(CIFAR-100 uses 'fine_labels')?"
        )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise DataFormatError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072) (32x32 pixels x 3 "
            f"channels), found {describe(data)}"
        )
    return data.reshape(-1, 3, 32, 32), _labels(batch["labels"], data.shape[0], path)


def _class_names(meta_path) -> tuple[str, ...]:
    meta = _text_keys(safe_load_pickle(meta_path), meta_path, "a dict with 'label_names'")
    names = meta.get("label_names")
    if not (isinstance(names, list) and len(names) == 10
            and all(isinstance(n, (str, bytes)) for n in names)):
        raise DataFormatError(
            f"{meta_path}: expected 'label_names', a list of 10 class names, found "
            f"{describe(names)}"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def load_cifar10(path=None, *, val=0.1, seed=0, stratify=True, normalize=True,
                 flatten=False) -> Dataset:
    """CIFAR-10 (50000 train + 10000 test 32x32 RGB images, 10 classes) from the python
    batches ``data_batch_1..5`` and ``test_batch`` in ``path`` (or its
    ``cifar-10-batches-py`` folder, or ``$GPUNET_DATA/cifar-10-batches-py``).
    ``X_*`` float32 (N, 3, 32, 32) scaled to [0, 1] (then standardised per channel if
    ``normalize``), or (N, 3072) with ``flatten``; ``val`` is carved from training."""
    options = {"val": val, "seed": seed, "stratify": stratify, "normalize": normalize,
               "flatten": flatten}
    check_options("load_cifar10", **options)
    required = {name: [name] for name in (*TRAIN_BATCHES, TEST_BATCH)}
    hint = (
        "download the CIFAR-10 python version (cifar-10-python.tar.gz, from "
        "https://www.cs.toronto.edu/~kriz/cifar.html), extract it with "
        "`tar xzf cifar-10-python.tar.gz`, and call load_cifar10(path='cifar-10-batches-py') "
        f"or set {ENV_VAR} to the directory that holds cifar-10-batches-py"
    )
    source = locate("CIFAR-10", path, "cifar-10-batches-py", required, (), hint,
                    fn="load_cifar10")
    parts = [load_cifar_batch(source.files[name]) for name in TRAIN_BATCHES]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    X_test, y_test = load_cifar_batch(source.files[TEST_BATCH])
    classes: tuple[str, ...] = CIFAR10_CLASSES
    meta = source.directory / META
    if meta.is_file():
        classes = _class_names(meta)
        source = replace(source, files={**source.files, META: meta})
    return make_dataset(
        "cifar10", X, y, classes, X_test=X_test, y_test=y_test, scale=1 / 255,
        source=source, **options,
    )
