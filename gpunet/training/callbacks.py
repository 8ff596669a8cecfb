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

import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .._install import pip_install


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


class Progress(Callback):
    """All output (only where ``show``): one line per epoch that ends as its summary.

    ``live`` ("auto": when stderr is a terminal; True; False): the line is redrawn in place
    on stderr (bar, samples/s, ETA, running loss) and completed with the epoch's metrics;
    otherwise the completed line alone is printed to stdout (no carriage returns), plus,
    once, how long an epoch is expected to take. With ``solver.print_every`` the loss is
    also printed every that many iterations (CS231n's lines).
    """

    MIN_REDRAW = 0.1  # seconds between two redraws of the live line

    def __init__(self, show: bool, live="auto"):
        self.show = show
        self.live = show and (live is True or (live == "auto" and _is_terminal(sys.stderr)))
        self.drawn = False  # a live line is on the screen, unfinished
        self.estimated = False
        self.reported_resume = None

    def say(self, line: str) -> None:
        """Print ``line`` on a line of its own (above the live line while there is one)."""
        if not self.show:
            return
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
        print(line, flush=True)
        if self.drawn:
            self._draw(time.perf_counter())

    def train_start(self, solver) -> None:
        """Say what a resume took over (once per resume)."""
        if solver.resumed is not None and solver.resumed is not self.reported_resume:
            self.reported_resume = solver.resumed
            self.say(solver.resumed.describe(solver.display_names))

    def epoch_start(self, solver, samples):
        self.epoch, self.epochs = solver.state.epoch + 1, solver.num_epochs
        self.total, self.seen = samples, 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.t0 = self.last_draw = time.perf_counter()
        if self.live:
            self._draw(self.t0)

    def step_end(self, solver, samples):
        self.seen += samples
        if self.live:
            now = time.perf_counter()
            if now - self.last_draw >= self.MIN_REDRAW:
                self._draw(now)

    def read_back(self, solver, losses, report):
        finite = losses[np.isfinite(losses)]
        self.loss_sum += float(np.sum(finite))
        self.loss_count += len(finite)
        if not self.show:
            return
        now = time.perf_counter()
        if report and solver.print_every is not None:
            total = solver.num_epochs * solver.iterations_per_epoch
            self.say(f"iteration {solver.state.iteration}/{total}  loss {losses[-1]:.4f}  "
                     f"{self._rate(now):,.0f} samples/s")
        if not (self.live or self.estimated) and now - self.t0 >= 3.0 and \
                self.seen >= self.total / 20:  # past the first, slower steps
            self.estimated = True
            expected = (now - self.t0) * self.total / self.seen
            self.say(f"epoch {self.epoch}/{self.epochs}: about {_duration(expected)} per "
                     f"epoch (from the first {self.seen:,} samples)")

    def epoch_end(self, solver, metrics):
        train_acc, val_acc, val_loss = metrics
        now = time.perf_counter()
        line = self._line(now, done=True)
        line += f"  train_acc {train_acc:.4f}  val_acc {val_acc:.4f}  val_loss {val_loss:.4f}"
        lr = solver.state.learning_rate()  # None: an update rule without a learning rate
        if lr is not None and solver.schedule.to_config() not in (
                {"type": "Constant"}, {"type": "StepDecay", "decay": 1.0, "step_size": 1}):
            line += f"  lr {lr:.3g}"
        if solver.state.best_epoch == solver.state.epoch and solver.state.epoch > 1:
            line += "  (best)"
        self._finish(line)

    def epoch_close(self, solver, error):
        if self.drawn:  # ended by an error: keep what was shown, start a fresh line
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
        state = solver.state
        if error is None and state.stopped_early:
            self.say(f"early stop: {solver.monitor} has not improved for "
                     f"{state.epochs_since_best} epochs (patience {solver.patience}); best "
                     f"epoch {state.best_epoch}")

    # --- drawing ------------------------------------------------------------------------------
    def _rate(self, now: float) -> float:
        return self.seen / max(now - self.t0, 1e-9)

    def _line(self, now: float, done: bool = False) -> str:
        """``epoch 3/10  [bar]  seen/total  rate  ETA or time  loss`` (the bar only live)."""
        parts = [f"epoch {self.epoch}/{self.epochs}"]
        if self.live:
            width = 20
            filled = width if done else int(width * self.seen / max(self.total, 1))
            parts.append("[" + "=" * filled + ("" if done else ">")[:width - filled]
                         + "." * max(width - filled - (0 if done else 1), 0) + "]")
            parts.append(f"{self.seen:,}/{self.total:,}")
        rate = self._rate(now)
        parts.append(f"{rate:,.0f} samples/s")
        if done:
            parts.append(_duration(now - self.t0))
        elif self.seen:
            parts.append(f"ETA {_duration((self.total - self.seen) / max(rate, 1e-9))}")
        if self.loss_count:
            parts.append(f"loss {self.loss_sum / self.loss_count:.4f}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        columns = shutil.get_terminal_size((100, 20)).columns
        sys.stderr.write("\r" + self._line(now)[:columns - 1] + "\x1b[K")
        sys.stderr.flush()
        self.drawn, self.last_draw = True, now

    def _finish(self, line: str) -> None:
        if not self.show:
            return
        if self.live:
            sys.stderr.write("\r" + line + "\x1b[K\n")
            sys.stderr.flush()
            self.drawn = False
        else:
            print(line, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


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


def plot_history(history: dict, iterations_per_epoch: int, path=None, *, best_epoch=None,
                 stopped_epoch=None):
    """The training curves as a matplotlib Figure: the loss per iteration (smoothed, raw
    faint behind) with the validation loss per epoch; train/val accuracy per epoch with the
    best (and early-stop) epoch marked; the learning rate only if it changed. Saved to
    ``path`` if given (".png" added when it has no extension)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(f"Solver.plot needs matplotlib: {pip_install('train')}") from None
    h = history
    lrs = [v for v in h["lr"] if v is not None]
    show_lr = len(set(lrs)) > 1
    fig = Figure(figsize=(12 if show_lr else 9, 3.6), layout="constrained")
    axes = fig.subplots(1, 3 if show_lr else 2)
    ax_loss, ax_acc = axes[0], axes[1]
    ipe = max(iterations_per_epoch, 1)
    loss = np.asarray(h["loss"], dtype=float)
    x = np.arange(1, len(loss) + 1) / ipe  # in epochs
    if len(loss):
        ax_loss.plot(x, loss, lw=0.5, alpha=0.25, color="C0")
        ax_loss.plot(x, smooth(loss, max(ipe // 4, 1)), lw=1.5, color="C0",
                     label="train loss (smoothed)")
    epochs = np.arange(1, len(h["val_acc"]) + 1)
    if len(h["val_loss"]):
        ax_loss.plot(epochs, h["val_loss"], "o-", color="C1", label="val loss")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, h["train_acc"], "o-", label="train")
    ax_acc.plot(epochs, h["val_acc"], "o-", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="C2", ls="--", lw=1,
                       label=f"best epoch {best_epoch}" if ax is ax_acc else None)
        if stopped_epoch is not None:
            ax.axvline(stopped_epoch, color="C3", ls=":", lw=1,
                       label=f"early stop (epoch {stopped_epoch})" if ax is ax_acc else None)
    if best_epoch is not None and best_epoch <= len(h["val_acc"]):
        ax_acc.plot([best_epoch], [h["val_acc"][best_epoch - 1]], "*", ms=14, color="C2")
    ax_loss.legend()
    ax_acc.legend()
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    if show_lr:
        ax_lr = axes[2]
        ax_lr.plot(epochs[:len(h["lr"])], h["lr"], "o-")
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
        ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        fig.savefig(png_path(path))
    return fig


def png_path(path) -> Path:
    """``path`` with ".png" added when it has no extension (what ``savefig`` would write)."""
    path = Path(path)
    return path if path.suffix else path.with_name(path.name + ".png")


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` values (fewer at the start); NaN-free input."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)
