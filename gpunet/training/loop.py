"""The training loop: epochs of steps, with the Solver's callbacks called at named points.

A step places its rows on the model's device (:func:`gpunet.data.batches.rows`), runs
forward and backward (``model.loss(X, y)``), averages gradients and loss over processes
(``solver.parallel``) and updates every parameter. No host sync per step: each step's loss
stays where it was computed (:class:`~gpunet.training.device.LossWindow`) and is read back
(one transfer) every ``solver.read_every`` iterations and at the end of each epoch, which
is also where non-finite losses are detected (so detection may lag by up to that many
iterations; the error still names the first bad iteration).

An epoch's batches are consecutive slices of a permutation; the last one is short, or
dropped with ``drop_last``, and a last batch of a single example is merged into the batch
before it (BatchNorm cannot normalise one example). Ctrl-C (SIGINT) sets a flag that is
checked after each step (under MPI at the read-back points, agreed by all processes), so
training stops between steps with a consistent state.
"""

from __future__ import annotations

import signal
import threading
import warnings

from ..backend.host_memory import keep_freed_memory
from ..data.batches import rows
from .callbacks import TrainingInterrupted
from .device import LossWindow, count_nonfinite
from .evaluate import check_class_labels, evaluate, num_classes
from .state import first_param


def train(solver) -> None:
    """Check the labels and inputs once, then run epochs until ``solver.num_epochs`` (or
    early stopping); then, with ``restore_best``, put the best epoch's parameters (and
    buffers) into the model. The process keeps freed host memory for reuse from then on
    (:func:`gpunet.backend.host_memory.keep_freed_memory`)."""
    keep_freed_memory()
    classes = num_classes(solver.model, solver.X_val, "data['X_val']")
    check_class_labels(solver.y_train, classes, "data['y_train']")
    check_class_labels(solver.y_val, classes, "data['y_val']")
    for name in ("X_train", "X_val"):
        bad = count_nonfinite(getattr(solver, name))
        if bad:
            raise ValueError(f"data[{name!r}] holds {bad} NaN or infinite value(s); training "
                             "on them gives NaN losses: remove or replace those rows first")
    solver.output.train_start(solver)
    state = solver.state
    if 0 < solver.num_epochs <= state.epoch and not state.stopped_early:
        warnings.warn(f"nothing to train: {state.epoch} epochs are done and num_epochs="
                      f"{solver.num_epochs} counts all epochs; set num_epochs to "
                      f"{state.epoch} + the number of epochs to add", stacklevel=3)
    with _StopOnInterrupt() as stop:
        while state.epoch < solver.num_epochs and not state.stopped_early:
            train_epoch(solver, stop)
    if solver.restore_best:
        state.restore_best(solver.model)


def train_epoch(solver, stop=None) -> None:
    """One epoch: a fresh permutation of the training rows in steps of ``batch_size``, the
    loss read back at report points, then the evaluation and the epoch-end callbacks.
    ``stop``: the Ctrl-C flag (:class:`_StopOnInterrupt`), checked between steps."""
    state, parallel = solver.state, solver.parallel
    bs, steps, drop_last = solver.batch_size, solver.iterations_per_epoch, solver.drop_last
    perm = parallel.shard(state.rng.permutation(solver.X_train.shape[0]))
    window = LossWindow(steps)
    _call(solver, "epoch_start", parallel.samples(steps * bs if drop_last else len(perm)))
    error = None
    try:
        for i in range(steps):
            last = i == steps - 1
            idx = perm[i * bs:None if last and not drop_last else (i + 1) * bs]
            _call(solver, "step_start")
            window.put(i, step(solver, idx))
            state.iteration += 1
            _call(solver, "step_end", parallel.samples(len(idx)))
            report = (state.iteration - 1) % solver.read_every == 0
            if report or last:  # the only read-backs of the loss
                losses = window.read(i + 1)
                _call(solver, "read_back", losses, report)
                state.history["loss"].extend(losses.tolist())
            if stop is not None and stop.requested(parallel, report or last) and not last:
                raise _interrupted(solver)
        state.epoch += 1
        _call(solver, "epoch_end", end_of_epoch(solver))
        if stop is not None and stop.requested(parallel, True) and \
                state.epoch < solver.num_epochs:
            raise _interrupted(solver)
    except BaseException as exc:
        error = exc
        raise
    finally:
        _call(solver, "epoch_close", error)


