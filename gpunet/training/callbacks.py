"""The parts the training loop calls at named points: learning-rate schedule, NaN guard,
early stopping (and the best epoch), checkpoints; the progress output is in :mod:`.progress`.

Each part is a :class:`Callback` with some of these methods, called in the Solver's fixed
list order (see :func:`gpunet.training.loop.train_epoch`):

- ``epoch_start(solver, samples)``: an epoch of ``samples`` examples (whole job) begins;
- ``step_start(solver)`` / ``step_end(solver, samples)``: around each step;
- ``read_back(solver, losses, report)``: the steps' losses since the last read-back, on the
  host (``report``: a ``print_every`` point);
- ``epoch_end(solver, metrics)``: after the evaluation, with ``(train_acc, val_acc, val_loss)``;
- ``epoch_close(solver, error)``: always last, after ``epoch_end`` or with the exception
  that ended the epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .progress import Progress


class NonFiniteLossError(FloatingPointError):
    """The training or validation loss became NaN or inf; says at which iteration and where
    the best checkpoint is kept (``iteration`` is 1-based, ``epoch`` 1-based,
    ``best_checkpoint`` a path or ``None``)."""

    def __init__(self, message, *, iteration, epoch, value, best_checkpoint):
        super().__init__(message)
        self.iteration = iteration
        self.epoch = epoch
        self.value = value
        self.best_checkpoint = best_checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training at the end of a step. ``epoch``: the epoch that was running
    (1-based); ``finished``: the last finished epoch (0: none); ``checkpoint``: the file
    holding it (``{prefix}_last.npz``) or ``None``."""

    def __init__(self, message, *, epoch, finished, checkpoint):
        super().__init__(message)
        self.epoch, self.finished, self.checkpoint = epoch, finished, checkpoint


class Callback:
    """A part of the training loop; every point does nothing unless overridden."""

    def epoch_start(self, solver, samples: int) -> None: ...

    def step_start(self, solver) -> None: ...

    def step_end(self, solver, samples: int) -> None: ...

    def read_back(self, solver, losses: np.ndarray, report: bool) -> None: ...

    def epoch_end(self, solver, metrics: tuple) -> None: ...

    def epoch_close(self, solver, error: BaseException | None) -> None: ...


class LearningRate(Callback):
    """Sets every parameter's rate to its base rate times ``solver.schedule.factor(epoch,
    iteration)``: at each epoch start, and before each step for a per-iteration schedule."""

    def epoch_start(self, solver, samples):
        self._set(solver)

    def step_start(self, solver):
        if solver.schedule.per_iteration:
            self._set(solver)

    def _set(self, solver) -> None:
        state = solver.state
        factor = solver.schedule.factor(state.epoch, state.iteration)
        for p, cfg in state.optim_configs.items():
            base = state.base_lr.get(p)
            if base is not None:
                cfg["learning_rate"] = base * factor


