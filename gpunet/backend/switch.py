"""The backend choice: where *new* arrays (weights, loaded data) are created.

Which namespace an operation runs on is decided by its inputs (see
:func:`gpunet.backend.namespace.get_array_module`), never by this switch.

A thread's choice (:func:`use_backend`) beats the process-wide default
(:func:`set_backend`), which beats ``GPUNET_BACKEND``; without any of them it is NumPy.
The variable is read only when nothing was chosen explicitly, so a bad value never
stands in the way of an explicit choice; it is reported when it is used.
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
_default: str | None = None  # process-wide: set_backend's choice, else GPUNET_BACKEND once read
_local = threading.local()  # .choice: this thread's use_backend choice (None: the process default)
_auto_reported = False


def resolve(name: str, what: str = "backend") -> str:
    """Check that backend ``name`` can run here and return its concrete name.

    ``"auto"`` becomes ``"cupy"`` when a CUDA device is usable, else ``"numpy"``.
    ``what`` names the argument in the error (e.g. the environment variable).
    """
    if not (isinstance(name, str) and name.lower() in CHOICES):  # not _validate: it imports the backend
        raise ValueError(f"{what} must be one of {', '.join(map(repr, CHOICES))}, got {name!r}")
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


def get_backend() -> str:
    """Name of the backend new arrays are created on in this thread: ``"numpy"``,
    ``"cupy"`` or ``"strict"``."""
    choice = getattr(_local, "choice", None)
    if choice is not None:
        return choice
    default = _default
    return default if default is not None else _default_from_env()


def _default_from_env() -> str:
    global _default
    env = os.environ.get(ENV_VAR, "numpy")
    hint = (f"unset {ENV_VAR}, or choose in code with gpunet.set_backend(name) or "
            "`with gpunet.use_backend(name):`")
    try:
        chosen = resolve(env, what=ENV_VAR)
    except ValueError as exc:
        raise type(exc)(f"{exc}; {hint}") from None
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"{ENV_VAR}={env!r}: {exc}; or {hint}") from None
    with _lock:
        if _default is None:  # a concurrent set_backend wins
            _default = chosen
        return _default


def set_backend(name: str) -> str:
    """Set the process-wide default backend (what every thread sees unless it chose its own
    with :func:`use_backend`) and return its concrete name. ``GPUNET_BACKEND`` is not read."""
    global _default
    chosen = resolve(name)
    with _lock:
        _default = chosen
    return chosen


class use_backend:  # noqa: N801 - a function to users, a class to implement `with`
    """Choose the backend new arrays are created on in the *current thread*.

    ``with use_backend("numpy"): ...`` applies to the block and then restores the thread's
    previous choice. Called plainly, ``use_backend("cupy")`` sets the current thread's
    choice from then on; other threads keep theirs, and new threads start from the
    process-wide default, which :func:`set_backend` sets. Names: ``"numpy"``, ``"cupy"``,
    ``"auto"`` (CuPy when a device is usable, else NumPy) and the test-only ``"strict"``.
    ``GPUNET_BACKEND`` is not read. The chosen name is ``.name`` (and the ``as`` target).
    """

    def __init__(self, name: str):
        self.name = resolve(name)
        self._previous = getattr(_local, "choice", None)
        _local.choice = self.name

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc_info) -> None:
        _local.choice = self._previous

    def __repr__(self) -> str:
        return f"use_backend({self.name!r})"


def _reset_for_tests() -> None:
    """Forget every choice (process default, this thread's, the 'auto' report)."""
    global _default, _auto_reported
    with _lock:
        _default = None
        _auto_reported = False
    _local.choice = None
