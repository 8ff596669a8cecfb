"""The parts the training loop calls at named points: learning-rate schedule, NaN guard,
early stopping (and the best epoch), progress output, checkpoints; and the plot.

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

import time
from pathlib import Path

import numpy as np


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


class Callback:
    """A part of the training loop; every point does nothing unless overridden."""

    def epoch_start(self, solver, samples: int) -> None: ...

    def step_start(self, solver) -> None: ...

    def step_end(self, solver, samples: int) -> None: ...

    def read_back(self, solver, losses: np.ndarray, report: bool) -> None: ...

    def epoch_end(self, solver, metrics: tuple) -> None: ...

    def epoch_close(self, solver, error: BaseException | None) -> None: ...


class LearningRate(Callback):
    """Sets every parameter's rate to its base rate times ``schedule.factor(epoch,
    iteration)``: at each epoch start, and before each step for a per-iteration schedule."""

    def __init__(self, schedule):
        self.schedule = schedule

    def epoch_start(self, solver, samples):
        self._set(solver.state)

    def step_start(self, solver):
        if self.schedule.per_iteration:
            self._set(solver.state)

    def _set(self, state) -> None:
        factor = self.schedule.factor(state.epoch, state.iteration)
        for p, cfg in state.optim_configs.items():
            base = state.base_lr.get(p)
            if base is not None:
                cfg["learning_rate"] = base * factor


class NonFiniteGuard(Callback):
    """Stops training at the first NaN/inf loss read back: records the finite losses
    before it, restores the best parameters (with ``restore_best``) and raises
    :class:`NonFiniteLossError`."""

    def read_back(self, solver, losses, report):
        bad = np.flatnonzero(~np.isfinite(losses))
        if not len(bad):
            return
        state = solver.state
        state.history["loss"].extend(losses[:bad[0]].tolist())
        iteration = state.iteration - len(losses) + int(bad[0]) + 1
        value = float(losses[bad[0]])
        restored = bool(state.best_params) and solver.restore_best
        if restored:
            state.restore_best(solver.model)
        total = solver.num_epochs * solver.iterations_per_epoch
        msg = (
            f"loss is {value} at iteration {iteration} of {total} (epoch {state.epoch + 1} of "
            f"{solver.num_epochs}); training stopped at iteration {state.iteration} (losses "
            f"are read back every print_every={solver.print_every} iterations and at each "
            "epoch end). "
        )
        if solver.best_checkpoint is not None:
            msg += (f"The best checkpoint is kept at {str(solver.best_checkpoint)!r} (epoch "
                    f"{state.best_epoch}). ")
        elif state.best_epoch is not None:
            msg += (f"No checkpoint file was written (checkpoint_name=None); the best epoch "
                    f"({state.best_epoch}) is kept in solver.best_params. ")
        else:
            msg += "No epoch had finished, so there is no best checkpoint yet. "
        if restored:
            msg += "The model's parameters were restored to the best epoch's. "
        msg += "Try a lower learning rate and check the inputs for NaN/inf."
        raise NonFiniteLossError(msg, iteration=iteration, epoch=state.epoch + 1, value=value,
                                 best_checkpoint=solver.best_checkpoint)


class EarlyStopping(Callback):
    """Keeps the best epoch by ``monitor`` ("val_acc" or "val_loss"; the first epoch is
    always a best); with ``patience``, stops after that many epochs without improvement."""

    def __init__(self, monitor: str, patience: int | None):
        self.monitor, self.patience = monitor, patience

    def epoch_end(self, solver, metrics):
        state = solver.state
        _, val_acc, val_loss = metrics
        if self.monitor == "val_acc":
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
        if self.patience is not None and state.epochs_since_best >= self.patience:
            state.stopped_early = True


class Progress(Callback):
    """All output (only where ``show``): a tqdm bar per epoch (``tqdm``: its class, or None
    for CS231n's plain lines), the loss at each read-back, a line per epoch, the early stop."""

    def __init__(self, show: bool, tqdm):
        self.show, self.tqdm = show, tqdm
        self.bar = None

    def say(self, line: str) -> None:
        """Print ``line`` (above the bar while there is one)."""
        if not self.show:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def epoch_start(self, solver, samples):
        if self.show and self.tqdm is not None:
            self.bar = self.tqdm(total=samples,
                                 desc=f"epoch {solver.state.epoch + 1}/{solver.num_epochs}",
                                 unit="samples", unit_scale=True, leave=True, dynamic_ncols=True)
        self._since, self._samples = time.perf_counter(), 0

    def step_end(self, solver, samples):
        self._samples += samples
        if self.bar is not None:
            self.bar.update(samples)

    def read_back(self, solver, losses, report):
        now = time.perf_counter()
        rate = self._samples / max(now - self._since, 1e-9)
        self._since, self._samples = now, 0
        if not self.show:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{float(np.mean(losses)):.4f}", refresh=False)
        elif report:
            total = solver.num_epochs * solver.iterations_per_epoch
            print(f"(Iteration {solver.state.iteration} / {total}) loss: {losses[-1]:f} "
                  f"({rate:.0f} samples/s)", flush=True)

    def epoch_end(self, solver, metrics):
        train_acc, val_acc, val_loss = metrics
        self.say(f"(Epoch {solver.state.epoch} / {solver.num_epochs}) train acc: "
                 f"{train_acc:f}; val_acc: {val_acc:f}; val_loss: {val_loss:f}; lr: "
                 f"{solver.state.learning_rate():g}")

    def epoch_close(self, solver, error):
        state = solver.state
        if error is None and state.stopped_early:
            self.say(f"Early stopping: {solver.monitor} has not improved for "
                     f"{state.epochs_since_best} epoch(s) (patience={solver.patience}); "
                     f"best epoch {state.best_epoch}")
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Checkpoint(Callback):
    """Writes ``{prefix}_epoch_{k}.npz`` after every epoch and ``{prefix}_best.npz`` when the
    epoch is a new best (one process writes); sets ``solver.best_checkpoint``."""

    def __init__(self, prefix, progress: Progress):
        self.prefix, self.progress = prefix, progress

    def epoch_end(self, solver, metrics):
        state = solver.state
        improved = state.best_epoch == state.epoch
        best = Path(f"{self.prefix}_best.npz")

        def write():
            path = solver.save_checkpoint(f"{self.prefix}_epoch_{state.epoch}.npz")
            self.progress.say(f'Saving checkpoint to "{path}"')
            if improved:
                solver.save_checkpoint(best)

        solver.parallel.on_root(write, "write the checkpoint")
        if improved:
            solver.best_checkpoint = best


def plot_history(history: dict, iterations_per_epoch: int, path=None):
    """Loss per iteration, train/val accuracy and learning rate per epoch, as a matplotlib
    Figure (saved to ``path`` if given)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("Solver.plot needs matplotlib: pip install gpunet[train]") from None
    h = history
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(np.arange(1, len(h["loss"]) + 1), h["loss"], lw=0.8, label="train loss")
    epochs = np.arange(1, len(h["val_acc"]) + 1)
    if len(h["val_loss"]):
        ax_loss.plot(epochs * iterations_per_epoch, h["val_loss"], "o-", label="val loss")
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
