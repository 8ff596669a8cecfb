"""Layer objects: a :class:`Module` wraps one functional layer of ``gpunet.layers``,
keeps its cache between ``forward`` and ``backward``, and exposes its arrays by name."""

from __future__ import annotations

from collections.abc import MutableMapping

from .. import _validate
from ..backend.namespace import to_backend
from ..serialize import Rebuildable


class Module(Rebuildable):
    """Base layer object.

    ``forward(x)`` returns the output and keeps what ``backward`` needs;
    ``backward(dout, compute_dx=True)`` returns dx and fills ``self.grads`` (keyed like
    ``param_names``). ``param_names`` / ``buffer_names`` list the attributes holding
    trainable arrays / non-trainable state (e.g. running statistics).
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()

    def __init__(self):
        self.training = True
        self.grads: dict = {}
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    def backward(self, dout, compute_dx: bool = True):  # pragma: no cover
        raise NotImplementedError

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        cache, self._cache = self._cache, None
        return cache

    def children(self) -> list[Module]:
        return []

    def modules(self):
        """This module and every module inside it, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def train(self, mode: bool = True):
        """Set training mode (dropout active, batchnorm batch statistics) here and below."""
        mode = _validate.boolean("mode", mode, fn=f"{type(self).__name__}.train")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def _slots(self, names_attr: str, prefix: str = "") -> dict:
        slots = {f"{prefix}{n}": (self, n) for n in getattr(self, names_attr)}
        for i, child in enumerate(self.children()):
            slots.update(child._slots(names_attr, f"{prefix}{i}."))
        return slots

    @property
    def params(self) -> ParamDict:
        """Trainable arrays by name (``"0.W"``); assigning an entry replaces the array."""
        return ParamDict(self._slots("param_names"))

    @property
    def buffers(self) -> ParamDict:
        """Non-trainable state arrays by name (``"1.running_mean"``)."""
        return ParamDict(self._slots("buffer_names"))

    def to(self, backend: str):
        """Move parameters and buffers to ``backend`` ("numpy", "cupy", ...) in place."""
        for table in (self.params, self.buffers):
            table.update(to_backend(table, backend))
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""


class ParamDict(MutableMapping):
    """A name -> array view whose entries live as attributes of modules. Assigning an entry
    replaces the module's array by one of the same shape and dtype (any backend)."""

    def __init__(self, slots: dict):
        self._slots = slots

    def __getitem__(self, name):
        owner, attr = self._slots[name]
        return getattr(owner, attr)

    def owner(self, name: str) -> tuple[Module, str]:
        """The module holding entry ``name`` and the attribute it is stored in, e.g. ``(linear, "W")``."""
        if name not in self._slots:
            raise KeyError(f"no parameter named {name!r}; known: {sorted(self._slots)}")
        return self._slots[name]

    def __setitem__(self, name, value):
        owner, attr = self.owner(name)
        old = getattr(owner, attr)
        _validate.float_inputs("params", **{name: value})
        _validate.shape("params", name, value, old.shape, "the shape of the array it replaces")
        _validate.dtype("params", name, value, old.dtype, "the dtype of the array it replaces")
        setattr(owner, attr, value)

    def __delitem__(self, name):
        raise TypeError("parameters cannot be removed from a model")

    def __iter__(self):
        return iter(self._slots)

    def __len__(self):
        return len(self._slots)

    def __repr__(self):
        return "ParamDict(" + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items()) + ")"


class Sequential(Module):
    """Modules applied in order; parameters named ``"{index}.{name}"``."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a gpunet.nn.Module")
        self.layers = list(layers)

    def children(self):
        return self.layers

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, compute_dx: bool = True):
        """Backpropagate through all layers; ``compute_dx=False`` spares the first layer's dx."""
        for i in range(len(self.layers) - 1, -1, -1):
            dout = self.layers[i].backward(dout, compute_dx=compute_dx or i > 0)
        self.grads = {}
        for i, layer in enumerate(self.layers):
            for name, g in layer.grads.items():
                self.grads[f"{i}.{name}"] = g
        return dout

    def extra_repr(self):
        return "\n  " + ",\n  ".join(map(repr, self.layers)) + "\n" if self.layers else ""

