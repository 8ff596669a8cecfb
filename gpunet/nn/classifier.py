"""Turn a network of layer objects plus a loss into a model with the CS231n contract."""

from __future__ import annotations

from .. import _validate, losses
from ..models.base import Model
from .layers import Conv2d, Dropout, Linear
from .module import Module

LOSSES = {"softmax": losses.softmax_loss, "svm": losses.svm_loss}


def _is_weight(owner: Module, attr: str) -> bool:
    """Whether ``owner.attr`` is a weight that gets L2 regularisation (not a bias or a norm's scale)."""
    return attr == "W" and isinstance(owner, (Linear, Conv2d))


class Classifier(Model):
    """``Classifier(net, loss="softmax", reg=0.0, seed=None)``: ``params`` are the net's
    (assigning an entry writes through to the layer); ``loss(X)`` gives scores in eval
    mode, ``loss(X, y)`` trains: forward, loss, backward (no dx for the input) and L2
    regularisation of the Linear/Conv2d weights. All Dropout layers draw from ``rng``.
    """

    def __init__(self, net: Module, loss: str = "softmax", reg: float = 0.0, seed=None):
        if not isinstance(net, Module):
            raise TypeError(f"Classifier needs a gpunet.nn.Module, got {type(net).__name__}")
        _validate.choice("loss", loss, sorted(LOSSES), fn="Classifier")
        reg = _validate.real("reg", reg, low=0.0, fn="Classifier")
        params = net.params
        dtype = next(iter(params.values())).dtype if len(params) else "float32"
        super().__init__(reg, str(dtype).rsplit(".", 1)[-1], seed)
        self.net, self.loss_name, self.params = net, loss, params
        self.reg_names = tuple(n for n in params if _is_weight(*params.owner(n)))
        for m in net.modules():
            if isinstance(m, Dropout):
                m.rng = self.rng

    def loss(self, X, y=None):
        """Scores (N, C) when y is None (eval mode), else (loss, grads) (training mode)."""
        X = self._input(X)
        if y is None:
            was_training = self.net.training
            self.net.eval()
            try:
                return self.net.forward(X)
            finally:
                self.net.train(was_training)
        self.net.train()
        scores = self.net.forward(X)
        loss, dscores = LOSSES[self.loss_name](scores, y)
        self.net.backward(dscores, compute_dx=False)
        return self._regularize(loss, dict(self.net.grads))

    def get_buffers(self) -> dict:
        return dict(self.net.buffers)

    def set_buffers(self, buffers: dict) -> None:
        super().set_buffers(buffers)
        table = self.net.buffers
        for name, value in buffers.items():
            table[name] = value

    def __repr__(self):
        return f"Classifier({self.net!r}, loss={self.loss_name!r}, reg={self.reg})"
