"""The training output: one line per epoch (redrawn in place on a terminal), the
``print_every`` loss lines, and what a resume took over. Shown only where ``show`` is
set (on the root process of a data-parallel run).
"""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np

from .callbacks import Callback


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
