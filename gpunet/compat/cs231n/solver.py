"""CS231n's ``cs231n/solver.py``: gpunet's Solver, which takes CS231n's keywords and update
rule names and keeps ``loss_history``, ``train_acc_history``, ``val_acc_history``,
``best_val_acc`` and ``best_params`` (see ``help(Solver)`` for what it adds)."""

from ...solver import Solver

__all__ = ["Solver"]
