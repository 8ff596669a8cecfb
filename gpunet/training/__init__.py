"""Training: the :class:`Solver` and the parts it is built from.

``solver`` (the Solver: keywords, public API), ``options`` (checks of its arguments),
``loop`` (epochs and steps), ``state`` (everything a checkpoint holds, and its schema),
``resume`` (what a resumed run takes from a checkpoint, and its report), ``evaluate``
(accuracy and validation loss in batches), ``callbacks`` (schedule, NaN guard, early
stopping, checkpoints), ``progress`` (the output), ``plot`` (the training curves),
``parallel`` (the only part that knows about processes), ``device`` (copies on the device
and the read-backs).
"""

from .callbacks import NonFiniteLossError, TrainingInterrupted
from .solver import Resumed, Solver
from .state import TrainingState

__all__ = ["NonFiniteLossError", "Resumed", "Solver", "TrainingInterrupted", "TrainingState"]
