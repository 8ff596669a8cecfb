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
        self._blocks: list = []  # the forward pass's fused blocks, for the backward pass

    def children(self):
        return self.layers

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        """Apply the layers in order; Conv2d -> ReLU [-> MaxPool2d] and Linear -> ReLU run as
        one fused primitive of ``gpunet.layers`` (same results; see :func:`fused_blocks`)."""
        self._blocks = fused_blocks(self.layers)
        for block in self._blocks:
            x = block.forward(x)
        return x

    def backward(self, dout, compute_dx: bool = True):
        """Backpropagate through all layers; ``compute_dx=False`` spares the first layer's dx."""
        blocks = self._blocks or [_Single(layer) for layer in self.layers]
        for i in range(len(blocks) - 1, -1, -1):
            dout = blocks[i].backward(dout, compute_dx=compute_dx or i > 0)
        self.grads = {}
        for i, layer in enumerate(self.layers):
            for name, g in layer.grads.items():
                self.grads[f"{i}.{name}"] = g
        return dout

    def extra_repr(self):
        return "\n  " + ",\n  ".join(map(repr, self.layers)) + "\n" if self.layers else ""


# --- fusion: runs of layers that one primitive of gpunet.layers computes at once -------------
class _Single:
    """One layer on its own."""

    def __init__(self, layer: Module):
        self.layer = layer

    def forward(self, x):
        return self.layer.forward(x)

    def backward(self, dout, compute_dx: bool = True):
        return self.layer.backward(dout, compute_dx=compute_dx)


class _Fused:
    """``first`` (a Linear or Conv2d) followed by a ReLU (and, for ``kind`` "conv_relu_pool",
    a MaxPool2d) through the sandwich layer of ``kind``; the gradients go to ``first.grads``
    as its own backward would put them. A layer without a bias gets a zero bias whose
    gradient is dropped."""

    def __init__(self, kind: str, first: Module, pool: Module | None = None):
        self.kind, self.first, self.pool = kind, first, pool
        self.cache = None

    def forward(self, x):
        from .. import layers as F

        first = self.first
        b = getattr(first, "b", None)
        if b is None:
            b = _zero_bias(first.W)
        if self.kind == "linear_relu":
            out, self.cache = F.affine_relu_forward(x, first.W, b)
        elif self.kind == "conv_relu":
            out, self.cache = F.conv_relu_forward(x, first.W, b, first.conv_param)
        else:
            out, self.cache = F.conv_relu_pool_forward(x, first.W, b, first.conv_param, self.pool.pool_param)
        return out

    def backward(self, dout, compute_dx: bool = True):
        from .. import layers as F

        if self.cache is None:
            raise RuntimeError(f"{type(self.first).__name__}.backward called before forward")
        cache, self.cache = self.cache, None
        backward = {"linear_relu": F.affine_relu_backward, "conv_relu": F.conv_relu_backward,
                    "conv_relu_pool": F.conv_relu_pool_backward}[self.kind]
        dx, dw, db = backward(dout, cache, compute_dx)
        self.first.grads["W"] = dw
        if getattr(self.first, "b", None) is not None:
            self.first.grads["b"] = db
        return dx


def _zero_bias(w):
    from ..backend.namespace import zeros

    return zeros((w.shape[0] if w.ndim == 4 else w.shape[1],), like=w)


def _layer_class(layer: Module) -> str | None:
    """The name of a layer's class if it is one of gpunet.nn.layers' own (named, not
    imported: that module imports this one)."""
    cls = type(layer)
    return cls.__name__ if cls.__module__ == _LAYERS_MODULE else None


_LAYERS_MODULE = __name__.rsplit(".", 1)[0] + ".layers"


def fused_blocks(layers: list[Module]) -> list:
    """The layers grouped for :class:`Sequential`: Conv2d -> ReLU -> MaxPool2d, Conv2d -> ReLU
    and Linear -> ReLU (exactly these classes, not subclasses, which may change what a layer
    does) each become one fused block, every other layer a block of its own."""
    blocks: list = []
    i = 0
    while i < len(layers):
        kinds = [_layer_class(layer) for layer in layers[i : i + 3]]
        if kinds == ["Conv2d", "ReLU", "MaxPool2d"]:
            blocks.append(_Fused("conv_relu_pool", layers[i], layers[i + 2]))
            i += 3
        elif kinds[:2] in (["Conv2d", "ReLU"], ["Linear", "ReLU"]):
            blocks.append(_Fused("conv_relu" if kinds[0] == "Conv2d" else "linear_relu", layers[i]))
            i += 2
        else:
            blocks.append(_Single(layers[i]))
            i += 1
    return blocks
