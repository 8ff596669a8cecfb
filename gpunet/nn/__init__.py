"""Layer objects that compose into models: ``Sequential(Linear(...), ReLU(), ...)``,
and :class:`Classifier` to give a network the CS231n model contract."""

from .classifier import Classifier
from .layers import (
    AvgPool2d,
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from .module import Module, ParamDict, Sequential

__all__ = [
    "AvgPool2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "Classifier", "Conv2d", "Dropout", "Flatten",
    "LayerNorm", "LeakyReLU", "Linear", "MaxPool2d", "Module", "ParamDict", "ReLU", "Sequential", "Sigmoid", "Tanh",
]
