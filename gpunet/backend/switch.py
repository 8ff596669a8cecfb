"""The global backend choice: where *new* arrays (weights, loaded data) are created.

Which namespace an operation runs on is decided by its inputs (see
:func:`gpunet.backend.namespace.get_array_module`), never by this switch.
"""

from __future__ import annotations

import logging
import os
import threading

from .cupy_probe import BackendUnavailableError, cupy_status, require_cupy

log = logging.getLogger("gpunet")

BACKENDS = ("numpy", "cupy", "strict")
CHOICES = BACKENDS + ("auto",)
ENV_VAR = "GPUNET_BACKEND"

_lock = threading.Lock()
_default: str | None = None  # process-wide choice, resolved lazily from GPUNET_BACKEND
_local = threading.local()  # per-thread stack of `with use_backend(...)` overrides
_auto_reported = False


def resolve(name: str) -> str:
    """Check that backend ``name`` can run here and return its concrete name.

    ``"auto"`` becomes ``"cupy"`` when a CUDA device is usable, else ``"numpy"``.
    """
    if not isinstance(name, str) or name.lower() not in CHOICES:
        raise ValueError(
            f"unknown backend {name!r}; expected one of {', '.join(map(repr, CHOICES))}"
        )
    name = name.lower()
    if name == "auto":
        cupy, reason = cupy_status()
        chosen = "numpy" if cupy is None else "cupy"
        _report_auto(chosen, reason)
        return chosen
    if name == "cupy":
        require_cupy()
    elif name == "strict":
        from .strict import strict_namespace

        strict_namespace()
    return name


def _report_auto(chosen: str, reason: str | None) -> None:
    global _auto_reported
    with _lock:
        if _auto_reported:
            return
        _auto_reported = True
    if reason:
        log.info("gpunet backend 'auto' chose %s (%s)", chosen, reason)
    else:
        log.info("gpunet backend 'auto' chose %s", chosen)


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_backend() -> str:
    """Name of the backend new arrays are created on: ``"numpy"``, ``"cupy"`` or ``"strict"``."""
    global _default
    stack = _stack()
    if stack:
        return stack[-1]
    with _lock:
        if _default is not None:
            return _default
    env = os.environ.get(ENV_VAR, "numpy")
    try:
        chosen = resolve(env)
    except ValueError as exc:
        raise ValueError(f"{ENV_VAR}={env!r}: {exc}") from None
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{ENV_VAR}={env!r}: {exc}") from None
    with _lock:
        if _default is None:
            _default = chosen
        return _default


class use_backend:  # noqa: N801 - a function to users, a class to implement `with`
    """Choose the backend that new arrays are created on.

    Called plainly, ``use_backend("cupy")`` sets the process-wide default. Used as
    ``with use_backend("numpy"): ...`` it applies to the current thread for the block
    only and leaves the process-wide default as it was. Names: ``"numpy"``, ``"cupy"``,
    ``"auto"`` (CuPy when a device is usable, else NumPy) and the test-only ``"strict"``.
    """

    def __init__(self, name: str):
        global _default
        self.name = resolve(name)
        get_backend()  # make sure the default is resolved before it is replaced
        with _lock:
            self._previous = _default
            _default = self.name

    def __enter__(self) -> str:
        global _default
        with _lock:  # the block is thread-local: undo the process-wide change
            if _default == self.name:
                _default = self._previous
        _stack().append(self.name)
        return self.name

    def __exit__(self, *exc_info) -> None:
        _stack().pop()

    def __repr__(self) -> str:
        return f"use_backend({self.name!r})"


def _reset_for_tests() -> None:
    global _default, _auto_reported
    with _lock:
        _default = None
        _auto_reported = False
    _stack().clear()
