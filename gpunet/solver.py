"""The Solver: trains a model with the CS231n contract by minibatch first-order updates.

Keyword names and behaviour follow CS231n's ``Solver`` (``update_rule``, ``optim_config``,
``lr_decay``, ``batch_size``, ``num_epochs``, ``num_train_samples``, ``num_val_samples``,
``checkpoint_name``, ``print_every``, ``verbose``), with the course code's bugs fixed:

- every epoch visits each training example once (a fresh permutation per epoch, drawn from
  the Solver's own seeded generator, not ``np.random.choice`` with replacement);
- ``check_accuracy`` subsamples without replacement and always evaluates in batches;
- each parameter gets its own deep copy of ``optim_config`` (state is never shared);
- the best parameters are deep copies (not aliases of arrays updated in place) and are
  written back *into* ``model.params`` in place (the dict is never replaced), together
  with the model's buffers (BatchNorm running statistics) when it has them;
- the best epoch is chosen by the monitored metric even if it never beats 0.

Additions: ``patience`` early stopping on ``monitor`` (``"val_acc"`` or ``"val_loss"``),
learning-rate schedules (:mod:`gpunet.schedules`), atomic ``.npz`` checkpoints that resume
bitwise-exactly on the same backend and load onto any backend, a NaN/inf guard, a tqdm
progress bar, ``history`` and :meth:`Solver.plot`.

No host sync per step: each step's loss is written into a device buffer; the buffer is read
back (one transfer) every ``print_every`` iterations and at the end of each epoch, which is
also where non-finite losses are detected (so detection may lag by up to ``print_every``
iterations; the error still names the first bad iteration).

``history``: ``loss`` per iteration; ``train_acc``, ``val_acc``, ``val_loss`` and ``lr``
(the rate of the epoch's last step) per epoch, evaluated at each epoch end (CS231n also
evaluated after the first iteration; here each list has one entry per finished epoch).
Schedules are applied per epoch, warm-up per iteration. Checkpoints are taken at epoch
ends; resuming one gives bitwise the parameters of an unbroken run on the same backend,
provided the model draws its randomness from ``model.rng`` (a ``numpy.random.Generator``,
checkpointed) rather than the global ``np.random``.

``train()`` makes the process keep freed host memory for reuse
(:func:`gpunet.backend.host_memory.keep_freed_memory`; ``GPUNET_KEEP_HOST_MEMORY=0`` turns it
off): otherwise glibc returns each step's large temporaries to the system and faults them
in again on the next step.

Data-parallel training (``comm``, a :class:`gpunet.distributed.Communicator` of ``size``
processes; every rank builds the same Solver on the same data):

- ``batch_size`` is per process (as PyTorch DDP and ChainerMN): one step consumes
  ``size * batch_size`` examples. The learning rate is not rescaled.
- Each epoch every rank draws the same seeded permutation ``perm``, drops its last
  ``N % size`` entries (a different few each epoch) and takes ``perm[rank::size]`` in
  batches of ``batch_size``: every rank makes the same number of steps with batches of the
  same size, and step ``i`` of the job as a whole covers
  ``perm[i * size * batch_size:(i + 1) * size * batch_size]``, the batch a single process
  with ``batch_size * size`` would take. The gradients, averaged over ranks (one
  ``allreduce_mean`` per step on all gradients and the loss), are then that single
  process's gradient up to rounding, for losses that are means over the batch (BatchNorm
  normalises with each rank's own batch statistics, so models with BatchNorm differ).
- Rank 0's parameters, buffers, optimizer state, counters and generators are broadcast
  when the Solver is built and when it loads a checkpoint (only rank 0 reads the file);
  ``model.rng`` (dropout) is then re-seeded per rank from rank 0's state at the start and
  at every epoch end, so masks differ between ranks yet resume exactly.
- The loss history holds the mean over ranks; accuracies and the validation loss are
  computed on each rank's share of the (sub)sample and summed over ranks; BatchNorm
  running statistics are averaged over ranks at every epoch end (before evaluation and
  saving). Every decision (NaN guard, best epoch, patience, schedules) therefore uses the
  same numbers on every rank, and all ranks stop together.
- Only rank 0 prints, plots and writes checkpoints; then all ranks meet (a one-number
  allreduce that also tells them whether rank 0's write failed, so a failed write raises
  on every rank instead of leaving the others waiting).

Building the Solver, ``train``, ``load_checkpoint`` and ``check_accuracy`` are collective
with a communicator: every rank must call them.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
import math
import time
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np

from . import optim
from .backend import get_array_module, to_numpy
from .backend.host_memory import keep_freed_memory
from .backend.namespace import backend_of, from_host, zeros
from .backend.ops import host_dtype
from .checkpoint import load_npz, save_npz_atomic
from .schedules import make_schedule

__all__ = ["NonFiniteLossError", "Solver"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf; says at which iteration and where the best
    checkpoint is kept (``iteration`` is 1-based, ``epoch`` 1-based, ``best_checkpoint``
    a path or ``None``)."""

    def __init__(self, message, *, iteration, epoch, value, best_checkpoint):
        super().__init__(message)
        self.iteration = iteration
        self.epoch = epoch
        self.value = value
        self.best_checkpoint = best_checkpoint


