"""A model's description ("spec") and model files: rebuild a trained model without pickle.

Every :class:`gpunet.models.Model` and :class:`gpunet.nn.Module` remembers the arguments
it was constructed with (their base :class:`Rebuildable`). :func:`model_spec`
turns them into JSON data, ``{"class": "gpunet.models.FullyConnectedNet", "args": {...}}``
with layers nested as specs of their own, and :func:`build_model` calls that constructor
again. Only gpunet's own models and layers are rebuilt: a class named in a file is looked
up in a public ``gpunet.*`` module and must be a gpunet model or layer; no other module
is ever imported. :func:`save_model` writes a model (spec, parameters, buffers) as a
checkpoint file; :func:`load_model` reads it, or a Solver checkpoint (which records the
spec under ``meta["model"]``), into a ready model on the current backend.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from importlib import import_module
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import choice
from .backend.namespace import from_host
from .backend.ops import host_dtype
from .checkpoint import CheckpointError, load_npz, save_npz_atomic
from .init import parameter_budget

__all__ = ["Rebuildable", "build_model", "load_model", "model_spec", "save_model"]

# Array names of the checkpoint schema (gpunet.training.state writes the Solver's).
_CURRENT = ("param/", "buffer/")
_BEST = ("best_param/", "best_buffer/")
# gpunet's names for seeds and generators: not recorded, the parameters come from the file
_RANDOM_ARGS = ("seed", "rng")
_NUMBER_TYPES = (np.generic, int, float, complex)


class Rebuildable:
    """Base of gpunet's models and layers: each instance records the arguments of the
    constructor call that created it, which :func:`model_spec` describes."""

    _constructor_call: tuple[tuple, dict]

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._constructor_call = (args, kwargs)
        return obj


def model_spec(model) -> dict | None:
    """The JSON description ``{"class": ..., "args": {...}}`` that :func:`build_model`
    rebuilds ``model`` from, or ``None`` when the model was not made by a gpunet
    constructor or an argument is not JSON data (a function, an array, ...). Seeds and
    generators (``seed``, ``rng``) are recorded as ``None``: they only draw initial values,
    and a model file brings its own."""
    if not isinstance(model, Rebuildable):
        return None
    args, kwargs = model._constructor_call
    signature = inspect.signature(type(model).__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)  # None stands for self
    except TypeError:
        return None
    bound.apply_defaults()
    encoded = {}
    for name, value in list(bound.arguments.items())[1:]:
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD and not value:
            continue  # no **kwargs given
        try:
            encoded[name] = None if name in _RANDOM_ARGS else _encode(value)
        except TypeError:
            return None
    return {"class": _public_name(type(model)), "args": encoded}


def _encode(value) -> Any:
    """``value`` as JSON data; ``TypeError`` if it has none."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, _NUMBER_TYPES)):
        return np.dtype(value).name  # np.float32 -> "float32"
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):  # e.g. **kwargs
        return {k: _encode(v) for k, v in value.items()}
    spec = model_spec(value)
    if spec is None:
        raise TypeError(f"{type(value).__name__} is not JSON data")
    return spec


def _public_name(cls: type) -> str:
    """``cls`` by its shortest public name, e.g. ``gpunet.models.FullyConnectedNet``
    rather than ``gpunet.models.fc.FullyConnectedNet``."""
    parts, name = cls.__module__.split("."), cls.__qualname__
    for i in range(2, len(parts)):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None and getattr(module, name, None) is cls:
            return f"{module.__name__}.{name}"
    return f"{cls.__module__}.{name}"


def _is_spec(value) -> bool:
    return isinstance(value, dict) and set(value) == {"class", "args"}


def build_model(spec: dict):
    """A new model (or layer) from its description :func:`model_spec` gave, with fresh
    parameters on the current backend. Only gpunet's models and layers are rebuilt."""
    if not (_is_spec(spec) and isinstance(spec["class"], str) and isinstance(spec["args"], dict)):
        raise ValueError(f"a model description is {{'class': name, 'args': {{...}}}}, got {spec!r}")
    cls = _gpunet_class(spec["class"])
    arguments = {k: _decode(v) for k, v in spec["args"].items()}
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    # parameters before a *args can only be given by position
    by_position = any(p.kind is p.VAR_POSITIONAL for p in params)
    args, kwargs = [], {}
    for p in params:
        if p.name not in arguments:
            continue
        value = arguments.pop(p.name)
        if p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        elif p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and by_position):
            args.append(value)
        else:
            kwargs[p.name] = value
    if arguments:
        raise ValueError(f"{spec['class']} takes no arguments {sorted(arguments)} (the description "
                         "was written by another version of gpunet?)")
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild {spec['class']} from its description: {exc}") from exc


