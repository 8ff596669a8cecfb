"""Compatibility: the Solver lives in :mod:`gpunet.training`; ``from gpunet.solver import
Solver`` (and ``NonFiniteLossError``) keeps working."""

from .training import NonFiniteLossError, Solver

__all__ = ["NonFiniteLossError", "Solver"]
