"""I2DL's network base class."""

from __future__ import annotations


class Network:
    """A network with ``forward(X)`` and ``backward(dout)``; calling it runs ``forward``.
    ``train()`` / ``eval()`` set ``return_grad``."""

    def __init__(self, model_name: str = "model_name"):
        self.model_name = model_name
        self.return_grad = True
        self.cache = None

    def forward(self, X):
        raise NotImplementedError(f"{type(self).__name__} must define forward(X)")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} must define backward(dout)")

    def __call__(self, X):
        return self.forward(X)

    def train(self) -> None:
        self.return_grad = True

    def eval(self) -> None:
        self.return_grad = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name!r})"
