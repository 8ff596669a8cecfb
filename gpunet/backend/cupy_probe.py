"""Lazy CuPy import: "installed" and "installed with a usable device" are different facts."""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

from .._install import pip_install

INSTALL_HINT = (
    "install the CuPy wheel that matches your CUDA driver: "
    f"`{pip_install('cuda12')}` (CUDA 12.x) or `{pip_install('cuda13')}` (CUDA 13.x)"
)

_lock = threading.Lock()
_status: tuple[ModuleType | None, str | None] | None = None


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why and how to fix it."""


def cupy_status() -> tuple[ModuleType | None, str | None]:
    """Return ``(cupy_module, None)`` when CuPy has a usable device, else ``(None, reason)``.

    Imports CuPy on first call only (never at ``import gpunet``) and caches the answer.
    """
    global _status
    with _lock:
        if _status is None:
            _status = _probe()
        return _status


def _probe() -> tuple[ModuleType | None, str | None]:
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # a broken install, e.g. CUDA libraries that fail to load
        return None, f"CuPy is installed but fails to import ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, missing driver library, ...
        return None, (
            f"CuPy {cupy.__version__} is installed but no CUDA device is usable "
            f"({type(exc).__name__}: {exc}); check `nvidia-smi` and that the CuPy wheel "
            f"matches the driver's CUDA version ({INSTALL_HINT})"
        )
    if count < 1:
        return None, (
            f"CuPy {cupy.__version__} is installed but reports 0 CUDA devices; "
            "check `nvidia-smi` and CUDA_VISIBLE_DEVICES"
        )
    return cupy, None


def require_cupy() -> ModuleType:
    """Return the cupy module or raise :class:`BackendUnavailableError` saying why not."""
    cupy, reason = cupy_status()
    if cupy is None:
        raise BackendUnavailableError(f"backend 'cupy' is not available: {reason}")
    return cupy


def _reset_for_tests() -> None:
    global _status
    with _lock:
        _status = None
