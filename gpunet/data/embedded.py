"""Datasets shipped inside the package (no download): UCI handwritten digits and UCI
breast cancer Wisconsin (diagnostic), as bundled with scikit-learn (CC BY 4.0; see
``gpunet/data/files/CREDITS.md``)."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

import numpy as np

from .dataset import Dataset, check_options, make_dataset
from .errors import DataFormatError
from .locate import DataSource

FILES = Path(__file__).with_name("files")
DIGITS_FILE = FILES / "digits.csv.gz"
BREAST_CANCER_FILE = FILES / "breast_cancer.csv"

_DIGITS_SHAPE = (1797, 65)  # 64 pixels (8x8, values 0..16) + the digit
_BREAST_CANCER_SHAPE = (569, 30)

_BC_MEASURES = (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness",
    "concavity", "concave points", "symmetry", "fractal dimension",
)
#: Column names in file order: 10 means, 10 standard errors, 10 worst values.
BREAST_CANCER_FEATURES = (
    tuple(f"mean {m}" for m in _BC_MEASURES)
    + tuple(f"{m} error" for m in _BC_MEASURES)
    + tuple(f"worst {m}" for m in _BC_MEASURES)
)


def _broken(path: Path, what: str) -> DataFormatError:
    return DataFormatError(
        f"{path}: {what}; this file ships with gpunet, so the installation is damaged: "
        "reinstall gpunet from its clone (`pip install --force-reinstall .` in the clone) or restore "
        "the file with `git checkout -- gpunet/data/files`"
    )


@cache
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DIGITS_FILE, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if table.shape != _DIGITS_SHAPE:
        raise _broken(DIGITS_FILE, f"expected a {_DIGITS_SHAPE} table, found {table.shape}")
    X = table[:, :64].reshape(-1, 1, 8, 8)
    y = table[:, 64].astype(np.int64)
    X.flags.writeable = y.flags.writeable = False
    return X, y


@cache
def _breast_cancer_raw() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    with open(BREAST_CANCER_FILE) as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    n, d = _BREAST_CANCER_SHAPE
    if header[:2] != [str(n), str(d)] or table.shape != (n, d + 1):
        raise _broken(
            BREAST_CANCER_FILE,
            f"expected header '{n},{d},...' and a ({n}, {d + 1}) table, found header "
            f"{','.join(header)!r} and a {table.shape} table",
        )
    X = table[:, :d]
    y = table[:, d].astype(np.int64)
    X.flags.writeable = y.flags.writeable = False
    return X, y, tuple(header[2:])


def load_digits(*, val=0.1, test=0.2, seed=0, stratify=True, normalize=True, flatten=False) -> Dataset:
    """UCI handwritten digits (1797 samples, 10 classes): ``X_*`` float32 (N, 1, 8, 8)
    scaled from 0..16 to [0, 1] (then standardised if ``normalize``), or (N, 64) with
    ``flatten``. ``val``/``test``: fractions or counts of the 1797, split with ``seed``."""
    options = {"val": val, "test": test, "seed": seed, "stratify": stratify,
               "normalize": normalize, "flatten": flatten}
    check_options("load_digits", **options)
    X, y = _digits_raw()
    return make_dataset(
        "digits", X, y, [str(d) for d in range(10)], scale=1 / 16, **options,
        source=DataSource("package", {"digits": DIGITS_FILE}),
        info={"license": "CC BY 4.0", "origin": "UCI ML Optical Recognition of Handwritten Digits"},
    )


def load_breast_cancer(*, val=0.1, test=0.2, seed=0, stratify=True, normalize=True, flatten=False) -> Dataset:
    """UCI breast cancer Wisconsin diagnostic (569 samples, 30 features): ``X_*`` float32
    (N, 30), per-feature standardised if ``normalize``; ``y`` 0 = malignant, 1 = benign.
    ``flatten`` is accepted for a uniform signature (the data is already flat)."""
    options = {"val": val, "test": test, "seed": seed, "stratify": stratify,
               "normalize": normalize, "flatten": flatten}
    check_options("load_breast_cancer", **options)
    X, y, classes = _breast_cancer_raw()
    return make_dataset(
        "breast-cancer", X, y, classes, **options,
        source=DataSource("package", {"breast-cancer": BREAST_CANCER_FILE}),
        info={
            "license": "CC BY 4.0",
            "origin": "UCI ML Breast Cancer Wisconsin (Diagnostic)",
            "feature_names": BREAST_CANCER_FEATURES,
        },
    )