_MONITORS = ("val_acc", "val_loss")


def _is_array(x) -> bool:
    if isinstance(x, (list, tuple, dict, str)):
        return False
    try:
        return backend_of(x) is not None
    except TypeError:
        return False


def _copy(a):
    """A deep copy of an array on its own device (or of any other value)."""
    b = backend_of(a) if _is_array(a) else None
    if b in ("numpy", "cupy"):
        return a.copy()
    if b == "strict":
        return get_array_module(a).asarray(a, copy=True)
    return copy.deepcopy(a)


def _check_int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        more = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int >= {low}{more}, got {value!r}")
    return int(value)


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
      ``comm`` (None): a :class:`gpunet.distributed.Communicator` (``rank``, ``size``,
      ``allreduce_mean``, ``allreduce_sum``, ``bcast``, ``barrier``) for data-parallel
      training, see the module docstring (``batch_size`` is then per process).
    """

    def __init__(self, model, data, **kwargs):
        self.model = model
        params = getattr(model, "params", None)
        if not isinstance(params, Mapping) or not params:
            raise TypeError(
                "model must have a non-empty dict `params` (name -> array) and a method "
                "`loss(X, y=None)` (the CS231n model contract)"
            )
        if not callable(getattr(model, "loss", None)):
            raise TypeError("model must have a method loss(X, y=None) (the CS231n model contract)")
        missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
        if missing:
            raise KeyError(
                f"data is missing {missing}; expected a dict with keys 'X_train', 'y_train', "
                "'X_val', 'y_val'"
            )
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]
        for split in ("train", "val"):
            X, y = data[f"X_{split}"], data[f"y_{split}"]
            if X.shape[0] != y.shape[0] or X.shape[0] == 0:
                raise ValueError(
                    f"X_{split} has {X.shape[0]} rows and y_{split} has {y.shape[0]}; "
                    "they must be equal and non-zero"
                )

        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = _check_int("batch_size", kwargs.pop("batch_size", 100), 1)
        self.num_epochs = _check_int("num_epochs", kwargs.pop("num_epochs", 10), 0)
        self.num_train_samples = _check_int(
            "num_train_samples", kwargs.pop("num_train_samples", 1000), 1, allow_none=True)
        self.num_val_samples = _check_int(
            "num_val_samples", kwargs.pop("num_val_samples", None), 1, allow_none=True)
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = _check_int("print_every", kwargs.pop("print_every", 10), 1)
        self.verbose = bool(kwargs.pop("verbose", True))

        self.patience = _check_int("patience", kwargs.pop("patience", None), 1, allow_none=True)
        self.monitor = kwargs.pop("monitor", "val_acc")
        lr_schedule = kwargs.pop("lr_schedule", None)
        warmup_iters = kwargs.pop("warmup_iters", 0)
        self.seed = kwargs.pop("seed", None)
        resume = kwargs.pop("resume", None)
        self.eval_batch_size = _check_int(
            "eval_batch_size", kwargs.pop("eval_batch_size", max(self.batch_size, 100)), 1)
        self.drop_last = bool(kwargs.pop("drop_last", False))
        self.restore_best = bool(kwargs.pop("restore_best", True))
        self.progress = kwargs.pop("progress", "auto")
        self.comm = kwargs.pop("comm", None)
        if kwargs:
            raise ValueError(
                f"Unrecognized arguments {', '.join(map(repr, kwargs))}; see help(Solver) "
                "for the accepted keywords"
            )

        if self.monitor not in _MONITORS:
            raise ValueError(f"monitor must be one of {_MONITORS}, got {self.monitor!r}")
        if self.progress not in ("auto", True, False):
            raise ValueError(f"progress must be 'auto', True or False, got {self.progress!r}")
        if not isinstance(self.optim_config, dict):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        self.update_rule_name, self.update_rule = optim.get_update_rule(self.update_rule)
        self.schedule = make_schedule(lr_schedule, lr_decay=self.lr_decay,
                                      num_epochs=max(self.num_epochs, 1),
                                      warmup_iters=warmup_iters)
        self._rank, self._size = self._comm_kind()
        self._is_root = self._rank == 0
        self._tqdm = self._find_tqdm()

        num_train = self.X_train.shape[0]
        per_rank = num_train // self._size  # examples per rank and epoch
        where = "" if self._size == 1 else f" per process ({self._size} processes)"
        if per_rank == 0:
            raise ValueError(f"{num_train} training examples cannot be shared by {self._size} "
                             "processes; use fewer processes or more data")
        if self.drop_last:
            if per_rank < self.batch_size:
                raise ValueError(
                    f"drop_last=True with batch_size={self.batch_size} > {per_rank} training "
                    f"examples{where} would leave no batch; lower batch_size or set "
                    "drop_last=False"
                )
            self.iterations_per_epoch = per_rank // self.batch_size
        else:
            self.iterations_per_epoch = -(-per_rank // self.batch_size)

        self._reset()
        if resume is not None:
            self.load_checkpoint(resume)
        elif self._size > 1:
            self._sync_from_root()

    # --- state ------------------------------------------------------------------------
    def _reset(self):
        """Fresh training state: counters, history, per-parameter optimizer configs, RNGs."""
        self.epoch = 0
        self.iteration = 0
        self.best_val_acc = 0.0
        self.best_val_loss = math.inf
        self.best_epoch = None
        self.best_params = {}
        self.best_buffers = {}
        self.best_checkpoint = None
        self.epochs_since_best = 0
        self.stopped_early = False
        self.history = {"loss": [], "train_acc": [], "val_acc": [], "val_loss": [], "lr": []}

        self.optim_configs = {}
        self._base_lr = {}
        for p in self.model.params:
            cfg = copy.deepcopy(self.optim_config)
            if self.update_rule is optim.UPDATE_RULES.get(self.update_rule_name):
                cfg = optim.with_defaults(self.update_rule_name, cfg)  # checks the keys early
            self.optim_configs[p] = cfg
            self._base_lr[p] = cfg.get("learning_rate")

        seeds = np.random.SeedSequence(self.seed).spawn(2)
        self._rng = np.random.Generator(np.random.PCG64(seeds[0]))
        self._eval_rng = np.random.Generator(np.random.PCG64(seeds[1]))

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

    def _comm_kind(self) -> tuple:
        """``(rank, size)`` of ``self.comm`` after checking it is a whole communicator."""
        comm = self.comm
        if comm is None:
            return 0, 1
        missing = [a for a in ("rank", "size", "allreduce_mean", "allreduce_sum", "bcast", "barrier")
                   if not hasattr(comm, a)]
        if missing:
            raise TypeError(f"comm must be a gpunet.distributed.Communicator (rank, size, "
                            f"allreduce_mean, allreduce_sum, bcast, barrier); "
                            f"{type(comm).__name__} has no {', '.join(missing)}")
        rank, size = self.comm.rank, self.comm.size
        if not (isinstance(size, Integral) and isinstance(rank, Integral) and 0 <= rank < size):
            raise ValueError(f"comm.rank must be in [0, comm.size), got rank={rank!r}, "
                             f"size={size!r}")
        return rank, size

    def _bcast_json(self, obj):
        """Rank 0's JSON data ``obj`` on every rank (see ``Communicator.bcast_json``)."""
        from .distributed import Communicator

        return Communicator.bcast_json(self.comm, obj)

    def _like(self):
        """A parameter array: new data is placed on its backend and device."""
        return next(iter(self.model.params.values()))

    def _model_rng(self):
        rng = getattr(self.model, "rng", None)
        return rng if isinstance(rng, np.random.Generator) else None

    def _buffers(self):
        get = getattr(self.model, "get_buffers", None)
        return dict(get()) if callable(get) else None

    # --- data ---------------------------------------------------------------------------
    @staticmethod
    def _gather(A, idx: np.ndarray, like):
        """Rows ``idx`` (host int array) of ``A``, placed next to ``like``."""
        b = backend_of(A)
        if b == "numpy":
            return from_host(A[idx], like)
        xp = get_array_module(A)
        out = xp.take(A, from_host(idx, A), axis=0)
        return out if b == backend_of(like) else from_host(to_numpy(out), like)

    @staticmethod
    def _slice(A, start: int, stop: int, like):
        """Rows ``start:stop`` of ``A``, placed next to ``like``."""
        out = A[start:stop, ...]
        b = backend_of(out)
        if b == backend_of(like):
            return out
        return from_host(to_numpy(out) if b != "numpy" else np.ascontiguousarray(out), like)

    # --- one step -----------------------------------------------------------------------
    def _reduce(self, grads: dict, loss):
        """``(grads, loss)`` averaged over the ranks of ``comm`` (unchanged without one).

        A full communicator gets every gradient and the loss in one ``allreduce_mean`` (one
        packed buffer per dtype).
        """
        if self.comm is None:
            return grads, loss
        names = list(self.model.params)
        arrays = [grads[k] for k in names]
        if not _is_array(loss):  # a Python or NumPy scalar: a 0-d array of its dtype
            loss = np.asarray(loss, dtype=np.float64 if isinstance(loss, (int, float)) else None)
        *reduced, loss = self.comm.allreduce_mean(arrays + [loss])
        return dict(zip(names, reduced)), loss

    def _step(self, idx: np.ndarray):
        """Forward/backward on the minibatch ``idx`` and one update of every parameter.

        Returns the loss as the model gave it (a device 0-d array or a Python float).
        """
        like = self._like()
        X_batch = self._gather(self.X_train, idx, like)
        y_batch = self._gather(self.y_train, idx, like)
        out = self.model.loss(X_batch, y_batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                "model.loss(X, y) must return (loss, grads) when y is given; got "
                f"{type(out).__name__}"
            )
        loss, grads = out
        missing = [p for p in self.model.params if p not in grads]
        if missing:
            raise KeyError(f"model.loss returned no gradient for parameter(s) {missing}; "
                           "grads must have the same keys as model.params")
        grads, loss = self._reduce(grads, loss)
        for p, w in self.model.params.items():
            next_w, next_config = self.update_rule(w, grads[p], self.optim_configs[p])
            if next_w is not w:
                self.model.params[p] = next_w
            self.optim_configs[p] = next_config
        return loss

    def _set_lr(self):
        factor = self.schedule.factor(self.epoch, self.iteration)
        for p, cfg in self.optim_configs.items():
            base = self._base_lr.get(p)
            if base is not None:
                cfg["learning_rate"] = base * factor

    def _current_lr(self):
        cfg = self.optim_configs[next(iter(self.optim_configs))]
        return cfg.get("learning_rate")

    # --- training -------------------------------------------------------------------------
    def train(self):
        """Run epochs until ``num_epochs`` (or early stopping); then, with ``restore_best``,
        put the best epoch's parameters (and buffers) into the model."""
        keep_freed_memory()
        while self.epoch < self.num_epochs and not self.stopped_early:
            self._train_epoch()
        if self.restore_best:
            self._restore_best()

    def _train_epoch(self):
        num_train = self.X_train.shape[0]
        ipe, bs = self.iterations_per_epoch, self.batch_size
        perm = self._rng.permutation(num_train)
        size = self._size
        if size > 1:  # this rank's share: equal sizes on every rank (see the module doc)
            perm = perm[:num_train - num_train % size][self._rank::size]
        self._set_lr()
        window = _LossWindow(ipe)
        bar = self._open_bar(ipe * bs * size if self.drop_last else len(perm) * size)
        t_report, samples = time.perf_counter(), 0
        try:
            for i in range(ipe):
                idx = perm[i * bs:(i + 1) * bs]
                if self.schedule.per_iteration:
                    self._set_lr()
                t = self.iteration
                window.put(i, self._step(idx))
                self.iteration += 1
                samples += len(idx) * size
                if bar is not None:
                    bar.update(len(idx) * size)
                report = t % self.print_every == 0
                if report or i == ipe - 1:  # the only read-backs of the loss
                    losses = self._read_losses(window, i + 1)
                    now = time.perf_counter()
                    self._report_loss(bar, t, losses, samples / max(now - t_report, 1e-9),
                                      line=report)
                    t_report, samples = now, 0
            self.epoch += 1
            self._end_epoch(bar)
        finally:
            if bar is not None:
                bar.close()

    def _read_losses(self, window, stop):
        """Read the losses of steps ``window.read..stop`` back (one transfer), check them."""
        values = window.read(stop)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            self.history["loss"].extend(values[:bad[0]].tolist())  # the finite ones before
            first_iteration = self.iteration - (stop - window.start) + int(bad[0]) + 1
            self._nonfinite(first_iteration, float(values[bad[0]]))
        window.start = stop
        self.history["loss"].extend(values.tolist())
        return values

    def _nonfinite(self, iteration, value):
        """Raise :class:`NonFiniteLossError`, restoring the best parameters if there are any."""
        restored = bool(self.best_params) and self.restore_best
        if restored:
            self._restore_best()
        total = self.num_epochs * self.iterations_per_epoch
        msg = (
            f"loss is {value} at iteration {iteration} of {total} (epoch {self.epoch + 1} of "
            f"{self.num_epochs}); training stopped at iteration {self.iteration} (losses are "
            f"read back every print_every={self.print_every} iterations and at each epoch end). "
        )
        if self.best_checkpoint is not None:
            msg += (f"The best checkpoint is kept at {str(self.best_checkpoint)!r} (epoch "
                    f"{self.best_epoch}). ")
        elif self.best_epoch is not None:
            msg += (f"No checkpoint file was written (checkpoint_name=None); the best epoch "
                    f"({self.best_epoch}) is kept in solver.best_params. ")
        else:
            msg += "No epoch had finished, so there is no best checkpoint yet. "
        if restored:
            msg += "The model's parameters were restored to the best epoch's. "
        msg += "Try a lower learning rate and check the inputs for NaN/inf."
        raise NonFiniteLossError(msg, iteration=iteration, epoch=self.epoch + 1, value=value,
                                 best_checkpoint=self.best_checkpoint)

    def _end_epoch(self, bar):
        self.history["lr"].append(self._current_lr())
        self._average_buffers()
        train_acc, _ = self._evaluate(self.X_train, self.y_train, self.num_train_samples,
                                      None, with_loss=False)
        val_acc, val_loss = self._evaluate(self.X_val, self.y_val, self.num_val_samples,
                                           None, with_loss=True)
        self.history["train_acc"].append(train_acc)
        self.history["val_acc"].append(val_acc)
        self.history["val_loss"].append(val_loss)

        if self.monitor == "val_acc":
            improved = self.best_epoch is None or val_acc > self.best_val_acc
        else:
            improved = self.best_epoch is None or val_loss < self.best_val_loss
        if improved:
            self.best_epoch = self.epoch
            self.best_val_acc, self.best_val_loss = val_acc, val_loss
            self.best_params = {k: _copy(v) for k, v in self.model.params.items()}
            buffers = self._buffers()
            self.best_buffers = {k: _copy(v) for k, v in buffers.items()} if buffers else {}
            self.epochs_since_best = 0
        else:
            self.epochs_since_best += 1
        if self.patience is not None and self.epochs_since_best >= self.patience:
            self.stopped_early = True

        self._print(bar, (
            f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: "
            f"{val_acc:f}; val_loss: {val_loss:f}; lr: {self._current_lr():g}"
        ))
        self._reseed_model_rng()
        if self.checkpoint_name is not None:
            best = Path(f"{self.checkpoint_name}_best.npz")
            error = None
            if self._is_root:
                try:
                    path = self.save_checkpoint(f"{self.checkpoint_name}_epoch_{self.epoch}.npz")
                    self._print(bar, f'Saving checkpoint to "{path}"')
                    if improved:
                        self.best_checkpoint = best
                        self.save_checkpoint(best)
                except Exception as exc:
                    error = exc
            elif improved:
                self.best_checkpoint = best
            self._agree(error, "write the checkpoint")
        if self.stopped_early:
            self._print(bar, (
                f"Early stopping: {self.monitor} has not improved for {self.epochs_since_best} "
                f"epoch(s) (patience={self.patience}); best epoch {self.best_epoch}"
            ))

    def _restore_best(self):
        """Write the best parameters into ``model.params`` in place (and the best buffers)."""
        if not self.best_params:
            return
        for k, w in self.model.params.items():
            w[...] = self.best_params[k]
        if self.best_buffers:
            self.model.set_buffers({k: _copy(v) for k, v in self.best_buffers.items()})

    # --- evaluation -----------------------------------------------------------------------
    def check_accuracy(self, X, y, num_samples=None, batch_size=None):
        """Fraction of rows of ``X`` (N, ...) whose argmax score equals ``y`` (N,).

        With ``num_samples`` < N, a subsample drawn without replacement. Runs the model in
        test mode on batches of ``batch_size`` (default ``eval_batch_size``), counts on the
        device and reads back once. Returns a Python float.
        """
        acc, _ = self._evaluate(X, y, num_samples, batch_size, with_loss=False)
        return acc

    def _evaluate(self, X, y, num_samples, batch_size, with_loss):
        """``(accuracy, mean softmax cross-entropy or nan)`` over X, y, in batches."""
        n = X.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {y.shape[0]}")
        if n == 0:
            raise ValueError("cannot evaluate on an empty set (X has 0 rows)")
        batch_size = _check_int("batch_size", batch_size or self.eval_batch_size, 1)
        idx = None
        if num_samples is not None and n > num_samples:
            idx = self._eval_rng.choice(n, num_samples, replace=False)
            n = num_samples
        like = self._like()
        correct = loss_sum = None
        lo, hi = n * self._rank // self._size, n * (self._rank + 1) // self._size  # our share
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            if idx is None:
                Xb, yb = self._slice(X, start, stop, like), self._slice(y, start, stop, like)
            else:
                Xb, yb = self._gather(X, idx[start:stop], like), self._gather(y, idx[start:stop], like)
            scores = self.model.loss(Xb)
            if len(scores.shape) != 2 or scores.shape[0] != stop - start:
                raise ValueError(
                    f"model.loss(X) returned scores of shape {tuple(scores.shape)}; expected "
                    f"({stop - start}, num_classes)"
                )
            if start == lo and isinstance(y, np.ndarray):
                _check_labels(y, scores.shape[1])
            xp = get_array_module(scores, yb)
            yb = xp.astype(yb, xp.int64)
            c = xp.sum(xp.astype(xp.argmax(scores, axis=1) == yb, xp.int64))
            correct = c if correct is None else correct + c
            if with_loss:
                s = _softmax_ce_sum(xp, scores, yb)
                loss_sum = s if loss_sum is None else loss_sum + s
        if correct is None:  # no share of the (sub)sample on this rank
            host = np.zeros(2 if with_loss else 1)
        else:
            xp = get_array_module(correct)
            parts = [xp.astype(correct, xp.float64)]
            if with_loss:
                parts.append(xp.astype(loss_sum, xp.float64))
            host = to_numpy(xp.stack(parts))  # the one read-back
        if self._size > 1:  # counts and loss sums of all ranks: one small allreduce
            (host,) = self.comm.allreduce_sum([np.array(host, dtype=np.float64)])
        acc = float(host[0]) / n
        return acc, (float(host[1]) / n if with_loss else math.nan)

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path) -> Path:
        """Write the full training state to ``path`` (.npz, atomically); returns the path.

        Holds parameters, buffers, optimizer state, best parameters, counters, history and
        RNG states; arrays are copied to the host. Under MPI, call it on rank 0 only.
        """
        arrays, meta = self._state()
        return save_npz_atomic(path, arrays, meta)

    def _state(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: the training state as named arrays (any backend) and JSON data."""
        arrays = {}
        for k, w in self.model.params.items():
            arrays[f"param/{k}"] = w
        buffers = self._buffers() or {}
        for k, b in buffers.items():
            arrays[f"buffer/{k}"] = b
        for k, w in self.best_params.items():
            arrays[f"best_param/{k}"] = w
        for k, b in self.best_buffers.items():
            arrays[f"best_buffer/{k}"] = b
        optim_scalars, optim_arrays = {}, {}
        for p, cfg in self.optim_configs.items():
            optim_scalars[p], optim_arrays[p] = {}, []
            for key, value in cfg.items():
                if _is_array(value):
                    arrays[f"optim/{p}/{key}"] = value
                    optim_arrays[p].append(key)
                else:
                    optim_scalars[p][key] = value
        model_rng = self._model_rng()
        meta = {
            "kind": "solver",
            "update_rule": self.update_rule_name,
            "optim_scalars": optim_scalars,
            "optim_arrays": optim_arrays,
            "base_lr": self._base_lr,
            "schedule": self.schedule.to_config(),
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "num_train": int(self.X_train.shape[0]),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "num_epochs": self.num_epochs,
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
            "best_val_loss": self.best_val_loss,
            "epochs_since_best": self.epochs_since_best,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "param_names": list(self.model.params),
            "buffer_names": list(buffers),
            "best_buffer_names": list(self.best_buffers),
            "rng": self._rng.bit_generator.state,
            "eval_rng": self._eval_rng.bit_generator.state,
            "model_rng": model_rng.bit_generator.state if model_rng is not None else None,
            "backend": backend_of(self._like()),
            "world_size": self._size,
        }
        return arrays, meta

    def load_checkpoint(self, path) -> None:
        """Restore the training state saved by :meth:`save_checkpoint` (from any backend)
        onto the backend of ``model.params``; training continues at the next epoch.

        With a communicator of several processes this is collective: rank 0 reads the
        file and broadcasts the state; an error on rank 0 is raised on every rank.
        """
        if self._size == 1:
            self._load_file(path)
            return
        error = None
        if self._is_root:
            try:
                self._load_file(path)
            except Exception as exc:
                error = exc
        self._sync_from_root(error, f"load checkpoint {str(path)!r}")

    def _load_file(self, path) -> None:
        arrays, meta = load_npz(path)
        where = f"checkpoint {str(path)!r}"
        saved = meta.get("world_size", 1)
        if saved != self._size and self._is_root:
            warnings.warn(f"{where} was written by {saved} process(es), this run has "
                          f"{self._size}: a step now takes {self._size} x batch_size="
                          f"{self._size * self.batch_size} examples instead of "
                          f"{saved * self.batch_size}", stacklevel=3)
        self._apply_state(arrays, meta, where)
        if self.checkpoint_name is not None:
            best = Path(f"{self.checkpoint_name}_best.npz")
            self.best_checkpoint = best if best.exists() else None

    def _apply_state(self, arrays: dict, meta: dict, where: str) -> None:
        """Check ``(arrays, meta)`` (host arrays, as :meth:`_state` describes them) against
        this Solver and model, then make it the training state (all or nothing)."""
        if meta.get("kind") != "solver":
            raise ValueError(f"{where} is not a Solver checkpoint")
        if meta["update_rule"] != self.update_rule_name:
            raise ValueError(
                f"{where} was trained with update_rule={meta['update_rule']!r}, this Solver "
                f"uses {self.update_rule_name!r}; pass update_rule={meta['update_rule']!r}"
            )
        for key in ("batch_size", "drop_last"):
            if meta[key] != getattr(self, key):
                raise ValueError(f"{where} was trained with {key}={meta[key]!r}, this Solver "
                                 f"has {getattr(self, key)!r}; pass {key}={meta[key]!r} to resume")
        if meta["num_train"] != self.X_train.shape[0]:
            raise ValueError(f"{where} was trained on {meta['num_train']} examples, data has "
                             f"{self.X_train.shape[0]}; resume with the same training set")
        mine = self.schedule.to_config()
        if meta["schedule"] is not None and mine is not None and meta["schedule"] != mine:
            raise ValueError(f"{where} was trained with learning-rate schedule "
                             f"{meta['schedule']}, this Solver has {mine}; pass the same "
                             "lr_decay / lr_schedule / warmup_iters")
        names = list(self.model.params)
        if sorted(meta["param_names"]) != sorted(names):
            raise ValueError(f"{where} has parameters {sorted(meta['param_names'])}, the model "
                             f"has {sorted(names)}")
        buffers = self._buffers()
        if sorted(meta["buffer_names"]) != sorted(buffers or {}):
            raise ValueError(f"{where} has buffers {sorted(meta['buffer_names'])}, the model has "
                             f"{sorted(buffers or {})} (via get_buffers/set_buffers)")

        def placed(key, like):
            host = arrays[key]
            if not _is_array(like):  # a Python scalar buffer (e.g. a counter)
                return host[()].item() if host.shape == () else host
            if host.shape != tuple(like.shape) or host.dtype != host_dtype(like.dtype):
                raise ValueError(
                    f"{where}: {key!r} has shape {host.shape} and dtype {host.dtype}, the model "
                    f"has {tuple(like.shape)} and {host_dtype(like.dtype)}; build the model "
                    "with the same sizes and dtype"
                )
            return from_host(host, like)

        new_params = {k: placed(f"param/{k}", w) for k, w in self.model.params.items()}
        new_best = {k: placed(f"best_param/{k}", self.model.params[k])
                    for k in names if f"best_param/{k}" in arrays}
        new_configs = {}
        for p in names:
            cfg = dict(meta["optim_scalars"][p])
            for key in meta["optim_arrays"][p]:
                cfg[key] = placed(f"optim/{p}/{key}", self.model.params[p])
            new_configs[p] = cfg
        if buffers:
            new_buffers = {k: placed(f"buffer/{k}", b) for k, b in buffers.items()}
            new_best_buffers = {k: placed(f"best_buffer/{k}", buffers[k])
                                for k in meta["best_buffer_names"]}
        else:
            new_buffers, new_best_buffers = None, {}

        # Everything checked and placed: now commit.
        for k, w in self.model.params.items():
            w[...] = new_params[k]
        if new_buffers is not None:
            self.model.set_buffers(new_buffers)
        self.best_params, self.best_buffers = new_best, new_best_buffers
        self.optim_configs = new_configs
        self._base_lr = dict(meta["base_lr"])
        self.epoch, self.iteration = meta["epoch"], meta["iteration"]
        self.best_epoch = meta["best_epoch"]
        self.best_val_acc, self.best_val_loss = meta["best_val_acc"], meta["best_val_loss"]
        self.epochs_since_best = meta["epochs_since_best"]
        self.stopped_early = meta["stopped_early"]
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self._rng.bit_generator.state = meta["rng"]
        self._eval_rng.bit_generator.state = meta["eval_rng"]
        model_rng = self._model_rng()
        if meta["model_rng"] is not None:
            if model_rng is None:
                if self._is_root:
                    warnings.warn(f"{where} holds the state of model.rng but the model has no "
                                  "numpy Generator `rng`; dropout masks will differ",
                                  stacklevel=4)
            else:
                model_rng.bit_generator.state = meta["model_rng"]

    # --- data-parallel state --------------------------------------------------------------
    def _sync_from_root(self, error=None, what="share rank 0's training state"):
        """Make rank 0's whole training state (what a checkpoint holds) every rank's: its
        JSON part by ``Communicator.bcast_json``, its arrays by one ``bcast``
        of host buffers. ``error`` (rank 0's failure to produce the state) is raised on
        every rank. Then re-seed ``model.rng`` per rank."""
        comm = self.comm
        if self._is_root:
            if error is not None:
                payload = {"error": f"{type(error).__name__}: {error}"}
            else:
                arrays, meta = self._state()
                host = {k: np.ascontiguousarray(to_numpy(v)) for k, v in arrays.items()}
                best = str(self.best_checkpoint) if self.best_checkpoint is not None else None
                payload = {"meta": meta, "best_checkpoint": best,
                           "arrays": [[k, list(a.shape), a.dtype.str] for k, a in host.items()]}
        payload = self._bcast_json(payload if self._is_root else None)
        if "error" in payload:
            if error is not None:
                raise error
            raise RuntimeError(f"rank 0 failed to {what}: {payload['error']}")
        if self._is_root:
            names, bufs = list(host), list(host.values())
        else:
            names = [k for k, _, _ in payload["arrays"]]
            bufs = [np.empty(shape, dtype=np.dtype(dt)) for _, shape, dt in payload["arrays"]]
        bufs = comm.bcast(bufs, root=0)
        failure = None
        if not self._is_root:
            try:
                self._apply_state(dict(zip(names, bufs)), payload["meta"], "rank 0's state")
                best = payload["best_checkpoint"]
                self.best_checkpoint = Path(best) if best is not None else None
            except Exception as exc:
                failure = exc
        self._agree(failure, "take over rank 0's training state (build the same Solver and "
                             "model on every rank)")
        self._reseed_model_rng(payload["meta"]["model_rng"])

    def _agree(self, error, what: str) -> None:
        """Raise ``error`` if given; with several processes, first tell every rank (one
        small allreduce, which also makes all ranks meet) so that all of them raise."""
        if self._size == 1:
            if error is not None:
                raise error
            return
        flags = np.zeros(self._size)
        flags[self._rank] = error is not None
        (flags,) = self.comm.allreduce_sum([flags])
        if error is not None:
            raise error
        failed = np.flatnonzero(flags).tolist()
        if failed:
            raise RuntimeError(f"rank(s) {failed} failed to {what}; see their error")

    def _average_buffers(self) -> None:
        """Average the model's floating buffers (BatchNorm running statistics) over ranks."""
        if self._size == 1:
            return
        buffers = self._buffers()
        if not buffers:
            return
        names = [k for k, v in buffers.items()
                 if _is_array(v) and np.dtype(host_dtype(v.dtype)).kind in "fc"]
        if names:
            reduced = self.comm.allreduce_mean([buffers[k] for k in names])
            self.model.set_buffers({**buffers, **dict(zip(names, reduced))})

    def _reseed_model_rng(self, root_state=None) -> None:
        """Give ``model.rng`` on rank r > 0 a stream derived from rank 0's state and r (all
        ranks call this together): dropout masks differ between ranks, and a checkpoint,
        which holds rank 0's state, restores every rank's."""
        rng = self._model_rng()
        if self._size == 1 or rng is None:
            return
        if root_state is None:
            root_state = self._bcast_json(rng.bit_generator.state if self._is_root else None)
        if self._is_root:
            return
        from .checkpoint import encode_meta

        digest = hashlib.sha256(str(encode_meta({"s": root_state})[()]).encode()).digest()
        seq = np.random.SeedSequence(int.from_bytes(digest[:16], "little"),
                                     spawn_key=(self._rank,))
        rng.bit_generator.state = type(rng.bit_generator)(seq).state

    # --- reporting ---------------------------------------------------------------------------
    def _find_tqdm(self):
        if self.progress is False or not self.verbose:  # silent: no bar, so tqdm is not needed
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if self.progress is True:
                raise ImportError("progress=True needs tqdm: pip install gpunet[train]") from None
            return None
        return tqdm

    def _open_bar(self, total):
        if not (self.verbose and self._is_root) or self._tqdm is None:
            return None
        return self._tqdm(total=total, desc=f"epoch {self.epoch + 1}/{self.num_epochs}",
                          unit="samples", unit_scale=True, leave=True, dynamic_ncols=True)

    def _print(self, bar, line):
        if not (self.verbose and self._is_root):
            return
        if bar is not None:
            bar.write(line)
        else:
            print(line, flush=True)

    def _report_loss(self, bar, t, losses, rate, line):
        """Mean loss since the last read-back on the bar, or CS231n's line at print_every."""
        if not (self.verbose and self._is_root):
            return
        if bar is not None:
            bar.set_postfix(loss=f"{float(np.mean(losses)):.4f}", refresh=False)
        elif line:
            total = self.num_epochs * self.iterations_per_epoch
            print(f"(Iteration {t + 1} / {total}) loss: {losses[-1]:f} ({rate:.0f} samples/s)",
                  flush=True)

    def plot(self, path=None):
        """Draw loss per iteration, train/val accuracy and learning rate per epoch; save the
        figure to ``path`` (e.g. "curves.png") if given. Returns the matplotlib Figure
        (``None`` on ranks other than 0 of a data-parallel run, which draw nothing)."""
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError("Solver.plot needs matplotlib: pip install gpunet[train]") from None
        if not self._is_root:
            return None
        h = self.history
        fig = Figure(figsize=(12, 3.6), layout="constrained")
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        ax_loss.plot(np.arange(1, len(h["loss"]) + 1), h["loss"], lw=0.8, label="train loss")
        epochs = np.arange(1, len(h["val_acc"]) + 1)
        ipe = self.iterations_per_epoch
        if len(h["val_loss"]):
            ax_loss.plot(epochs * ipe, h["val_loss"], "o-", label="val loss")
        ax_loss.set(xlabel="iteration", ylabel="loss", title="Loss")
        ax_loss.legend()
        ax_acc.plot(epochs, h["train_acc"], "o-", label="train")
        ax_acc.plot(epochs, h["val_acc"], "o-", label="val")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
        ax_acc.legend()
        ax_lr.plot(epochs, h["lr"], "o-")
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
        for ax in (ax_acc, ax_lr):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if path is not None:
            fig.savefig(path)
        return fig


class _LossWindow:
    """Per-step losses of one epoch kept where they were computed; read back in slices."""

    def __init__(self, size: int):
        self.size = size
        self.buf = None
        self.start = 0  # first step not yet read back

    def put(self, i: int, loss) -> None:
        if self.buf is None:
            if backend_of(loss) is None:
                self.buf = np.empty(self.size, dtype=np.float64)
            else:
                if tuple(loss.shape) != ():
                    raise ValueError(f"model.loss must return a scalar loss, got shape "
                                     f"{tuple(loss.shape)}")
                self.buf = zeros((self.size,), like=loss)
        self.buf[i] = loss

    def read(self, stop: int) -> np.ndarray:
        """Losses of steps ``start..stop-1`` as float64 on the host (one transfer)."""
        return to_numpy(self.buf[self.start:stop], dtype=np.float64)


def _softmax_ce_sum(xp, scores, y):
    """Sum over rows of the softmax cross-entropy of ``scores`` (N, C) for labels ``y`` (N,)."""
    z = scores - xp.max(scores, axis=1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(z), axis=1))
    zy = xp.take_along_axis(z, xp.reshape(y, (-1, 1)), axis=1)
    return xp.sum(lse - xp.reshape(zy, (-1,)))


def _check_labels(y: np.ndarray, num_classes: int) -> None:
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels y must be integers, got dtype {y.dtype}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] for scores with "
                         f"{num_classes} classes; got labels in [{lo}, {hi}]")

