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
applied per epoch, warm-up per iteration. The Solver only builds and holds the parts: the
loop (:mod:`.loop`), the state and its checkpoint schema (:mod:`.state`), evaluation
(:mod:`.evaluate`), the callbacks (:mod:`.callbacks`) and the processes (:mod:`.parallel`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from .. import optim, schedules
from .._validate import boolean, choice, integer, labels, samples
from ..backend import get_array_module
from ..checkpoint import CheckpointError, load_npz, save_npz_atomic, to_json, try_directory
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
from .state import TrainingState, buffers_of, check_meta

__all__ = ["Resumed", "Solver"]

_MONITORS = ("val_acc", "val_loss")
_SPLITS = ("X_train", "y_train", "X_val", "y_val")
#: Solver keywords that set the learning-rate schedule.
_SCHEDULE_KEYWORDS = ("lr_schedule", "lr_decay", "warmup_iters")
#: Recorded settings a resumed Solver takes from the checkpoint unless they were passed.
_ADOPTED = ("batch_size", "drop_last", "num_epochs", "monitor", "patience")
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


@dataclass(frozen=True)
class Resumed:
    """What a resume took from a checkpoint: the file, its epoch and iteration, and the
    settings that differ from the checkpoint's, ``(keyword, checkpoint's, now)``."""

    path: str
    epoch: int
    iteration: int
    changes: tuple = ()

    def describe(self, names: Mapping | None = None) -> str:
        """One line for the user; ``names`` maps keywords to the names to show (CLI flags)."""
        names = names or {}
        line = f"resumed from epoch {self.epoch} of {self.path} (iteration {self.iteration})"
        if self.changes:
            line += "; changed: " + ", ".join(
                f"{names.get(k, k)} {_show(old)} -> {_show(new)}" for k, old, new in self.changes)
        return line


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Solver:
    """Train ``model`` on ``data`` (dict with ``X_train``, ``y_train``, ``X_val``, ``y_val``).

    The data arrays may live on the host (NumPy) or on a device; each minibatch is moved
    once onto the backend of ``model.params``. Keyword arguments (CS231n's first):

    - ``update_rule`` ("sgd"): a name in :data:`gpunet.optim.UPDATE_RULES` or a callable
      ``update(w, dw, config) -> (w, config)``; ``optim_config`` ({}): its hyperparameters,
      copied per parameter; ``lr_decay`` (1.0): learning rate factor per epoch;
      ``batch_size`` (100); ``num_epochs`` (10: the total, counting resumed epochs);
      ``num_train_samples`` (1000) / ``num_val_samples`` (None = all): subsample size for
      the per-epoch accuracies; ``print_every`` (None): print the loss every this many
      iterations (CS231n's lines; without it the loss is read back every 10 iterations for
      the progress line and the NaN check); ``verbose`` (True).
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
        self._explicit = frozenset(kwargs)  # what the caller passed wins over a checkpoint
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
        self.run_info = kwargs.pop("run_info", None)
        self.parallel = make_parallel(kwargs.pop("comm", None))
        if kwargs:
            raise ValueError(
                f"Unrecognized arguments {', '.join(map(repr, kwargs))}{_keyword_hint(kwargs)}; "
                "see help(Solver) for the accepted keywords"
            )
        if not isinstance(self.optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        if self.run_info is not None:
            try:
                to_json(self.run_info)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"run_info must be JSON data (a dict of numbers, strings, "
                                f"lists, dicts): {exc}") from None
        self.update_rule_name, self.update_rule = optim.get_update_rule(self.update_rule)
        self.schedule = schedules.make_schedule(lr_schedule, lr_decay=self.lr_decay,
                                                num_epochs=max(self.num_epochs, 1),
                                                warmup_iters=warmup_iters)
        self.iterations_per_epoch = self.parallel.steps_per_epoch(
            self.X_train.shape[0], self.batch_size, self.drop_last)

        # Resuming without update_rule: the checkpoint's rule checks optim_config's keys.
        defer = resume is not None and "update_rule" not in self._explicit
        self.state = self._fresh_state({} if defer else self.optim_config)
        self.best_checkpoint: Path | None = None  # the best epoch's file, once written
        self.last_checkpoint: Path | None = None  # the last finished epoch's file
        self.resumed: Resumed | None = None  # set by a resume
        #: Names to show for keywords in messages (``gpunet train`` sets its flags).
        self.display_names: dict[str, str] = {}
        self.output = Progress(self.verbose and self.parallel.is_root, self.progress)
        self.callbacks = [LearningRate(), NonFiniteGuard(), EarlyStopping(), self.output]
        if self.checkpoint_name is not None:
            self.callbacks.append(Checkpoint(self.checkpoint_name, self.output))
        if resume is not None:
            self.load_checkpoint(resume)
        else:  # every process starts from the first one's state
            self.parallel.from_root(self._try_checkpoint_directory, self._export, self._import,
                                    self.model, "share its training state")

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
        (``None`` on ranks other than 0 of a data-parallel run, which draw nothing)."""
        if not self.parallel.is_root:
            return None
        return plot_history(self.history, self.iterations_per_epoch, path,
                            best_epoch=self.best_epoch,
                            stopped_epoch=self.epoch if self.stopped_early else None)

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
        onto the backend of ``model.params``; training continues at the next epoch. Settings
        follow the rule of the ``resume`` keyword (see the class docstring). A checkpoint
        that does not fit changes nothing and raises
        :class:`~gpunet.checkpoint.CheckpointError` naming the file.

        With a communicator of several processes this is collective: rank 0 reads the
        file and broadcasts the state; an error on rank 0 is raised on every rank.
        """
        self.parallel.from_root(lambda: self._load_file(path), self._export, self._import,
                                self.model, f"load checkpoint {str(path)!r}")

    def _try_checkpoint_directory(self) -> None:
        """Write a file where the checkpoints go (an OSError naming checkpoint_name now, not
        after the first epoch)."""
        if self.checkpoint_name is None:
            return
        directory = Path(self.checkpoint_name).parent
        try:
            try_directory(directory)
        except OSError as exc:
            raise OSError(f"checkpoint_name {self.checkpoint_name!r}: cannot write in {directory} "
                          f"({exc.strerror or exc})") from None

    def _load_file(self, path) -> None:
        self._try_checkpoint_directory()
        arrays, meta = load_npz(path)
        where = f"checkpoint {str(path)!r}"
        try:
            self._take(arrays, meta, where)
            self.parallel.check_world_size(meta.get("world_size", 1), self.batch_size, where)
        except CheckpointError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError,
                OverflowError) as exc:
            text = str(exc) if where in str(exc) else f"{where}: {exc}"
            raise CheckpointError(text) from None
        self.resumed = Resumed(str(path), self.state.epoch, self.state.iteration,
                               tuple(self._changes))
        if self.checkpoint_name is not None:
            best = Path(f"{self.checkpoint_name}_best.npz")
            self.best_checkpoint = best if best.exists() else None

    def _take(self, arrays: dict, meta: dict, where: str, warn: bool = True,
              same: bool = False) -> None:
        """Load ``(arrays, meta)`` and the recorded settings by the resume rule: passed
        keywords win (differences go to ``self._changes``), the others are the
        checkpoint's. ``same``: a passed keyword that differs is an error (another
        process's state). All or nothing."""
        check_meta(meta, list(self.model.params), list(buffers_of(self.model) or {}), where)
        explicit, changes, updates = self._explicit, [], {}

        def setting(key, saved, mine, same=lambda a, b: a == b):
            if saved is None or same(saved, mine):
                return
            if key in explicit:
                changes.append((key, saved, mine))
            else:
                updates[key] = saved

        for key in _ADOPTED:
            setting(key, meta.get(key), getattr(self, key))
        rule = meta.get("update_rule")
        setting("update_rule", rule, self.update_rule_name)
        if "update_rule" in updates and rule not in optim.UPDATE_RULES:
            raise ValueError(f"{where} was trained with update rule {rule!r} (a function); "
                             f"pass it as update_rule to resume")
        saved_schedule, mine = meta.get("schedule"), self.schedule.to_config()
        recorded = None if saved_schedule is None else _schedule(saved_schedule)  # checked even if unused
        if recorded is not None and mine is not None and recorded.to_config() != mine:
            if any(k in explicit for k in _SCHEDULE_KEYWORDS):
                changes.append(("lr_schedule", recorded, self.schedule))
            else:
                updates["schedule"] = recorded
        if meta.get("num_train") not in (None, self.X_train.shape[0]):
            changes.append(("num_train", meta["num_train"], int(self.X_train.shape[0])))
        if "run_info" not in explicit and meta.get("run") is not None:
            updates["run_info"] = meta["run"]
        for key, value in updates.items():  # checked like the keywords they stand for
            if key in ("batch_size", "num_epochs", "patience"):
                integer(key, value, low=1 if key != "num_epochs" else 0,
                        allow_none=key == "patience", fn=where)
            elif key == "drop_last":
                boolean(key, value, fn=where)
            elif key == "monitor":
                choice(key, value, _MONITORS, fn=where)

        rule_name = updates.get("update_rule", self.update_rule_name)
        if rule_name in optim.UPDATE_RULES:
            optim.check_config(rule_name, self.optim_config)
        configs = None
        if rule_name != rule:  # another rule (passed): its optimizer state starts afresh
            configs = self._fresh_state(self.optim_config).optim_configs
        override = self.optim_config
        first = _first_value(meta.get("optim_scalars"))
        saved = dict(first) if isinstance(first, Mapping) else {}
        saved["learning_rate"] = _first_value(meta.get("base_lr"))  # the base rate
        if configs is None:
            for key, value in override.items():
                old = saved.get(key)
                if old != value:
                    changes.append((f"optim_config[{key!r}]", old, value))
        if same and "run_info" in explicit:  # another process's state: its run must be this one
            changes += _run_differences(meta.get("run"), self.run_info)
        if same and changes:
            raise ValueError(f"{where} has " + ", ".join(
                f"{k}={_brief(old)}" for k, old, _ in changes) + " but this process has " + ", ".join(
                f"{k}={_brief(new)}" for k, _, new in changes) + "; build the same Solver (and data) "
                "on every process")
        batch_size = updates.get("batch_size", self.batch_size)
        drop_last = updates.get("drop_last", self.drop_last)
        steps = self.parallel.steps_per_epoch(self.X_train.shape[0], batch_size, drop_last)

        self.state.load(arrays, meta, self.model, where, configs=configs,
                        override=override if configs is None else None, warn=warn)
        # Loaded: now the settings.
        for key, value in updates.items():
            setattr(self, key, value)
        if "update_rule" in updates:
            self.update_rule_name, self.update_rule = optim.get_update_rule(rule_name)
        if "batch_size" in updates and "eval_batch_size" not in explicit:
            self.eval_batch_size = max(batch_size, 100)
        self.iterations_per_epoch = steps
        self._changes = changes

    def _fresh_state(self, optim_config: dict) -> TrainingState:
        return TrainingState.fresh(self.model.params, optim_config, self.update_rule_name,
                                   self.update_rule, self.seed)

    def _settings(self) -> dict:
        """The settings a checkpoint records (a resume takes those not passed again)."""
        return {"update_rule": self.update_rule_name, "schedule": self.schedule.to_config(),
                "batch_size": self.batch_size, "drop_last": self.drop_last,
                "num_train": int(self.X_train.shape[0]), "num_epochs": self.num_epochs,
                "monitor": self.monitor, "patience": self.patience,
                "world_size": self.parallel.world_size, "run": self.run_info}

    def _export(self) -> tuple[dict, dict]:
        """The state to share with other processes: arrays and JSON data."""
        arrays, meta = self.state.to_arrays(self.model, self._settings())
        best = str(self.best_checkpoint) if self.best_checkpoint is not None else None
        resumed = None if self.resumed is None else [
            self.resumed.path, self.resumed.epoch, self.resumed.iteration]
        return arrays, {"meta": meta, "best_checkpoint": best, "resumed": resumed}

    def _import(self, arrays: dict, info: dict, where: str) -> None:
        """Take over the state :meth:`_export` gave (all or nothing)."""
        self._take(arrays, info["meta"], where, warn=False, same=True)
        best = info["best_checkpoint"]
        self.best_checkpoint = Path(best) if best is not None else None
        if info["resumed"] is not None:
            self.resumed = Resumed(*info["resumed"])


#: Every Solver keyword, for the hint on a misspelt one.
KEYWORDS = ("update_rule", "optim_config", "lr_decay", "batch_size", "num_epochs", "num_train_samples",
            "num_val_samples", "checkpoint_name", "keep_every", "print_every", "verbose", "patience",
            "monitor", "lr_schedule", "warmup_iters", "seed", "resume", "eval_batch_size", "drop_last",
            "restore_best", "progress", "run_info", "comm")


def _keyword_hint(unknown) -> str:
    """" (did you mean ...)" for misspelt Solver keywords; optimizer settings belong in optim_config."""
    hints = []
    for k in map(str, unknown):
        if k in optim.DEFAULTS["adamw"] or k in ("lr", "momentum", "decay_rate"):
            hints.append(f"{k!r} goes in optim_config, e.g. optim_config={{'learning_rate': 1e-3}}")
        elif close := difflib.get_close_matches(k, KEYWORDS, n=1):
            hints.append(f"{k!r}: did you mean {close[0]!r}?")
    return f" ({'; '.join(hints)})" if hints else ""


def _run_differences(saved, mine) -> list:
    """``(key, saved, mine)`` for each entry of two ``run_info`` values that differs (one level
    into ``"args"``, the command line's flags)."""
    if not (isinstance(saved, Mapping) and isinstance(mine, Mapping)):
        return [] if saved == mine else [("run_info", saved, mine)]
    out = []
    for key in sorted(set(saved) | set(mine), key=str):
        a, b = saved.get(key), mine.get(key)
        if key == "args" and isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [(f"run_info['args'][{f!r}]", a.get(f), b.get(f))
                    for f in sorted(set(a) | set(b), key=str) if a.get(f) != b.get(f)]
        elif a != b:
            out.append((f"run_info[{key!r}]", a, b))
    return out


def _brief(value) -> str:
    """``repr(value)``, cut to 60 characters (a run's mean and std are long lists)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_value(mapping):
    """The first value of ``mapping`` (None if it is not a non-empty mapping)."""
    return next(iter(mapping.values()), None) if isinstance(mapping, Mapping) else None


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


def _schedule(cfg: Mapping) -> schedules.Schedule:
    """The schedule a checkpoint's config describes (see ``Schedule.to_config``)."""
    kind = cfg.get("type") if isinstance(cfg, Mapping) else None
    if kind == "Constant":
        return schedules.Constant()
    if kind == "StepDecay":
        return schedules.StepDecay(cfg["decay"], cfg["step_size"])
    if kind == "Cosine":
        return schedules.Cosine(cfg["num_epochs"], cfg["min_factor"])
    if kind == "Warmup":
        return schedules.Warmup(cfg["warmup_iters"], after=_schedule(cfg["after"]))
    raise ValueError(f"unknown learning-rate schedule {cfg!r}")


def _splits(data) -> tuple:
    """``X_train, y_train, X_val, y_val`` of the Solver's ``data`` dict, checked."""
    if not isinstance(data, Mapping):
        hint = (" (a gpunet Dataset: pass data.as_solver_data())"
                if callable(getattr(data, "as_solver_data", None)) else "")
        raise TypeError(f"data must be a dict with keys 'X_train', 'y_train', 'X_val', "
                        f"'y_val', got {type(data).__name__}{hint}")
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
    return tuple(data[k] for k in _SPLITS)
