"""The Solver: trains a model with the CS231n contract by minibatch first-order updates.

Keyword names and behaviour follow CS231n's ``Solver`` (``update_rule``, ``optim_config``,
``lr_decay``, ``batch_size``, ``num_epochs``, ``num_train_samples``, ``num_val_samples``,
``checkpoint_name``, ``print_every``, ``verbose``), with the course code's bugs fixed:
every epoch visits each training example once (a seeded permutation per epoch);
``check_accuracy`` subsamples without replacement, in batches; each parameter gets its own
copy of ``optim_config``; the best parameters are deep copies written back *into*
``model.params`` in place (with the model's buffers, e.g. BatchNorm running statistics);
the best epoch is chosen by the monitored metric even if it never beats 0.

Additions: ``patience`` early stopping on ``monitor``, learning-rate schedules
(:mod:`gpunet.schedules`), atomic ``.npz`` checkpoints that resume bitwise-exactly on the
same backend and load onto any backend (provided the model draws its randomness from
``model.rng``, a checkpointed ``numpy.random.Generator``), a NaN/inf guard, a tqdm
progress bar, ``history`` and :meth:`Solver.plot`, data-parallel training (``comm``).

``history``: ``loss`` per iteration; ``train_acc``, ``val_acc``, ``val_loss`` and ``lr``
(the rate of the epoch's last step) per epoch, evaluated at each epoch end. Schedules are
applied per epoch, warm-up per iteration. The Solver only builds and holds the parts: the
loop (:mod:`.loop`), the state and its checkpoint schema (:mod:`.state`), evaluation
(:mod:`.evaluate`), the callbacks (:mod:`.callbacks`) and the processes (:mod:`.parallel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from .. import optim
from .._validate import boolean, choice, integer
from ..checkpoint import load_npz, save_npz_atomic
from ..schedules import make_schedule
from . import loop
from .callbacks import (
    Checkpoint,
    EarlyStopping,
    LearningRate,
    NonFiniteGuard,
    Progress,
    plot_history,
)
from .device import is_array
from .evaluate import evaluate
from .parallel import make_parallel
from .state import TrainingState

__all__ = ["Solver"]

_MONITORS = ("val_acc", "val_loss")
_SPLITS = ("X_train", "y_train", "X_val", "y_val")


class _InState:
    """A Solver attribute kept in ``solver.state`` (read and written there)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, solver, owner=None):
        return self if solver is None else getattr(solver.state, self.name)

    def __set__(self, solver, value):
        setattr(solver.state, self.name, value)


