"""The training state: everything a Solver checkpoint holds, and the one place its schema lives.

:class:`TrainingState` holds the counters, the best epoch, the history, the Solver's
generators and the per-parameter optimizer configs. :meth:`TrainingState.to_arrays` writes
it with the model's parameters, buffers and generator as ``(arrays, meta)``: host-or-device
arrays named ``param/*``, ``buffer/*``, ``best_param/*``, ``best_buffer/*``,
``optim/<param>/<key>``, and JSON metadata. :meth:`TrainingState.load` checks every key,
name, shape, dtype and generator state against the model before it changes anything: a
checkpoint that does not fit leaves the Solver and the model as they were.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import optim
from .._validate import boolean, integer, real
from ..backend.namespace import backend_of, from_host
from ..backend.ops import host_dtype
from ..serialize import model_spec
from .device import copy_array, is_array

HISTORY_KEYS = ("loss", "train_acc", "val_acc", "val_loss", "lr")
_COUNTERS = ("epoch", "iteration", "epochs_since_best")
_REQUIRED = ("update_rule", "optim_scalars", "optim_arrays", "base_lr", "schedule",
             "batch_size", "drop_last", "num_train", "param_names", "buffer_names",
             "best_buffer_names", "best_epoch", "best_val_acc", "best_val_loss",
             "stopped_early", "history", "rng", "eval_rng", "model_rng", *_COUNTERS)


def first_param(model):
    """A parameter array of ``model``: new data is placed on its backend and device."""
    return next(iter(model.params.values()))


def buffers_of(model) -> dict | None:
    """The model's buffers (``get_buffers()``, e.g. BatchNorm running statistics) or None."""
    get = getattr(model, "get_buffers", None)
    return dict(get()) if callable(get) else None


def rng_of(model) -> np.random.Generator | None:
    """``model.rng`` if it is a NumPy Generator (its state is checkpointed), else None."""
    rng = getattr(model, "rng", None)
    return rng if isinstance(rng, np.random.Generator) else None


