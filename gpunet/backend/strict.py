"""Test-only "strict" backend: ``array_api_strict`` arrays on a non-CPU device.

Portable code run on it raises on any NumPy leak (``np.asarray`` of a device array),
boolean-mask indexing, data-dependent output shapes, mixing devices, and, because
``array_api_strict`` itself allows it, implicit host conversion (``float(x)``,
``bool(x)``, ``int(x)``) of a device array: the CPU stand-in for "would this break
or sync on CuPy".
"""

from __future__ import annotations

import importlib
import threading

from .._install import clone_install
from .cupy_probe import BackendUnavailableError

DEVICE_NAME = "device1"
_lock = threading.Lock()
_module = None


def strict_namespace():
    """Import and configure ``array_api_strict`` once; return the module."""
    global _module
    with _lock:
        if _module is None:
            try:
                xp = importlib.import_module("array_api_strict")
            except ImportError as exc:
                raise BackendUnavailableError(
                    "backend 'strict' needs array-api-strict (a test tool): "
                    f"`{clone_install('test')}` in a gpunet clone, or `pip install \"array-api-strict>=2.4\"`"
                ) from exc
            xp.set_array_api_strict_flags(boolean_indexing=False, data_dependent_shapes=False)
            _guard_host_conversion(type(xp.asarray(0.0)))
            _module = xp
        return _module


def device():
    """The non-CPU device strict arrays are created on."""
    return strict_namespace().Device(DEVICE_NAME)


def host_device():
    return strict_namespace().__array_namespace_info__().default_device()


def _guard_host_conversion(array_type) -> None:
    """Make ``float()``/``int()``/``bool()``/``complex()`` of a device array raise."""
    if getattr(array_type, "_gpunet_guarded", False):
        return

    def guarded(name):
        original = getattr(array_type, name)

        def method(self, *args, **kwargs):
            if self.device != host_device():
                raise RuntimeError(
                    f"host conversion {name}() of an array on {self.device}: on a GPU this "
                    "is a hidden device-to-host sync; keep the value on the device or call "
                    "gpunet.to_numpy() where reading it back is intended"
                )
            return original(self, *args, **kwargs)

        method.__name__ = name
        return method

    for name in ("__float__", "__int__", "__bool__", "__complex__", "__index__"):
        setattr(array_type, name, guarded(name))
    array_type._gpunet_guarded = True
