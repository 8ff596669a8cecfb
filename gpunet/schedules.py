"""Learning-rate schedules: the learning rate as a pure function of training progress.

A schedule gives a *factor* of the base learning rate for ``epoch`` (completed epochs,
0-based index of the current epoch) and ``iteration`` (global 0-based index of the step
about to be made). Being pure functions of the counters, they resume exactly from a
checkpoint. The :class:`~gpunet.solver.Solver` sets
``config["learning_rate"] = base_lr * schedule.factor(epoch, iteration)`` at the start
of every epoch, and before every step when ``schedule.per_iteration`` (warm-up).

- :class:`StepDecay` -- CS231n's ``lr_decay``: ``decay ** (epoch // step_size)``.
- :class:`Cosine` -- cosine annealing over epochs from 1 to ``min_factor``.
- :class:`Warmup` -- linear warm-up over the first iterations, then another schedule.
"""

from __future__ import annotations

import math

from . import _validate

__all__ = [
    "Constant",
    "Cosine",
    "FromCallable",
    "Schedule",
    "StepDecay",
    "Warmup",
    "cosine",
    "linear_warmup",
    "make_schedule",
    "step_decay",
]


# --- plain functions ------------------------------------------------------------------


def step_decay(lr: float, epoch: int, decay: float, step_size: int = 1) -> float:
    """``lr * decay ** (epoch // step_size)``: CS231n's per-epoch ``lr_decay``."""
    return lr * decay ** (epoch // step_size)


def cosine(lr: float, epoch: int, num_epochs: int, min_lr: float = 0.0) -> float:
    """Cosine annealing: ``min_lr + (lr - min_lr) * (1 + cos(pi * e / num_epochs)) / 2``,
    with ``e = min(epoch, num_epochs)``; ``lr`` at epoch 0, ``min_lr`` from ``num_epochs`` on."""
    e = min(epoch, num_epochs)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * e / num_epochs))


def linear_warmup(lr: float, iteration: int, warmup_iters: int) -> float:
    """``lr * min(1, (iteration + 1) / warmup_iters)``: ramps from ``lr/warmup_iters`` to ``lr``."""
    if warmup_iters <= 0:
        return lr
    return lr * min(1.0, (iteration + 1) / warmup_iters)


# --- schedule objects for the Solver ---------------------------------------------------


class Schedule:
    """Factor of the base learning rate; subclasses implement :meth:`factor`."""

    #: True if the factor changes within an epoch (the Solver then updates it every step).
    per_iteration = False

    def factor(self, epoch: int, iteration: int) -> float:
        raise NotImplementedError

    def to_config(self) -> dict | None:
        """JSON description stored in checkpoints (``None``: not comparable on resume)."""
        return None

    def __repr__(self) -> str:
        cfg = self.to_config() or {}
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "type")
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """Factor 1 throughout."""

    def factor(self, epoch, iteration):
        return 1.0

    def to_config(self):
        return {"type": "Constant"}


class StepDecay(Schedule):
    """``decay ** (epoch // step_size)``; ``StepDecay(lr_decay)`` is CS231n's ``lr_decay``."""

    def __init__(self, decay: float, step_size: int = 1):
        self.decay = _validate.real("decay (lr_decay)", decay, low=0.0)
        self.step_size = _validate.integer("step_size", step_size, low=1)

    def factor(self, epoch, iteration):
        return step_decay(1.0, epoch, self.decay, self.step_size)

    def to_config(self):
        return {"type": "StepDecay", "decay": self.decay, "step_size": self.step_size}


class Cosine(Schedule):
    """Cosine annealing per epoch from 1 (epoch 0) towards ``min_factor`` (at ``num_epochs``)."""

    def __init__(self, num_epochs: int, min_factor: float = 0.0):
        self.num_epochs = _validate.integer("num_epochs", num_epochs, low=1)
        self.min_factor = _validate.real("min_factor", min_factor, low=0.0, high=1.0)

    def factor(self, epoch, iteration):
        return cosine(1.0, epoch, self.num_epochs, self.min_factor)

    def to_config(self):
        return {"type": "Cosine", "num_epochs": self.num_epochs, "min_factor": self.min_factor}


class Warmup(Schedule):
    """Linear warm-up over the first ``warmup_iters`` iterations, times ``after``'s factor."""

    per_iteration = True

    def __init__(self, warmup_iters: int, after: Schedule | None = None):
        self.warmup_iters = _validate.integer("warmup_iters", warmup_iters, low=1)
        self.after = after if after is not None else Constant()
        if not isinstance(self.after, Schedule):
            raise TypeError(f"after must be a Schedule, got {type(after).__name__}")

    def factor(self, epoch, iteration):
        return linear_warmup(1.0, iteration, self.warmup_iters) * self.after.factor(epoch, iteration)

    def to_config(self):
        inner = self.after.to_config()
        if inner is None:
            return None
        return {"type": "Warmup", "warmup_iters": self.warmup_iters, "after": inner}


class FromCallable(Schedule):
    """Wraps ``fn(epoch) -> factor`` (a user's per-epoch schedule)."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"expected a callable fn(epoch) -> factor, got {type(fn).__name__}")
        self.fn = fn

    def factor(self, epoch, iteration):
        return _validate.real(f"lr_schedule({epoch})", self.fn(epoch), low=0.0)

    def __repr__(self):
        return f"FromCallable({self.fn!r})"


def make_schedule(lr_schedule=None, *, lr_decay: float = 1.0, num_epochs: int = 1,
                  warmup_iters: int = 0) -> Schedule:
    """The Solver's schedule from its keywords.

    ``lr_schedule``: ``None`` or ``"step"`` (CS231n ``lr_decay`` per epoch), ``"cosine"``
    (over ``num_epochs``), ``"constant"``, a :class:`Schedule`, or ``fn(epoch) -> factor``.
    ``warmup_iters > 0`` wraps it in :class:`Warmup`.
    """
    lr_decay = _validate.real("lr_decay", lr_decay, low=0.0)
    if lr_decay != 1.0 and lr_schedule not in (None, "step"):
        raise ValueError(
            f"lr_decay={lr_decay} only applies to the step schedule, but lr_schedule="
            f"{lr_schedule!r} was given; pass one of them"
        )
    sched: Schedule
    if lr_schedule is None or lr_schedule == "step":
        sched = StepDecay(lr_decay)
    elif lr_schedule == "cosine":
        sched = Cosine(num_epochs)
    elif lr_schedule == "constant":
        sched = Constant()
    elif isinstance(lr_schedule, Schedule):
        sched = lr_schedule
    elif callable(lr_schedule):
        sched = FromCallable(lr_schedule)
    else:
        raise ValueError(
            f"invalid lr_schedule {lr_schedule!r}; expected None, 'step', 'cosine', "
            "'constant', a gpunet.schedules.Schedule or a callable fn(epoch) -> factor"
        )
    warmup_iters = _validate.integer("warmup_iters", warmup_iters, low=0)
    if warmup_iters:
        sched = Warmup(warmup_iters, after=sched)
    return sched
