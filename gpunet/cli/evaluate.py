"""``gpunet eval``: a checkpoint's test accuracy on the data it was trained on.

The training command records how it loaded its data in the checkpoint (``meta["run"]``,
built by :func:`gpunet.cli.train.run_record`); eval reloads the same dataset with the same split seed,
fractions and normalisation, so it prints the number training printed. ``--data`` and
``--data-path`` override the record; a checkpoint without one needs ``--data``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from .errors import UsageError
from .train import DATASETS

# run_info keys passed on to the dataset loader when present (None = the loader's default)
_LOADER_KEYS = ("seed", "val", "test", "normalize", "flatten")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``eval`` and ``predict`` share: the checkpoint and how to run the model."""
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a training checkpoint (PREFIX_best.npz, ...) or a file written by model.save")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="in a training checkpoint: the best epoch's parameters (default) or the last ones")
    p.add_argument("--batch-size", type=int, default=None, help="samples per forward pass (default: "
                   "the training run's evaluation batch size if recorded, else 1000)")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                   help="where to run the model (default: auto, a GPU when CuPy can use one)")


def load(args):
    """``(model, meta)`` of ``args.checkpoint`` on ``args.backend``; ``meta["run"]`` (the
    recorded run information, ``{}`` if none) is checked first (a ``ValueError`` naming the
    checkpoint and the entry)."""
    from .. import load_model, set_backend
    from ..backend import BackendUnavailableError
    from ..checkpoint import load_npz

    if args.batch_size is not None and args.batch_size < 1:
        args.parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        set_backend(args.backend)
    except BackendUnavailableError as exc:
        raise UsageError(f"--backend {args.backend}: {exc}") from None
    _, meta = load_npz(args.checkpoint)
    meta["run"] = recorded_run(meta.get("run"), args.checkpoint)
    if args.batch_size is None:
        args.batch_size = meta["run"].get("eval_batch_size") or 1000
    return load_model(args.checkpoint, args.which), meta


#: Entries of the run information training records, with the check each must pass.
_RUN_CHECKS = {
    "data": lambda v: v is None or isinstance(v, str),
    "data_path": lambda v: v is None or isinstance(v, str),
    "seed": lambda v: v is None or _is_count(v, 0),
    "val": lambda v: v is None or _is_fraction(v),
    "test": lambda v: v is None or _is_fraction(v),
    "normalize": lambda v: isinstance(v, bool),
    "flatten": lambda v: isinstance(v, bool),
    "eval_batch_size": lambda v: v is None or _is_count(v, 1),
    "sample_shape": lambda v: isinstance(v, list) and len(v) > 0 and all(_is_count(n, 1) for n in v),
    "mean": lambda v: v is None or _numbers(v),
    "std": lambda v: v is None or _numbers(v) and all(x > 0 for x in v),
}


def _is_count(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1


def _numbers(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def recorded_run(run, checkpoint) -> dict:
    """The run information a checkpoint records (``{}`` if none), each entry checked."""
    if run is None:
        return {}
    if not isinstance(run, dict):
        raise ValueError(f"{checkpoint} records run information that is not a JSON object ({type(run).__name__})")
    for key, ok in _RUN_CHECKS.items():
        if key in run and not ok(run[key]):
            raise ValueError(f"{checkpoint} records an unusable {key} {run[key]!r} in its run information; "
                             "the file was changed after training (pass --data and --batch-size to choose "
                             "the data yourself, or use the file training wrote)")
    mean, std = run.get("mean") or [], run.get("std") or []
    if len(mean) != len(std):
        raise ValueError(f"{checkpoint} records a mean of {len(mean)} and a std of {len(std)} "
                         "numbers; they must be given together, one per channel")
    return run


def check_input(model, X, what: str) -> int:
    """The number of classes ``model`` gives for samples like ``X``'s; a ``ValueError``
    naming ``what`` if the model cannot take them."""
    try:
        return int(model.loss(X[:1]).shape[1])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the model does not take {what} of shape {tuple(X.shape[1:])}: {exc}") from None


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``gpunet eval`` (alias ``evaluate``) on the subparsers ``sub``."""
    p = sub.add_parser("eval", aliases=["evaluate"], help="test accuracy of a trained model")
    add_model_arguments(p)
    p.add_argument("--data", choices=DATASETS, default=None,
                   help="dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--data-path", default=None, help="directory of the dataset's files "
                   "(default: the one recorded in the checkpoint)")
    p.set_defaults(run=run, parser=p)
    return p


def load_data(run: dict, data: str | None, data_path: str | None):
    """The Dataset a run recorded in ``run`` (``{}`` if none), or ``data``/``data_path`` instead."""
    from ..data import load_dataset

    name = data or run.get("data")
    if name is None:
        raise ValueError("the checkpoint does not record its dataset (it was written without run "
                         "information); name it with --data NAME")
    if data_path is None and name == run.get("data"):
        data_path = run.get("data_path")
    options = {k: run[k] for k in _LOADER_KEYS if run.get(k) is not None}
    return load_dataset(name, data_path, **options)


def run(args) -> int:
    """Print the test accuracy of the checkpoint's model."""
    model, meta = load(args)
    from .._validate import ArgumentError

    try:
        ds = load_data(meta["run"], args.data, args.data_path)
    except ArgumentError as exc:
        run = meta["run"]
        if args.data_path is not None or args.data not in (None, run.get("data")):
            raise  # the user's --data/--data-path, not the record
        raise ValueError(f"{args.checkpoint} records run information its data cannot be loaded with "
                         f"({exc}); pass --data NAME (and --data-path DIR)") from None
    classes = check_input(model, ds.X_test, f"--data {ds.name} samples")
    if classes < ds.num_classes:
        raise ValueError(f"the model gives {classes} class scores, {ds.name} has {ds.num_classes} classes")
    labels = model.predict(ds.X_test, batch_size=args.batch_size)
    epoch = meta.get("best_epoch") if args.which == "best" else meta.get("epoch")
    source = f"{args.which} parameters, epoch {epoch}" if meta.get("kind") == "solver" else "saved model"
    print(f"model: {type(model).__name__} from {args.checkpoint} ({source})")
    print(f"data: {ds.name}: {len(ds.y_test)} test samples")
    print(f"test accuracy: {float(np.mean(labels == ds.y_test)):.4f}")
    return 0
