"""MNIST and Fashion-MNIST from their four IDX files (raw or gzip).

Fashion-MNIST is found at the ``path`` argument, else ``$GPUNET_DATA/fashion-mnist`` or
``$GPUNET_DATA``, else ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package
``dataset-fashion-mnist``). MNIST: the ``path`` argument, else ``$GPUNET_DATA/mnist``.
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset, check_options, make_dataset
from .errors import IDXFormatError
from .idx import read_idx
from .locate import ENV_VAR, locate

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

_PARTS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _names(stem: str) -> list[str]:
    # Official names, with and without .gz, and the dotted spelling some mirrors use
    # (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    return [stem + ".gz", stem, dotted + ".gz", dotted]


REQUIRED = {f"{stem}[.gz]": _names(stem) for stem in _PARTS}


def _read_split(images_path, labels_path):
    """Images uint8 (N, 1, 28, 28) and labels int64 (N,) of one split, checked."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), found "
            f"{images.dtype} {images.shape}; is this an images file (idx3-ubyte)?"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IDXFormatError(
            f"{labels_path}: expected uint8 labels of shape (N,), found {labels.dtype} "
            f"{labels.shape}; is this a labels file (idx1-ubyte)?"
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the two files must come from the same split"
        )
    if labels.size and labels.max() > 9:
        raise IDXFormatError(
            f"{labels_path}: labels must be 0..9, found {int(labels.max())}"
        )
    return images[:, None, :, :], labels.astype(np.int64)


def _load(fn, title, classes, path, subdir, system_dirs, hint, env_root, **options) -> Dataset:
    """Locate, read and split one of the two datasets; ``options`` are the loader's
    keywords (val, seed, stratify, normalize, flatten)."""
    check_options(fn, **options)
    source = locate(title, path, subdir, REQUIRED, system_dirs, hint, env_root, fn)
    tr_img, tr_lab, te_img, te_lab = (source.files[label] for label in REQUIRED)
    X, y = _read_split(tr_img, tr_lab)
    X_test, y_test = _read_split(te_img, te_lab)
    return make_dataset(
        subdir, X, y, classes, X_test=X_test, y_test=y_test, scale=1 / 255, source=source,
        **options,
    )


def load_fashion_mnist(path=None, *, val=0.1, seed=0, stratify=True, normalize=True,
                       flatten=False) -> Dataset:
    """Fashion-MNIST (Zalando; 60000 train + 10000 test 28x28 grey images, 10 classes):
    ``X_*`` float32 (N, 1, 28, 28) scaled to [0, 1] (then standardised if ``normalize``),
    or (N, 784) with ``flatten``. ``val`` (fraction or count) is carved from the training
    set with ``seed``; the test set is the official one, in file order."""
    hint = (
        "install the Debian/Ubuntu package: `sudo apt install dataset-fashion-mnist` "
        f"(files go to {FASHION_MNIST_SYSTEM_DIR}), or put the four files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (from the zalandoresearch/fashion-mnist repository) in a "
        f"directory DIR and call load_fashion_mnist(path=DIR) or set {ENV_VAR}=DIR"
    )
    return _load("load_fashion_mnist", "Fashion-MNIST", FASHION_MNIST_CLASSES, path,
                 "fashion-mnist", [FASHION_MNIST_SYSTEM_DIR], hint, True, val=val, seed=seed,
                 stratify=stratify, normalize=normalize, flatten=flatten)


def load_mnist(path=None, *, val=0.1, seed=0, stratify=True, normalize=True,
               flatten=False) -> Dataset:
    """MNIST handwritten digits (60000 train + 10000 test 28x28 grey images) from the
    IDX files in ``path`` (or ``$GPUNET_DATA/mnist``); same shapes and options as
    :func:`load_fashion_mnist`."""
    hint = (
        "put the four MNIST files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in a directory DIR and call "
        f"load_mnist(path=DIR), or put them in $GPUNET_DATA/mnist (set {ENV_VAR}); "
        "no download is needed for load_fashion_mnist() after "
        "`sudo apt install dataset-fashion-mnist`"
    )
    return _load("load_mnist", "MNIST", MNIST_CLASSES, path, "mnist", [], hint, False, val=val,
                 seed=seed, stratify=stratify, normalize=normalize, flatten=flatten)
