"""I2DL's ``networks/loss.py``: ``forward(y_out, y_truth, individual_losses=False)`` is the
mean loss as a float (the per-sample losses with ``individual_losses=True``), calling
the loss is ``forward``, and ``backward(y_out, y_truth)`` is the gradient of the mean with
respect to ``y_out`` (so it carries the 1/N)."""

from __future__ import annotations

from collections.abc import Callable

from .... import _validate
from .... import losses as _losses
from ..._course import host_float

__all__ = ["BCE", "L1", "MSE", "CrossEntropyFromLogits", "Loss"]


class Loss:
    """Base: subclasses name the gpunet loss ``function(y_out, y_truth, reduction) -> (loss, dx)``."""

    function: Callable[..., tuple]

    def __init__(self):
        self.grad_history = []

    def forward(self, y_out, y_truth, individual_losses=False):
        if _validate.boolean("individual_losses", individual_losses, fn=f"{type(self).__name__}.forward"):
            return self.function(y_out, y_truth, reduction="none")[0]
        return host_float(self.function(y_out, y_truth, reduction="mean")[0])

    def backward(self, y_out, y_truth):
        return self.function(y_out, y_truth, reduction="mean")[1]

    def __call__(self, y_out, y_truth, individual_losses=False):
        return self.forward(y_out, y_truth, individual_losses)


class L1(Loss):
    """|y_out - y_truth|; the gradient is 0 where they are equal."""

    function = staticmethod(_losses.l1_loss)


class MSE(Loss):
    """(y_out - y_truth)**2."""

    function = staticmethod(_losses.mse_loss)


class BCE(Loss):
    """Binary cross-entropy of probabilities y_out against targets y_truth in [0, 1]."""

    function = staticmethod(_losses.bce_loss)


class CrossEntropyFromLogits(Loss):
    """Softmax cross-entropy of logits y_out (N, C) for integer labels y_truth (N,)."""

    function = staticmethod(_losses.softmax_loss)
