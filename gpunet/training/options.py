"""The checks of what a :class:`~gpunet.training.solver.Solver` is given: the model contract,
the data dict, the keyword names (with a hint for a misspelt one), ``checkpoint_name`` and
``run_info``. Each raises a clear error naming the argument; none changes anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from .. import optim
from .._validate import labels
from ..backend import get_array_module
from ..checkpoint import to_json, try_directory
from .device import is_array

#: The metrics ``monitor`` may name.
MONITORS = ("val_acc", "val_loss")
#: The keys of the Solver's ``data`` dict, in the order the Solver unpacks them.
SPLITS = ("X_train", "y_train", "X_val", "y_val")
#: Every Solver keyword, for the hint on a misspelt one.
KEYWORDS = ("update_rule", "optim_config", "lr_decay", "batch_size", "num_epochs", "num_train_samples",
            "num_val_samples", "checkpoint_name", "keep_every", "print_every", "verbose", "patience",
            "monitor", "lr_schedule", "warmup_iters", "seed", "resume", "eval_batch_size", "drop_last",
            "restore_best", "progress", "run_info", "comm")


def check_model(model) -> None:
    """Refuse a model without a non-empty dict ``params`` and a ``loss`` method."""
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping) or not params:
        raise TypeError(
            "model must have a non-empty dict `params` (name -> array) and a method "
            "`loss(X, y=None)` (the CS231n model contract)"
        )
    if not callable(getattr(model, "loss", None)):
        raise TypeError("model must have a method loss(X, y=None) (the CS231n model contract)")


def splits(data) -> tuple:
    """``X_train, y_train, X_val, y_val`` of the Solver's ``data`` dict, checked."""
    if not isinstance(data, Mapping):
        hint = (" (a gpunet Dataset: pass data.as_solver_data())"
                if callable(getattr(data, "as_solver_data", None)) else "")
        raise TypeError(f"data must be a dict with keys 'X_train', 'y_train', 'X_val', "
                        f"'y_val', got {type(data).__name__}{hint}")
    missing = [k for k in SPLITS if k not in data]
    if missing:
        raise KeyError(
            f"data is missing {missing}; expected a dict with keys 'X_train', 'y_train', "
            "'X_val', 'y_val'"
        )
    for k in SPLITS:
        if not is_array(data[k]):
            raise TypeError(f"data[{k!r}] must be a NumPy, CuPy or array_api_strict array, got "
                            f"{type(data[k]).__name__}; convert it with numpy.asarray")
    for split in ("train", "val"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if X.ndim < 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(
                f"X_{split} has {X.shape[0] if X.ndim else 'no'} rows and y_{split} has "
                f"{y.shape[0] if y.ndim else 'no'}; they must be equal and non-zero"
            )
        if not get_array_module(X).isdtype(X.dtype, ("bool", "integral", "real floating")):
            raise TypeError(f"data['X_{split}'] must hold real numbers, got dtype {X.dtype}")
        labels("Solver", f"data['y_{split}']", y, X.shape[0])
    if tuple(data["X_train"].shape[1:]) != tuple(data["X_val"].shape[1:]):
        raise ValueError(f"data['X_train'] has samples of shape {tuple(data['X_train'].shape[1:])} and "
                         f"data['X_val'] of shape {tuple(data['X_val'].shape[1:])}; they must be equal")
    return tuple(data[k] for k in SPLITS)


def refuse_unknown(kwargs: Mapping) -> None:
    """Refuse keywords left over after the Solver took its own, with a hint for each."""
    if kwargs:
        raise ValueError(
            f"Unrecognized arguments {', '.join(map(repr, kwargs))}{_keyword_hint(kwargs)}; "
            "see help(Solver) for the accepted keywords"
        )


def _keyword_hint(unknown) -> str:
    """" (did you mean ...)" for misspelt Solver keywords; optimizer settings belong in optim_config."""
    hints = []
    for k in map(str, unknown):
        if k in optim.DEFAULTS["adamw"] or k in ("lr", "momentum", "decay_rate"):
            hints.append(f"{k!r} goes in optim_config, e.g. optim_config={{'learning_rate': 1e-3}}")
        elif close := difflib.get_close_matches(k, KEYWORDS, n=1):
            hints.append(f"{k!r}: did you mean {close[0]!r}?")
    return f" ({'; '.join(hints)})" if hints else ""


def check_run_info(run_info) -> None:
    """Refuse a ``run_info`` that is not JSON data (it goes into every checkpoint)."""
    if run_info is None:
        return
    try:
        to_json(run_info)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run_info must be JSON data (a dict of numbers, strings, "
                        f"lists, dicts): {exc}") from None


def checkpoint_prefix(name):
    """The checkpoint prefix of ``checkpoint_name`` ("run.npz" -> "run"; None stays None)."""
    if name is None:
        return None
    if not isinstance(name, (str, PathLike)):
        raise TypeError(f"checkpoint_name must be a path prefix (str), got {name!r}")
    text = str(Path(name)) if str(name) else ""
    if not text or text.endswith(("/", ".")):
        raise ValueError(f"checkpoint_name must be a path prefix such as 'runs/mnist', "
                         f"got {name!r}")
    return text[:-4] if text.endswith(".npz") else text


def check_checkpoint_directory(prefix: str | None) -> None:
    """Write a file where the checkpoints of ``prefix`` go (an OSError naming
    checkpoint_name now, not after the first epoch); None: no checkpoints."""
    if prefix is None:
        return
    directory = Path(prefix).parent
    try:
        try_directory(directory)
    except OSError as exc:
        raise OSError(f"checkpoint_name {prefix!r}: cannot write in {directory} "
                      f"({exc.strerror or exc})") from None
