"""``gpunet predict``: class labels of new samples, written as an int64 ``.npy`` file.

INPUT holds samples (N, ...) in the feature scale the dataset loader gives before
normalisation (``gpunet.data.load_dataset(name, normalize=False)``: e.g. pixels in [0, 1]).
The samples are reshaped to the training samples' shape (flat or image, same number of
values) and normalised with the training split's statistics, both recorded in the
checkpoint by the training command; a checkpoint without that record takes INPUT as is.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .errors import UsageError
from .evaluate import add_model_arguments, check_input, load


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``gpunet predict`` on the subparsers ``sub``."""
    p = sub.add_parser("predict", help="class labels of new samples with a trained model")
    add_model_arguments(p)
    p.add_argument("input", metavar="INPUT.npy", help="samples (N, ...) in the scale of the raw "
                   "training data; the training normalisation is applied")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npy", help="where to write the labels (N,)")
    p.set_defaults(run=run, parser=p)
    return p


def read_samples(path: str) -> np.ndarray:
    """The numeric array in the ``.npy`` file ``path`` (read without pickle)."""
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric .npy array ({exc}); write the samples with "
                         "numpy.save(path, X.astype(numpy.float32))") from None
    if not isinstance(X, np.ndarray):
        X.close()
        raise ValueError(f"{path} is an .npz archive; INPUT must be one array saved with numpy.save")
    if X.dtype.kind not in "biuf" or X.ndim < 1:
        raise ValueError(f"{path} holds a {X.dtype} array of shape {X.shape}; expected numbers, "
                         "one sample per row (N, ...)")
    return X


def prepare(X: np.ndarray, run: dict, path: str) -> np.ndarray:
    """Samples ``X`` (N, ...) as the model saw its training data: float32, reshaped to the
    recorded sample shape and normalised per channel with the recorded mean and std."""
    X = X.astype(np.float32)
    shape = tuple(run["sample_shape"])
    if math.prod(X.shape[1:]) != math.prod(shape):
        raise ValueError(f"{path} holds samples of shape {X.shape[1:]} (array {X.shape}); the model "
                         f"was trained on samples of shape {shape} ({math.prod(shape)} values each)")
    X = X.reshape((len(X), *shape))
    if run.get("mean") is not None:
        mean, std = (np.asarray(run[k], dtype=np.float32)[:, None] for k in ("mean", "std"))
        if math.prod(shape) % len(mean):
            raise ValueError(f"the checkpoint records a mean of {len(mean)} channels for samples of shape "
                             f"{shape}; they do not fit (the file was changed after training)")
        channels = X.reshape(len(X), len(mean), math.prod(shape) // len(mean))  # channel-major
        X = ((channels - mean) / std).reshape(X.shape)
    return X


def run(args) -> int:
    """Write the predicted labels of INPUT to OUT."""
    from .train import writable

    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"-o {args.output} is a directory; give a file name such as {out / 'labels.npy'}")
    writable(out.parent, "-o", args.output, create=False)
    model, meta = load(args)
    X = read_samples(args.input)
    run_info = meta["run"]
    if "sample_shape" in run_info:
        X = prepare(X, run_info, args.input)
    else:
        print("gpunet: warning: the checkpoint does not record the training data's shape and "
              "normalisation; INPUT is used as given (normalise it as the training data was)",
              file=sys.stderr)
    check_input(model, X, f"the samples of {args.input}")
    labels = model.predict(X, batch_size=args.batch_size)
    with open(args.output, "wb") as f:  # exactly this path (np.save would append .npy)
        np.save(f, labels)
    print(f"wrote {len(labels)} labels to {args.output}")
    return 0