def _decode(value):
    if _is_spec(value):
        return build_model(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def _gpunet_class(name: str):
    """The gpunet model or layer class ``name`` names; never imports a module outside
    gpunet's public ones."""
    module_name, _, attr = name.rpartition(".")
    parts = module_name.split(".")
    cls = None
    if parts[0] == "gpunet" and not any(p.startswith("_") for p in parts):
        try:
            cls = getattr(import_module(module_name), attr, None)
        except ImportError:
            pass
    gpunet_class = isinstance(cls, type) and issubclass(cls, Rebuildable)
    if not gpunet_class:  # a ValueError: the file is wrong, not an argument's type
        raise ValueError(
            f"the model class {name!r} is not a gpunet model or layer: gpunet rebuilds only its "
            "own classes and never imports code named in a file. Build the model as you did for "
            "training and pass it: gpunet.load_model(path, model=MyModel(...))"
        )
    return cls


# --- model files -----------------------------------------------------------------------------


def save_model(model, path: str | PathLike) -> Path:
    """Write ``model``'s description, parameters and buffers to ``path`` (an ``.npz``
    checkpoint, atomically; host copies). :func:`load_model` reads it back."""
    spec = model_spec(model)
    if spec is None:
        warnings.warn(
            f"{type(model).__name__} cannot be described for gpunet.load_model (not built by a "
            "gpunet constructor, or an argument is not JSON data); the parameters are saved: load "
            "them with gpunet.load_model(path, model=<the model built as before>)", stacklevel=3)
    arrays = {f"{_CURRENT[0]}{k}": v for k, v in model.params.items()}
    arrays.update({f"{_CURRENT[1]}{k}": v for k, v in model.get_buffers().items()})
    return save_npz_atomic(path, arrays, {"kind": "model", "model": spec})


def load_model(path: str | PathLike, which: str = "best", *, model=None):
    """The model stored in ``path``, ready to use on the current backend.

    ``path``: a Solver checkpoint (``PREFIX_best.npz``, ``PREFIX_last.npz``, per-epoch
    files) or a file written by ``model.save``. ``which``: in a Solver checkpoint,
    ``"best"`` (the best epoch so far) or ``"last"`` (the parameters when it was written);
    a model file holds one set. ``model``: fill this model instead of rebuilding one from
    the file's description (for a class gpunet does not rebuild, e.g. your own).
    """
    which = choice("which", which, ("best", "last"), fn="load_model")
    arrays, meta = load_npz(path)
    where = f"{str(path)!r}"
    kind = meta.get("kind")
    if kind not in ("solver", "model"):
        raise CheckpointError(f"{where} holds no model (kind {kind!r}); expected a Solver checkpoint "
                         "or a file written by model.save(path)")
    prefixes = _CURRENT
    if kind == "solver" and which == "best":
        if not any(k.startswith(_BEST[0]) for k in arrays):
            raise CheckpointError(f"{where} has no best parameters yet (no epoch was evaluated before "
                             "it was written); load the current ones with which='last'")
        prefixes = _BEST
    if model is None:
        spec = meta.get("model")
        if spec is None:
            raise CheckpointError(
                f"{where} does not describe its model (it was not built by a gpunet constructor, "
                "or the file predates model descriptions); build the model as for training and "
                "pass it: gpunet.load_model(path, model=MyModel(...))")
        held = sum(a.size for a in arrays.values())
        try:
            with parameter_budget(held, f"the {held} numbers the file holds"):
                model = build_model(spec)
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from exc
    _fill(model, arrays, prefixes, where)
    return model


def _fill(model, arrays: dict, prefixes: tuple[str, str], where: str) -> None:
    """Put the arrays named ``prefix + name`` into the model's parameters and buffers,
    after checking every name, shape and dtype (nothing changes unless all fit)."""
    params, buffers = model.params, model.get_buffers()
    new_params = _placed(params, arrays, prefixes[0], "parameters", model, where)
    new_buffers = _placed(buffers, arrays, prefixes[1], "buffers", model, where)
    for name, value in new_params.items():
        params[name] = value
    if new_buffers:
        model.set_buffers(new_buffers)


def _placed(table, arrays: dict, prefix: str, what: str, model, where: str) -> dict:
    saved = {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)}
    if set(saved) != set(table):
        raise CheckpointError(f"{where} holds {what} {sorted(saved)}, the {type(model).__name__} has "
                         f"{sorted(table)}; build the model with the sizes used for training")
    placed = {}
    for name, like in table.items():
        host = saved[name]
        if host.shape != tuple(like.shape) or host.dtype != host_dtype(like.dtype):
            raise CheckpointError(
                f"{where}: {what[:-1]} {name!r} has shape {host.shape} and dtype {host.dtype}, the "
                f"{type(model).__name__} has {tuple(like.shape)} and {host_dtype(like.dtype)}; build "
                "the model with the sizes and dtype used for training")
        placed[name] = from_host(host, like)
    return placed
