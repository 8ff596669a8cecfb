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
``model.rng``, a checkpointed ``numpy.random.Generator``), a NaN/inf guard, a progress
line per epoch, a clean stop on Ctrl-C, ``history`` and :meth:`Solver.plot`, data-parallel
training (``comm``).

``history``: ``loss`` per iteration; ``train_acc``, ``val_acc``, ``val_loss`` and ``lr``
(the rate of the epoch's last step) per epoch, evaluated at each epoch end. Schedules are
applied per epoch, warm-up per iteration. The Solver checks its arguments
(:mod:`.options`), then builds and holds the parts and delegates to them: the loop
(:mod:`.loop`), the state and its checkpoint schema (:mod:`.state`), what a resume takes
(:mod:`.resume`), evaluation (:mod:`.evaluate`), the callbacks (:mod:`.callbacks`,
:mod:`.progress`), the plot (:mod:`.plot`) and the processes (:mod:`.parallel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

from .. import optim, schedules
from .._validate import boolean, choice, integer, labels, samples
from ..checkpoint import save_npz_atomic
from . import loop, resume
from .callbacks import Checkpoint, EarlyStopping, LearningRate, NonFiniteGuard
from .evaluate import evaluate
from .options import (
    MONITORS,
    check_checkpoint_directory,
    check_model,
    check_run_info,
    checkpoint_prefix,
    refuse_unknown,
    splits,
)
from .parallel import make_parallel
from .plot import plot_history
from .progress import Progress
from .resume import Resumed
from .state import TrainingState

__all__ = ["Resumed", "Solver"]

#: How often the loss is read back (and checked) without an explicit ``print_every``.
READ_EVERY = 10


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
      ``batch_size`` (100); ``num_epochs`` (10: the total, counting resumed epochs);
      ``num_train_samples`` (1000) / ``num_val_samples`` (None = all): how many examples
      the per-epoch accuracies subsample; ``print_every`` (None): print the loss every
      this many iterations (CS231n's lines; without it the loss is read back every 10
      iterations for the progress line and the NaN check); ``verbose`` (True).
    - ``checkpoint_name`` (None): a path prefix (a trailing ``.npz`` is dropped);
      ``{prefix}_last.npz`` is written after every epoch and ``{prefix}_best.npz`` when
      the monitored metric improves; ``keep_every`` (None): also keep
      ``{prefix}_epoch_{k}.npz`` every this many epochs (1: CS231n's file per epoch).
    - ``patience`` (None): stop after this many epochs without improvement of ``monitor``
      ("val_acc" or "val_loss", the softmax cross-entropy of the scores, without
      regularization); ``lr_schedule`` (None = step decay by ``lr_decay``; "cosine",
      "constant", a :class:`gpunet.schedules.Schedule` or ``fn(epoch) -> factor``);
      ``warmup_iters`` (0): linear warm-up, applied per iteration; ``seed``: seeds the
      Solver's generator (batch permutations, accuracy subsamples); ``eval_batch_size``
      (max(batch_size, 100)); ``drop_last`` (False): drop the incomplete last batch of an
      epoch (without it, a last batch of one example is merged into the batch before, so
      BatchNorm always sees two or more); ``restore_best`` (True): put the best epoch's
      parameters into the model when training ends; ``progress`` ("auto": a line per epoch
      updated in place when stderr is a terminal, else plain lines; True: always in place;
      False: plain lines); ``comm`` (None): a :class:`gpunet.distributed.Communicator` for
      data-parallel training, see :mod:`gpunet.training.parallel` (``batch_size`` is then
      per process).
    - ``run_info`` (None): JSON data describing the run, stored in every checkpoint's
      metadata under ``"run"``. ``gpunet train`` records what reproduces its data and model,
      which ``gpunet eval`` and ``gpunet train --resume`` read back: ``{"data": dataset
      name, "data_path": absolute directory or None, "seed": split seed, "val", "test":
      fractions (None: the loader's), "normalize", "flatten", "sample_shape", "mean",
      "std": the training split's statistics, "model": "mlp" | "cnn" | "logistic",
      "eval_batch_size", "args": {flag: value}}``.
    - ``resume``: a checkpoint path to continue from. The checkpoint gives the state
      (parameters, buffers, optimizer state, counters, history, generators). Settings follow
      one rule: a keyword you pass wins, and if it differs from the checkpoint's it is
      reported (``solver.resumed``, printed when training starts); a setting you do not
      pass is the checkpoint's (``update_rule``, ``batch_size``, ``drop_last``,
      ``num_epochs``, ``monitor``, ``patience``, the schedule, ``run_info``, and each
      ``optim_config`` entry: ``{"learning_rate": 0.5}`` sets a new base rate and keeps
      the saved moments). Another ``update_rule`` starts its optimizer state afresh. Only a
      model that does not fit the saved parameters is refused.

    Ctrl-C during :meth:`train` stops at the end of the running step and raises
    :class:`~gpunet.training.callbacks.TrainingInterrupted` (a ``KeyboardInterrupt``); the
    last finished epoch is in ``{prefix}_last.npz`` when checkpointing. A second Ctrl-C
    interrupts at once.
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
        check_model(model)
        self.model = model
        self.X_train, self.y_train, self.X_val, self.y_val = splits(data)

        fn = "Solver"
        #: The keywords the caller passed: they win over a checkpoint's settings.
        self.passed_keywords = frozenset(kwargs)
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = integer("batch_size", kwargs.pop("batch_size", 100), low=1, fn=fn)
        self.num_epochs = integer("num_epochs", kwargs.pop("num_epochs", 10), low=0, fn=fn)
        self.num_train_samples = integer("num_train_samples", kwargs.pop("num_train_samples", 1000),
                                         low=1, allow_none=True, fn=fn)
        self.num_val_samples = integer("num_val_samples", kwargs.pop("num_val_samples", None),
                                       low=1, allow_none=True, fn=fn)
        self.checkpoint_name = checkpoint_prefix(kwargs.pop("checkpoint_name", None))
        self.keep_every = integer("keep_every", kwargs.pop("keep_every", None), low=1,
                                  allow_none=True, fn=fn)
        self.print_every = integer("print_every", kwargs.pop("print_every", None), low=1,
                                   allow_none=True, fn=fn)
        self.verbose = boolean("verbose", kwargs.pop("verbose", True), fn=fn)
        self.patience = integer("patience", kwargs.pop("patience", None), low=1, allow_none=True,
                                fn=fn)
        self.monitor = choice("monitor", kwargs.pop("monitor", "val_acc"), MONITORS, fn=fn)
        lr_schedule = kwargs.pop("lr_schedule", None)
        warmup_iters = kwargs.pop("warmup_iters", 0)
        self.seed = integer("seed", kwargs.pop("seed", None), low=0, allow_none=True, fn=fn)
        resume_from = kwargs.pop("resume", None)
        self.eval_batch_size = integer("eval_batch_size", kwargs.pop(
            "eval_batch_size", max(self.batch_size, 100)), low=1, fn=fn)
        self.drop_last = boolean("drop_last", kwargs.pop("drop_last", False), fn=fn)
        self.restore_best = boolean("restore_best", kwargs.pop("restore_best", True), fn=fn)
        self.progress = choice("progress", kwargs.pop("progress", "auto"), ("auto", True, False),
                               fn=fn)
        self.run_info = kwargs.pop("run_info", None)
        self.parallel = make_parallel(kwargs.pop("comm", None))
        refuse_unknown(kwargs)
        if not isinstance(self.optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        check_run_info(self.run_info)
        self.update_rule_name, self.update_rule = optim.get_update_rule(self.update_rule)
        self.schedule = schedules.make_schedule(lr_schedule, lr_decay=self.lr_decay,
                                                num_epochs=max(self.num_epochs, 1),
                                                warmup_iters=warmup_iters)
        self.iterations_per_epoch = self.parallel.steps_per_epoch(
            self.X_train.shape[0], self.batch_size, self.drop_last)

        # Resuming without update_rule: the checkpoint's rule checks optim_config's keys.
        defer = resume_from is not None and "update_rule" not in self.passed_keywords
        self.state = TrainingState.fresh(self.model.params, {} if defer else self.optim_config,
                                         self.update_rule_name, self.update_rule, self.seed)
        self.best_checkpoint: Path | None = None  # the best epoch's file, once written
        self.last_checkpoint: Path | None = None  # the last finished epoch's file
        self.resumed: Resumed | None = None  # set by a resume
        #: Names to show for keywords in messages (``gpunet train`` sets its flags).
        self.display_names: dict[str, str] = {}
        self.output = Progress(self.verbose and self.parallel.is_root, self.progress)
        self.callbacks = [LearningRate(), NonFiniteGuard(), EarlyStopping(), self.output]
        if self.checkpoint_name is not None:
            self.callbacks.append(Checkpoint(self.checkpoint_name, self.output))
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        else:  # every process starts from the first one's state
            self.parallel.from_root(lambda: check_checkpoint_directory(self.checkpoint_name),
                                    self._export, self._take_over, self.model,
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

    @property
    def read_every(self) -> int:
        """Iterations between two read-backs of the loss (``print_every``, else 10)."""
        return self.print_every or READ_EVERY

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
        batch_size = integer("batch_size", self.eval_batch_size if batch_size is None else batch_size,
                             low=1, fn=fn)
        samples(fn, "X", X)
        labels(fn, "y", y, X.shape[0])
        acc, _ = evaluate(self.model, X, y, batch_size=batch_size, parallel=self.parallel,
                          num_samples=num_samples, rng=self.state.eval_rng)
        return acc

    def plot(self, path: str | PathLike | None = None):
        """Draw the loss (smoothed, raw faint behind), train/val accuracy by epoch with the
        best epoch marked, and the learning rate if it changed; save the figure to ``path``
        (".png" is added when it has no extension) if given. Returns the matplotlib Figure
        (``None`` on the other processes of a data-parallel run: only the root process draws)."""
        if not self.parallel.is_root:
            return None
        return plot_history(self.history, self.iterations_per_epoch, path,
                            best_epoch=self.best_epoch,
                            stopped_epoch=self.epoch if self.stopped_early else None)

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path: str | PathLike) -> Path:
        """Write the full training state to ``path`` (.npz, atomically); returns the path.

        Holds parameters, buffers, optimizer state, best parameters, counters, history and
        RNG states; arrays are copied to the host. Under MPI, call it on the root process only.
        """
        arrays, meta = self.state.to_arrays(self.model, resume.settings(self))
        return save_npz_atomic(path, arrays, meta)

    def load_checkpoint(self, path: str | PathLike) -> None:
        """Restore the training state saved by :meth:`save_checkpoint` (from any backend)
        onto the backend of ``model.params``; training continues at the next epoch. Settings
        follow the rule of the ``resume`` keyword (see the class docstring). A checkpoint
        that does not fit changes nothing and raises
        :class:`~gpunet.checkpoint.CheckpointError` naming the file.

        With a communicator of several processes this is collective: the root process reads
        the file and shares the state; an error there is raised on every process.
        """
        self.parallel.from_root(lambda: resume.load_file(self, path), self._export,
                                self._take_over, self.model, f"load checkpoint {str(path)!r}")

    def _export(self) -> tuple[dict, dict]:
        """This process's state, for the others (see :func:`.resume.export`)."""
        return resume.export(self)

    def _take_over(self, arrays: dict, info: dict, where: str) -> None:
        """Take another process's exported state (see :func:`.resume.take_over`)."""
        resume.take_over(self, arrays, info, where)
