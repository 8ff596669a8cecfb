"""Backends: NumPy (CPU), CuPy (CUDA) and the test-only ``strict`` (array_api_strict).

The data decides the device: every operation runs in the namespace of its inputs
(:func:`get_array_module`). :func:`use_backend` only decides where *new* arrays are
created (:func:`asarray`, weights, loaded data). CuPy is imported lazily.

Every backend's hot primitives (Ops) live here too: ``ops.py`` (generic, the reference),
``numpy_ops.py``, ``cupy_ops.py`` (over the kernels of ``gpunet/cuda``), chosen by
:func:`get_ops` (``dispatch.py``); ``geometry.py`` holds the conv/pool geometry types.
"""

from .cupy_probe import BackendUnavailableError, cupy_status
from .dispatch import get_ops
from .geometry import ConvGeometry, PoolGeometry
from .namespace import asarray, backend_of, get_array_module, to_numpy
from .switch import BACKENDS, get_backend, set_backend, use_backend

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "ConvGeometry",
    "PoolGeometry",
    "asarray",
    "backend_of",
    "cupy_status",
    "get_array_module",
    "get_backend",
    "get_ops",
    "set_backend",
    "to_numpy",
    "use_backend",
]
