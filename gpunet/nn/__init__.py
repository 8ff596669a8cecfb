"""Layer objects that compose into models: ``Sequential(Linear(...), ReLU(), ...)``,
and :class:`Classifier` to give a network the CS231n model contract."""

from .classifier import Classifier
from .layers import *  # noqa: F403  (its __all__: every layer object)
from .layers import __all__ as _layers
from .module import Module, ParamDict, Sequential

__all__ = ["Classifier", "Module", "ParamDict", "Sequential", *_layers]