def step(solver, idx):
    """Forward/backward on the training rows ``idx`` (host int array) and one update of
    every parameter. Returns the loss as the model gave it (device 0-d array or float)."""
    model = solver.model
    like = first_param(model)
    try:
        out = model.loss(rows(solver.X_train, idx, like), rows(solver.y_train, idx, like))
    except ValueError as exc:
        if len(idx) != 1:
            raise
        raise ValueError(f"{exc} (the training batch has 1 example: use batch_size >= 2; "
                         "the Solver merges a last batch of one into the batch before it, "
                         "and drop_last=True drops an incomplete last batch)") from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("model.loss(X, y) must return (loss, grads) when y is given; got "
                        f"{type(out).__name__}")
    loss, grads = out
    missing = [p for p in model.params if p not in grads]
    if missing:
        raise KeyError(f"model.loss returned no gradient for parameter(s) {missing}; "
                       "grads must have the same keys as model.params")
    grads, loss = solver.parallel.reduce(list(model.params), grads, loss)
    configs = solver.state.optim_configs
    for p, w in model.params.items():
        next_w, configs[p] = solver.update_rule(w, grads[p], configs[p])
        if next_w is not w:
            model.params[p] = next_w
    return loss


def end_of_epoch(solver) -> tuple[float, float, float]:
    """Record the rate, average buffers over processes, evaluate; ``(train_acc, val_acc,
    val_loss)`` (also appended to the history)."""
    state, model, parallel = solver.state, solver.model, solver.parallel
    state.history["lr"].append(state.learning_rate())
    parallel.average_buffers(model)
    kw = dict(batch_size=solver.eval_batch_size, parallel=parallel, rng=state.eval_rng,
              check=False)
    train_acc, _ = evaluate(model, solver.X_train, solver.y_train,
                            num_samples=solver.num_train_samples, **kw)
    val_acc, val_loss = evaluate(model, solver.X_val, solver.y_val,
                                 num_samples=solver.num_val_samples, with_loss=True, **kw)
    for key, value in (("train_acc", train_acc), ("val_acc", val_acc), ("val_loss", val_loss)):
        state.history[key].append(value)
    parallel.reseed(model)
    return train_acc, val_acc, val_loss


def _interrupted(solver) -> TrainingInterrupted:
    state = solver.state
    finished, where = state.epoch, solver.last_checkpoint
    msg = f"training interrupted in epoch {finished + 1} at iteration {state.iteration}; "
    if finished == 0:
        msg += "no epoch had finished"
    elif where is not None:
        msg += f"the last finished epoch ({finished}) is in {where}"
    else:
        msg += (f"the last finished epoch is {finished} (no checkpoint file: "
                "checkpoint_name=None)")
    return TrainingInterrupted(msg, epoch=finished + 1, finished=finished,
                               checkpoint=where if finished else None)


class _StopOnInterrupt:
    """While active (main thread only), the first SIGINT only sets a flag; a second one
    raises ``KeyboardInterrupt`` at once. Elsewhere, or if SIGINT has a handler of the
    user's, nothing changes."""

    def __init__(self):
        self.flag = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame):
        self.flag = True
        signal.signal(signal.SIGINT, self.previous)  # a second Ctrl-C interrupts at once

    def requested(self, parallel, at_read_back: bool) -> bool:
        """Whether to stop now: this process's flag, or with several processes, any
        process's flag, agreed at read-back points only (the same steps on every process)."""
        return parallel.any_flag(self.flag, at_read_back)


def _call(solver, point: str, *args) -> None:
    """Call ``point`` of every callback, in the Solver's order."""
    for callback in solver.callbacks:
        getattr(callback, point)(solver, *args)