@dataclass
class TrainingState:
    """Counters, best epoch, history, generators and optimizer configs of a Solver."""

    optim_configs: dict
    base_lr: dict
    rng: np.random.Generator  # batch permutations
    eval_rng: np.random.Generator  # accuracy subsamples
    epoch: int = 0
    iteration: int = 0
    best_epoch: int | None = None
    best_val_acc: float = 0.0
    best_val_loss: float = math.inf
    best_params: dict = field(default_factory=dict)
    best_buffers: dict = field(default_factory=dict)
    epochs_since_best: int = 0
    stopped_early: bool = False
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})

    @classmethod
    def fresh(cls, param_names, optim_config: dict, rule_name: str, rule, seed) -> TrainingState:
        """The state before training: a deep copy of ``optim_config`` per parameter (with
        the named rule's defaults), generators seeded from ``seed``."""
        configs, base_lr = {}, {}
        for p in param_names:
            cfg = copy.deepcopy(optim_config)
            if rule is optim.UPDATE_RULES.get(rule_name):
                cfg = optim.with_defaults(rule_name, cfg)  # checks the keys early
            configs[p] = cfg
            base_lr[p] = cfg.get("learning_rate")
        batches, evaluation = (np.random.Generator(np.random.PCG64(s))
                               for s in np.random.SeedSequence(seed).spawn(2))
        return cls(configs, base_lr, batches, evaluation)

    def learning_rate(self):
        """The learning rate in use (of the first parameter; None if the rule has none)."""
        return next(iter(self.optim_configs.values())).get("learning_rate")

    def keep_best(self, model) -> None:
        """Make the model's current parameters and buffers the best (deep copies)."""
        self.best_params = {k: copy_array(v) for k, v in model.params.items()}
        buffers = buffers_of(model)
        self.best_buffers = {k: copy_array(v) for k, v in buffers.items()} if buffers else {}

    def reset_optimizer(self) -> None:
        """Forget the optimizer's state (moments, velocities, step counts: every array
        entry and Adam's ``t``); its hyperparameters stay."""
        for p, cfg in self.optim_configs.items():
            self.optim_configs[p] = {k: v for k, v in cfg.items()
                                     if k != "t" and not is_array(v)}

    def restore_best(self, model) -> None:
        """Write the best parameters into ``model.params`` in place (and the best buffers)."""
        if not self.best_params:
            return
        for k, w in model.params.items():
            w[...] = self.best_params[k]
        if self.best_buffers:
            model.set_buffers({k: copy_array(v) for k, v in self.best_buffers.items()})

    # --- the checkpoint schema --------------------------------------------------------------
    def to_arrays(self, model, settings: dict) -> tuple[dict, dict]:
        """``(arrays, meta)``: this state, the model's parameters, buffers and generator,
        and the Solver's ``settings`` (recorded for a resume) as named arrays (any
        backend) and JSON data."""
        arrays = {f"param/{k}": w for k, w in model.params.items()}
        buffers = buffers_of(model) or {}
        arrays.update({f"buffer/{k}": b for k, b in buffers.items()})
        arrays.update({f"best_param/{k}": w for k, w in self.best_params.items()})
        arrays.update({f"best_buffer/{k}": b for k, b in self.best_buffers.items()})
        optim_scalars: dict[str, dict] = {}
        optim_arrays: dict[str, list] = {}
        for p, cfg in self.optim_configs.items():
            optim_scalars[p], optim_arrays[p] = {}, []
            for key, value in cfg.items():
                if is_array(value):
                    arrays[f"optim/{p}/{key}"] = value
                    optim_arrays[p].append(key)
                else:
                    optim_scalars[p][key] = value
        model_rng = rng_of(model)
        meta = {
            "kind": "solver", **settings,
            "optim_scalars": optim_scalars, "optim_arrays": optim_arrays, "base_lr": self.base_lr,
            "epoch": self.epoch, "iteration": self.iteration, "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc, "best_val_loss": self.best_val_loss,
            "epochs_since_best": self.epochs_since_best, "stopped_early": self.stopped_early,
            "history": self.history, "param_names": list(model.params),
            "buffer_names": list(buffers), "best_buffer_names": list(self.best_buffers),
            "rng": self.rng.bit_generator.state, "eval_rng": self.eval_rng.bit_generator.state,
            "model_rng": model_rng.bit_generator.state if model_rng is not None else None,
            "backend": backend_of(first_param(model)),
            "model": model_spec(model),  # what gpunet.load_model rebuilds (None: cannot)
        }
        return arrays, meta

    def load(self, arrays: dict, meta: dict, model, where: str, *, configs: dict | None = None,
             override: Mapping | None = None, warn: bool = True) -> None:
        """Make ``(arrays, meta)`` (host arrays, as :meth:`to_arrays` describes them) this
        state and the model's, placed on the model's backend. ``meta`` has passed
        :func:`check_meta`; the arrays and generator states are checked here first
        (``ValueError`` naming ``where`` and the piece): nothing changes unless all of it
        fits. ``configs``: per-parameter optimizer configs to use instead of the saved
        optimizer state (another update rule); ``override``: optimizer hyperparameters that
        replace the saved ones (``learning_rate`` becomes the base rate); ``warn``: warn
        when the checkpoint holds a generator the model lacks."""
        names, buffers = list(model.params), buffers_of(model)

        def placed(key, like):
            if key not in arrays:
                raise ValueError(f"{where} has no array {key!r}")
            host = arrays[key]
            if backend_of(like) is None:  # a Python scalar buffer (e.g. a counter)
                return host[()].item() if host.shape == () else host
            if host.shape != tuple(like.shape) or host.dtype != host_dtype(like.dtype):
                raise ValueError(
                    f"{where}: {key!r} has shape {host.shape} and dtype {host.dtype}, the model "
                    f"has {tuple(like.shape)} and {host_dtype(like.dtype)}; build the model "
                    "with the same sizes and dtype"
                )
            return from_host(host, like)

        params = model.params
        new_params = {k: placed(f"param/{k}", w) for k, w in params.items()}
        new_best = {k: placed(f"best_param/{k}", params[k])
                    for k in names if f"best_param/{k}" in arrays}
        if configs is not None:
            new_configs = {p: copy.deepcopy(configs[p]) for p in names}
            base_lr = {p: new_configs[p].get("learning_rate") for p in names}
        else:
            new_configs, base_lr = {}, dict(meta["base_lr"])
            for p in names:
                new_configs[p] = dict(meta["optim_scalars"][p])
                for key in meta["optim_arrays"][p]:
                    new_configs[p][key] = placed(f"optim/{p}/{key}", params[p])
        override = dict(override or {})
        new_base = override.pop("learning_rate", None)  # the schedule sets the rate from it
        for p in names:
            new_configs[p].update(copy.deepcopy(override))
            if new_base is not None:
                base_lr[p] = new_base
        new_buffers, new_best_buffers = None, {}
        if buffers:
            new_buffers = {k: placed(f"buffer/{k}", b) for k, b in buffers.items()}
            new_best_buffers = {k: placed(f"best_buffer/{k}", buffers[k])
                                for k in meta["best_buffer_names"]}
        rng = _generator(meta["rng"], np.random.PCG64, "rng", where)
        eval_rng = _generator(meta["eval_rng"], np.random.PCG64, "eval_rng", where)
        model_rng = rng_of(model)
        if meta["model_rng"] is not None and model_rng is not None:
            _generator(meta["model_rng"], type(model_rng.bit_generator), "model_rng", where)
        elif meta["model_rng"] is not None and warn:
            warnings.warn(f"{where} holds the state of model.rng but the model has no numpy "
                          "Generator `rng`; dropout masks will differ", stacklevel=4)

        # Everything checked and placed: now commit.
        for k, w in params.items():
            w[...] = new_params[k]
        if new_buffers is not None:
            model.set_buffers(new_buffers)
        if meta["model_rng"] is not None and model_rng is not None:
            model_rng.bit_generator.state = meta["model_rng"]
        self.best_params, self.best_buffers = new_best, new_best_buffers
        self.optim_configs, self.base_lr = new_configs, base_lr
        self.epoch, self.iteration = meta["epoch"], meta["iteration"]
        self.best_epoch, self.epochs_since_best = meta["best_epoch"], meta["epochs_since_best"]
        self.best_val_acc, self.best_val_loss = meta["best_val_acc"], meta["best_val_loss"]
        self.stopped_early = meta["stopped_early"]
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self.rng, self.eval_rng = rng, eval_rng