class NonFiniteGuard(Callback):
    """Stops training at the first NaN/inf training loss read back, or a non-finite
    validation loss at an epoch end (before that epoch can count as a best): records the
    finite losses before it, restores the best parameters (with ``restore_best``) and resets
    the optimizer state that went with the bad ones, then raises :class:`NonFiniteLossError`.
    """

    def read_back(self, solver, losses, report):
        bad = np.flatnonzero(~np.isfinite(losses))
        if not len(bad):
            return
        state = solver.state
        state.history["loss"].extend(losses[:bad[0]].tolist())
        iteration = state.iteration - len(losses) + int(bad[0]) + 1
        value = float(losses[bad[0]])
        total = solver.num_epochs * solver.iterations_per_epoch
        self._stop(solver, value, iteration, (
            f"loss is {value} at iteration {iteration} of {total} (epoch {state.epoch + 1} of "
            f"{solver.num_epochs}); training stopped at iteration {state.iteration} (losses "
            f"are read back every {solver.read_every} iterations (print_every) and at each "
            "epoch end). "))

    def epoch_end(self, solver, metrics):
        val_loss = metrics[2]
        if math.isfinite(val_loss):
            return
        state = solver.state
        self._stop(solver, val_loss, state.iteration, (
            f"validation loss is {val_loss} after epoch {state.epoch} of {solver.num_epochs} "
            f"(iteration {state.iteration}) although the training losses were finite: the "
            "updates made the weights blow up. "))

    def _stop(self, solver, value, iteration, msg):
        state = solver.state
        restored = bool(state.best_params) and solver.restore_best
        if restored:
            state.restore_best(solver.model)
            state.reset_optimizer()
        if solver.best_checkpoint is not None:
            msg += (f"The best checkpoint is kept at {str(solver.best_checkpoint)!r} (epoch "
                    f"{state.best_epoch}). ")
        elif state.best_epoch is not None:
            msg += (f"No checkpoint file was written (checkpoint_name=None); the best epoch "
                    f"({state.best_epoch}) is kept in solver.best_params. ")
        else:
            msg += "No epoch had finished, so there is no best checkpoint yet. "
        if restored:
            msg += ("The model's parameters were restored to the best epoch's and the "
                    "optimizer state was reset. ")
        msg += "Try a lower learning rate and check the inputs for NaN/inf."
        raise NonFiniteLossError(msg, iteration=iteration, epoch=state.epoch + 1, value=value,
                                 best_checkpoint=solver.best_checkpoint)


class EarlyStopping(Callback):
    """Keeps the best epoch by ``solver.monitor`` ("val_acc" or "val_loss"; the first epoch
    is always a best); with ``solver.patience``, stops after that many epochs without
    improvement."""

    def epoch_end(self, solver, metrics):
        state = solver.state
        _, val_acc, val_loss = metrics
        if solver.monitor == "val_acc":
            improved = state.best_epoch is None or val_acc > state.best_val_acc
        else:
            improved = state.best_epoch is None or val_loss < state.best_val_loss
        if improved:
            state.best_epoch = state.epoch
            state.best_val_acc, state.best_val_loss = val_acc, val_loss
            state.keep_best(solver.model)
            state.epochs_since_best = 0
        else:
            state.epochs_since_best += 1
        if solver.patience is not None and state.epochs_since_best >= solver.patience:
            state.stopped_early = True


class Checkpoint(Callback):
    """After every epoch writes ``{prefix}_last.npz``, ``{prefix}_best.npz`` when the epoch
    is a new best, and ``{prefix}_epoch_{k}.npz`` when ``solver.keep_every`` divides ``k`` (one
    process writes); sets ``solver.last_checkpoint`` and ``solver.best_checkpoint``."""

    def __init__(self, prefix, progress: Progress):
        self.prefix, self.progress = prefix, progress
        self.announced = False

    def path(self, kind) -> Path:
        """The file of ``kind``: "last", "best" or an epoch number."""
        return Path(f"{self.prefix}_{kind}.npz" if isinstance(kind, str)
                    else f"{self.prefix}_epoch_{kind}.npz")

    def epoch_end(self, solver, metrics):
        state = solver.state
        improved = state.best_epoch == state.epoch
        keep = solver.keep_every is not None and state.epoch % solver.keep_every == 0

        def write():
            if keep:
                solver.save_checkpoint(self.path(state.epoch))
            if improved:
                solver.save_checkpoint(self.path("best"))
            solver.save_checkpoint(self.path("last"))
            if not self.announced:
                self.announced = True
                kept = (f", {self.prefix}_epoch_K.npz every {solver.keep_every} epoch(s)"
                        if solver.keep_every else "")
                self.progress.say(f"checkpoints: {self.path('last')} (every epoch), "
                                  f"{self.path('best')} (best {solver.monitor}){kept}")

        solver.parallel.on_root(write, "write the checkpoint")
        if improved:
            solver.best_checkpoint = self.path("best")
        solver.last_checkpoint = self.path("last")
