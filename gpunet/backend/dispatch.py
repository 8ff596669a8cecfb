"""Which Ops a namespace gets: a table from the namespace's name to its Ops class.

NumPy gets :class:`~gpunet.backend.numpy_ops.NumpyOps`, CuPy
:class:`~gpunet.backend.cupy_ops.CupyOps` (its kernels are described at import and built
on first use: nothing here imports CuPy), any other Array API namespace the generic
:class:`~gpunet.backend.ops.Ops`. One instance per namespace, made on first use.
"""

from __future__ import annotations

import threading

from .cupy_ops import CupyOps
from .numpy_ops import NumpyOps
from .ops import Ops

#: Ops class by namespace name (``xp.__name__``); the rest get the generic Ops.
OPS_CLASSES: dict[str, type[Ops]] = {"numpy": NumpyOps, "cupy": CupyOps}

_instances: dict[str, Ops] = {}
_lock = threading.Lock()


def get_ops(xp) -> Ops:
    """The primitives for namespace ``xp``, made once and cached."""
    key = xp.__name__
    ops = _instances.get(key)
    if ops is None:
        with _lock:
            ops = _instances.get(key)
            if ops is None:
                ops = _instances[key] = OPS_CLASSES.get(key, Ops)(xp)
    return ops