def check_meta(meta: dict, names: list, buffer_names: list, where: str) -> None:
    """Raise ``ValueError`` unless ``meta`` is a complete Solver checkpoint for a model with
    parameters ``names`` and buffers ``buffer_names``: every key present and of its type.
    (Which recorded settings a resuming Solver keeps is :mod:`.resume`'s business.)"""
    if not isinstance(meta, Mapping) or meta.get("kind") != "solver":
        raise ValueError(f"{where} is not a Solver checkpoint")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{where} lacks {missing}: not a complete Solver checkpoint")
    if not isinstance(meta["update_rule"], str):
        raise ValueError(f"{where}: update_rule must be a name, got {meta['update_rule']!r}")
    integer("batch_size", meta["batch_size"], low=1, fn=where)
    integer("num_train", meta["num_train"], low=1, fn=where)
    boolean("drop_last", meta["drop_last"], fn=where)
    if not (meta["schedule"] is None or isinstance(meta["schedule"], Mapping)):
        raise ValueError(f"{where}: schedule must be a JSON object or null")
    if not _same_names(meta["param_names"], names):
        raise ValueError(f"{where} has parameters {meta['param_names']}, the model has "
                         f"{sorted(names)}; build the model with the same layers")
    if not _same_names(meta["buffer_names"], buffer_names):
        raise ValueError(f"{where} has buffers {meta['buffer_names']}, the model has "
                         f"{sorted(buffer_names)} (via get_buffers/set_buffers); build the model "
                         "with the same layers")
    best_buffer_names = meta["best_buffer_names"]  # [] before the first best epoch
    if not _same_names(best_buffer_names, buffer_names if best_buffer_names else []):
        raise ValueError(f"{where} has best buffers {meta['best_buffer_names']}, the model "
                         f"has buffers {sorted(buffer_names)}; build the model with the same layers")
    for key in _COUNTERS:
        integer(key, meta[key], low=0, fn=where)
    integer("best_epoch", meta["best_epoch"], low=1, allow_none=True, fn=where)
    real("best_val_acc", meta["best_val_acc"], low=0.0, high=1.0, fn=where)
    _loss("best_val_loss", meta["best_val_loss"], where)
    boolean("stopped_early", meta["stopped_early"], fn=where)
    history = meta["history"]
    if not (isinstance(history, Mapping) and set(history) == set(HISTORY_KEYS)
            and all(isinstance(v, list) for v in history.values())):
        raise ValueError(f"{where}: history must map {list(HISTORY_KEYS)} to lists")
    for key, values in history.items():
        for v in values:
            if key != "lr" or v is not None:
                _loss(f"history[{key!r}]", v, where)
    for key, kind in (("optim_scalars", Mapping), ("optim_arrays", list)):
        if not (isinstance(meta[key], Mapping) and sorted(meta[key]) == sorted(names)
                and all(isinstance(v, kind) for v in meta[key].values())):
            raise ValueError(f"{where}: {key} must hold a {kind.__name__} per parameter "
                             f"{sorted(names)}")
    for p in names:
        if not all(isinstance(k, str) for k in [*meta["optim_scalars"][p],
                                                *meta["optim_arrays"][p]]):
            raise ValueError(f"{where}: optimizer keys of {p!r} must be names")
    if not (isinstance(meta["base_lr"], Mapping) and sorted(meta["base_lr"]) == sorted(names)):
        raise ValueError(f"{where}: base_lr must hold a learning rate per parameter")
    for p, lr in meta["base_lr"].items():
        real(f"base_lr[{p!r}]", lr, low=0.0, allow_none=True, fn=where)
    rule = meta["update_rule"]
    if rule in optim.UPDATE_RULES:  # the saved settings and state names must fit the rule
        for p in names:
            try:
                optim.check_config(rule, {**meta["optim_scalars"][p],
                                          **dict.fromkeys(meta["optim_arrays"][p])})
            except ValueError as exc:
                raise ValueError(f"{where}: the saved optimizer state of {p!r} is not {rule}'s: "
                                 f"{exc}") from None
    for key, low in (("num_epochs", 0), ("patience", 1), ("world_size", 1)):  # recorded settings
        if key in meta:
            integer(key, meta[key], low=low, allow_none=key == "patience", fn=where)
    if meta.get("monitor") not in (None, "val_acc", "val_loss"):
        raise ValueError(f"{where}: monitor must be 'val_acc' or 'val_loss', got {meta['monitor']!r}")


def _loss(name: str, value, where: str) -> None:
    """A recorded number: any float, NaN and inf included (not a bool or a string)."""
    if not (isinstance(value, float) and math.isnan(value)):
        real(name, value, finite=False, fn=where)


def _same_names(saved, names: list) -> bool:
    """Whether ``saved`` (from a checkpoint) is a list of the strings ``names``, any order."""
    return (isinstance(saved, list) and all(isinstance(k, str) for k in saved)
            and sorted(saved) == sorted(names))


def _generator(state, bit_generator, key: str, where: str) -> np.random.Generator:
    """A new Generator in ``state`` (checked: a valid state of ``bit_generator``)."""
    try:
        bg = bit_generator()
        bg.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"{where}: {key!r} is not a valid {bit_generator.__name__} "
                         f"generator state ({exc})") from None
    return np.random.Generator(bg)