class Solver:
    """Train ``model`` on ``data`` (dict with ``X_train``, ``y_train``, ``X_val``, ``y_val``).

    The data arrays may live on the host (NumPy) or on a device; each minibatch is moved
    once onto the backend of ``model.params``. Keyword arguments (CS231n's first):

    - ``update_rule`` ("sgd"): a name in :data:`gpunet.optim.UPDATE_RULES` or a callable
      ``update(w, dw, config) -> (w, config)``; ``optim_config`` ({}): its hyperparameters,
      copied per parameter; ``lr_decay`` (1.0): learning rate factor per epoch;
      ``batch_size`` (100); ``num_epochs`` (10); ``num_train_samples`` (1000) /
      ``num_val_samples`` (None = all): subsample size for the per-epoch accuracies;
      ``checkpoint_name`` (None): write ``{name}_epoch_{k}.npz`` after every epoch and
      ``{name}_best.npz`` when the monitored metric improves; ``print_every`` (10): read
      the loss back (report, NaN check) every this many iterations; ``verbose`` (True).
    - ``patience`` (None): stop after this many epochs without improvement of ``monitor``
      ("val_acc" or "val_loss", the softmax cross-entropy of the scores, without
      regularization); ``lr_schedule`` (None = step decay by ``lr_decay``; "cosine",
      "constant", a :class:`gpunet.schedules.Schedule` or ``fn(epoch) -> factor``);
      ``warmup_iters`` (0): linear warm-up, applied per iteration; ``seed``: seeds the
      Solver's generator (batch permutations, accuracy subsamples); ``resume``: a
      checkpoint path to continue from; ``eval_batch_size`` (max(batch_size, 100));
      ``drop_last`` (False): drop the incomplete last batch of an epoch; ``restore_best``
      (True): put the best epoch's parameters into the model when training ends;
      ``progress`` ("auto": a tqdm bar if tqdm is installed, else plain lines; True; False);
      ``comm`` (None): a :class:`gpunet.distributed.Communicator` for data-parallel
      training, see :mod:`gpunet.training.parallel` (``batch_size`` is then per process).
    """

    epoch = _InState()
    iteration = _InState()
    history = _InState()
    optim_configs = _InState()
    best_epoch = _InState()
    best_val_acc = _InState()
    best_val_loss = _InState()
    best_params = _InState()
    best_buffers = _InState()
    epochs_since_best = _InState()
    stopped_early = _InState()

    def __init__(self, model, data: Mapping, **kwargs) -> None:
        self.model = model
        params = getattr(model, "params", None)
        if not isinstance(params, Mapping) or not params:
            raise TypeError(
                "model must have a non-empty dict `params` (name -> array) and a method "
                "`loss(X, y=None)` (the CS231n model contract)"
            )
        if not callable(getattr(model, "loss", None)):
            raise TypeError("model must have a method loss(X, y=None) (the CS231n model contract)")
        self.X_train, self.y_train, self.X_val, self.y_val = _splits(data)

        fn = "Solver"
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = integer("batch_size", kwargs.pop("batch_size", 100), low=1, fn=fn)
        self.num_epochs = integer("num_epochs", kwargs.pop("num_epochs", 10), low=0, fn=fn)
        self.num_train_samples = integer("num_train_samples", kwargs.pop("num_train_samples", 1000),
                                         low=1, allow_none=True, fn=fn)
        self.num_val_samples = integer("num_val_samples", kwargs.pop("num_val_samples", None),
                                       low=1, allow_none=True, fn=fn)
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = integer("print_every", kwargs.pop("print_every", 10), low=1, fn=fn)
        self.verbose = boolean("verbose", kwargs.pop("verbose", True), fn=fn)
        self.patience = integer("patience", kwargs.pop("patience", None), low=1, allow_none=True,
                                fn=fn)
        self.monitor = choice("monitor", kwargs.pop("monitor", "val_acc"), _MONITORS, fn=fn)
        lr_schedule = kwargs.pop("lr_schedule", None)
        warmup_iters = kwargs.pop("warmup_iters", 0)
        self.seed = integer("seed", kwargs.pop("seed", None), low=0, allow_none=True, fn=fn)
        resume = kwargs.pop("resume", None)
        self.eval_batch_size = integer("eval_batch_size", kwargs.pop(
            "eval_batch_size", max(self.batch_size, 100)), low=1, fn=fn)
        self.drop_last = boolean("drop_last", kwargs.pop("drop_last", False), fn=fn)
        self.restore_best = boolean("restore_best", kwargs.pop("restore_best", True), fn=fn)
        self.progress = choice("progress", kwargs.pop("progress", "auto"), ("auto", True, False),
                               fn=fn)
        self.parallel = make_parallel(kwargs.pop("comm", None))
        if kwargs:
            raise ValueError(
                f"Unrecognized arguments {', '.join(map(repr, kwargs))}; see help(Solver) "
                "for the accepted keywords"
            )
        if not isinstance(self.optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        self.update_rule_name, self.update_rule = optim.get_update_rule(self.update_rule)
        self.schedule = make_schedule(lr_schedule, lr_decay=self.lr_decay,
                                      num_epochs=max(self.num_epochs, 1),
                                      warmup_iters=warmup_iters)
        self.iterations_per_epoch = self.parallel.steps_per_epoch(
            self.X_train.shape[0], self.batch_size, self.drop_last)

        self.state = TrainingState.fresh(self.model.params, self.optim_config,
                                         self.update_rule_name, self.update_rule, self.seed)
        self.best_checkpoint: Path | None = None  # the best epoch's file, once written
        output = Progress(self.verbose and self.parallel.is_root,
                          _find_tqdm(self.progress, self.verbose))
        self.callbacks = [LearningRate(self.schedule), NonFiniteGuard(),
                          EarlyStopping(self.monitor, self.patience), output]
        if self.checkpoint_name is not None:
            self.callbacks.append(Checkpoint(self.checkpoint_name, output))
        if resume is not None:
            self.load_checkpoint(resume)
        else:  # every process starts from the first one's state
            self.parallel.from_root(None, self._export, self._import, self.model,
                                    "share its training state")

    # CS231n attribute names for the history lists (the same list objects).
    @property
    def loss_history(self):
        return self.history["loss"]

    @property
    def train_acc_history(self):
        return self.history["train_acc"]

    @property
    def val_acc_history(self):
        return self.history["val_acc"]

    # --- training and evaluation ------------------------------------------------------------
    def train(self) -> None:
        """Run epochs until ``num_epochs`` (or early stopping); then, with ``restore_best``,
        put the best epoch's parameters (and buffers) into the model."""
        loop.train(self)

    def check_accuracy(self, X, y, num_samples: int | None = None,
                       batch_size: int | None = None) -> float:
        """Fraction of rows of ``X`` (N, ...) whose argmax score equals ``y`` (N,).

        With ``num_samples`` < N, a subsample drawn without replacement. Runs the model in
        test mode on batches of ``batch_size`` (default ``eval_batch_size``), counts on the
        device and reads back once. Returns a Python float.
        """
        fn = "check_accuracy"
        num_samples = integer("num_samples", num_samples, low=1, allow_none=True, fn=fn)
        batch_size = integer("batch_size", batch_size or self.eval_batch_size, low=1, fn=fn)
        acc, _ = evaluate(self.model, X, y, batch_size=batch_size, parallel=self.parallel,
                          num_samples=num_samples, rng=self.state.eval_rng)
        return acc

    def plot(self, path: str | PathLike | None = None):
        """Draw loss per iteration, train/val accuracy and learning rate per epoch; save the
        figure to ``path`` (e.g. "curves.png") if given. Returns the matplotlib Figure
        (``None`` on ranks other than 0 of a data-parallel run, which draw nothing)."""
        if not self.parallel.is_root:
            return None
        return plot_history(self.history, self.iterations_per_epoch, path)

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path: str | PathLike) -> Path:
        """Write the full training state to ``path`` (.npz, atomically); returns the path.

        Holds parameters, buffers, optimizer state, best parameters, counters, history and
        RNG states; arrays are copied to the host. Under MPI, call it on rank 0 only.
        """
        arrays, meta = self.state.to_arrays(self.model, self._settings())
        return save_npz_atomic(path, arrays, meta)

    def load_checkpoint(self, path: str | PathLike) -> None:
        """Restore the training state saved by :meth:`save_checkpoint` (from any backend)
        onto the backend of ``model.params``; training continues at the next epoch. A
        checkpoint that does not fit changes nothing.

        With a communicator of several processes this is collective: rank 0 reads the
        file and broadcasts the state; an error on rank 0 is raised on every rank.
        """
        self.parallel.from_root(lambda: self._load_file(path), self._export, self._import,
                                self.model, f"load checkpoint {str(path)!r}")

    def _load_file(self, path) -> None:
        arrays, meta = load_npz(path)
        where = f"checkpoint {str(path)!r}"
        self.parallel.check_world_size(meta.get("world_size", 1), self.batch_size, where)
        self.state.load(arrays, meta, self.model, self._settings(), where)
        if self.checkpoint_name is not None:
            best = Path(f"{self.checkpoint_name}_best.npz")
            self.best_checkpoint = best if best.exists() else None

    def _settings(self) -> dict:
        """The settings a checkpoint records (and checks when resuming)."""
        return {"update_rule": self.update_rule_name, "schedule": self.schedule.to_config(),
                "batch_size": self.batch_size, "drop_last": self.drop_last,
                "num_train": int(self.X_train.shape[0]), "num_epochs": self.num_epochs,
                "monitor": self.monitor, "world_size": self.parallel.world_size}

    def _export(self) -> tuple[dict, dict]:
        """The state to share with other processes: arrays and JSON data."""
        arrays, meta = self.state.to_arrays(self.model, self._settings())
        best = str(self.best_checkpoint) if self.best_checkpoint is not None else None
        return arrays, {"meta": meta, "best_checkpoint": best}

    def _import(self, arrays: dict, info: dict, where: str) -> None:
        """Take over the state :meth:`_export` gave (all or nothing)."""
        self.state.load(arrays, info["meta"], self.model, self._settings(), where, warn=False)
        best = info["best_checkpoint"]
        self.best_checkpoint = Path(best) if best is not None else None


def _splits(data) -> tuple:
    """``X_train, y_train, X_val, y_val`` of the Solver's ``data`` dict, checked."""
    missing = [k for k in _SPLITS if k not in data]
    if missing:
        raise KeyError(
            f"data is missing {missing}; expected a dict with keys 'X_train', 'y_train', "
            "'X_val', 'y_val'"
        )
    for k in _SPLITS:
        if not is_array(data[k]):
            raise TypeError(f"data[{k!r}] must be a NumPy, CuPy or array_api_strict array, got "
                            f"{type(data[k]).__name__}; convert it with numpy.asarray")
    for split in ("train", "val"):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(
                f"X_{split} has {X.shape[0]} rows and y_{split} has {y.shape[0]}; "
                "they must be equal and non-zero"
            )
    return tuple(data[k] for k in _SPLITS)


def _find_tqdm(progress, verbose: bool):
    """The tqdm class for a progress bar, or None (plain lines, or silent)."""
    if progress is False or not verbose:  # silent: no bar, so tqdm is not needed
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress is True:
            raise ImportError("progress=True needs tqdm: pip install gpunet[train]") from None
        return None
    return tqdm
