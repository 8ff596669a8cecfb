"""Models with the CS231n contract: ``params`` and ``loss(X, y=None)``."""

from .base import Model
from .cnn import ThreeLayerConvNet
from .fc import FullyConnectedNet, TwoLayerNet
from .logistic import LogisticClassifier

__all__ = ["FullyConnectedNet", "LogisticClassifier", "Model", "ThreeLayerConvNet", "TwoLayerNet"]
