"""Which array namespace data belongs to, moving data between backends, and creating
new arrays next to existing ones (same namespace, same device)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from numbers import Number
from typing import Any

import numpy as np

from .switch import get_backend, use_backend

_SCALARS = (Number, np.generic)
_FAMILY_HINT = {
    "numpy": "gpunet.to_numpy(x)",
    "cupy": "gpunet.asarray(x) under gpunet.use_backend('cupy')",
    "strict": "gpunet.asarray(x) under gpunet.use_backend('strict')",
}


def _family(x) -> str | None:
    if isinstance(x, np.ndarray):
        return "numpy"
    root = type(x).__module__.split(".", 1)[0]
    if root == "cupy":
        return "cupy"
    if root == "array_api_strict":
        return "strict"
    return None


def backend_of(x) -> str | None:
    """``"numpy"``, ``"cupy"`` or ``"strict"`` for an array; ``None`` for a Python/NumPy scalar or None."""
    if x is None or isinstance(x, _SCALARS):
        return None
    family = _family(x)
    if family is not None:
        return family
    raise TypeError(
        f"expected a NumPy, CuPy or array_api_strict array, got {type(x).__module__}."
        f"{type(x).__qualname__}; convert it with gpunet.asarray(x)"
    )


def namespace(backend: str):
    """The array module of a backend name."""
    if backend == "numpy":
        return np
    if backend == "cupy":
        from .cupy_probe import require_cupy

        return require_cupy()
    if backend == "strict":
        from .strict import strict_namespace

        return strict_namespace()
    raise ValueError(f"unknown backend {backend!r}")


def get_array_module(*arrays):
    """Array namespace (``numpy``, ``cupy`` or ``array_api_strict``) of the given arrays.

    ``None`` and scalars are ignored; with no arrays, the current backend's namespace.
    Arrays of two backends raise ``TypeError`` naming both.
    """
    if arrays and all(type(a) is np.ndarray for a in arrays):  # the common case, at once
        return np
    found = None
    for a in arrays:
        b = backend_of(a)
        if b is None:
            continue
        if found is None:
            found = b
        elif b != found:
            raise TypeError(
                f"arrays from two backends in one call: {found} and {b}; move one of them "
                f"first, e.g. {_FAMILY_HINT[found]} or {_FAMILY_HINT[b]}"
            )
    if found == "cupy":
        return sys.modules["cupy"]
    return namespace(found or get_backend())


def xp_dtype(xp, dtype):
    """``dtype`` (a name, NumPy dtype or namespace dtype) as a dtype of namespace ``xp``."""
    if dtype is None:
        return None
    if xp is np or xp.__name__ == "cupy":
        return np.dtype(dtype)
    if isinstance(dtype, (str, type, np.dtype)):
        return getattr(xp, np.dtype(dtype).name)
    return dtype


def to_numpy(x, dtype=None) -> np.ndarray:
    """``x`` (any backend, or anything ``np.asarray`` takes) as a NumPy array on the host;
    no copy when it already is NumPy of that dtype."""
    b = _family(x)
    if b == "cupy":
        x = x.get()
    elif b == "strict":
        from .strict import host_device

        xp = sys.modules["array_api_strict"]
        x = np.asarray(xp.asarray(x, device=host_device()))
    return np.asarray(x, dtype=dtype)


_DLPACK_CPU = 1  # DLPack's device type of host memory (kDLCPU)


def from_dlpack(x):
    """``x`` (any object with ``__dlpack__``: a PyTorch tensor, a JAX array, a NumPy or
    CuPy array) as an array of the current backend. Shares ``x``'s memory when it already
    lives where the backend keeps its arrays (a CPU tensor under NumPy, a CUDA tensor under
    CuPy); otherwise the data is copied there once."""
    if not hasattr(x, "__dlpack__"):
        raise TypeError(
            f"from_dlpack needs an object with __dlpack__ (a PyTorch tensor, JAX, NumPy or CuPy "
            f"array), got {type(x).__name__}; use gpunet.asarray(x) for other data"
        )
    on_host = x.__dlpack_device__()[0] == _DLPACK_CPU
    backend = get_backend()
    if backend == "cupy" and not on_host:
        return namespace("cupy").from_dlpack(x)
    try:
        host = np.from_dlpack(x, device="cpu")  # no copy for host memory
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        if on_host:
            raise
        raise BufferError(
            f"from_dlpack: the array lives on DLPack device {tuple(x.__dlpack_device__())} and its "
            f"library cannot hand it to the host ({exc}); use the cupy backend "
            "(gpunet.use_backend('cupy')) or move it to the host first (tensor.cpu())"
        ) from exc
    return host if backend == "numpy" else asarray(host)


def to_backend(arrays: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """The arrays of a name -> array mapping as a new dict, each moved onto ``backend``
    (``"numpy"``, ``"cupy"``, ...; no copy where an array already is there)."""
    with use_backend(backend):
        return {name: asarray(a) for name, a in arrays.items()}


_NUMBERS = "biufc"  # NumPy dtype kinds of numbers: bool, int, uint, float, complex


def _number_dtype(dtype, target: str) -> np.dtype:
    """``dtype`` as a NumPy dtype of numbers that backend ``target`` has (a TypeError if not)."""
    try:
        found = np.dtype(dtype)
    except (TypeError, ValueError):
        found = None
    if found is None or found.kind not in _NUMBERS or (target == "strict" and found.name == "float16"):
        raise TypeError(f"asarray: dtype must be a numeric dtype (bool, int, uint, float, complex) of the "
                        f"{target} backend, such as 'float32', got {dtype!r}")
    return found


def _host_numbers(x, dtype):
    """Python data, a NumPy scalar or array ``x`` as a NumPy array of numbers (a TypeError
    naming what ``x`` is if it does not hold numbers, or would lose an imaginary part)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            host = to_numpy(x, dtype)
    except (TypeError, ValueError, OverflowError, np.exceptions.ComplexWarning) as exc:
        raise TypeError(f"asarray: x must be numbers (a number, nested lists of numbers or an array), "
                        f"got {type(x).__name__} ({exc}); convert it first") from None
    if host.dtype.kind not in _NUMBERS:
        raise TypeError(f"asarray: x must hold numbers (bool, int, float or complex), got {type(x).__name__} "
                        f"of dtype {host.dtype}; convert it first")
    return host


def asarray(x, dtype=None):
    """``x`` (numbers: a number, nested lists of them or an array) as an array of the current
    backend (see :func:`gpunet.use_backend`); anything else is a ``TypeError`` saying what ``x`` is."""
    target = get_backend()
    source = _family(x)
    if dtype is not None:
        dtype = _number_dtype(dtype, target)
    if source in (None, "numpy"):  # Python data or NumPy: checked numbers on the host first
        x, source = _host_numbers(x, dtype), "numpy"
        if target == "strict" and x.dtype == np.float16:
            raise TypeError("asarray: the strict backend has no float16; convert x to float32 first")
    if target == "numpy":
        return to_numpy(x, dtype)
    xp = namespace(target)
    if target == "cupy":
        if source == "strict":
            x = to_numpy(x)
        return xp.asarray(x, dtype=xp_dtype(xp, dtype))
    from .strict import device

    if source == "strict" and x.device == device():
        return x if dtype is None else xp.astype(x, xp_dtype(xp, dtype))
    host = to_numpy(x, dtype)
    return xp.asarray(host, device=device())


# --- creating arrays next to an existing one -----------------------------------------


def _device_kw(xp, like) -> dict:
    # NumPy and CuPy create on the current (only / active) device; the Array API
    # namespaces need the device spelled out.
    if xp is np or xp.__name__ == "cupy":
        return {}
    return {"device": like.device}


def zeros(shape, like, dtype=None):
    """Zeros of ``shape`` in the namespace, device and (by default) dtype of ``like``."""
    xp = get_array_module(like)
    return xp.zeros(shape, dtype=dtype or like.dtype, **_device_kw(xp, like))


def full(shape, value, like, dtype=None):
    xp = get_array_module(like)
    return xp.full(shape, value, dtype=dtype or like.dtype, **_device_kw(xp, like))


def arange(n: int, like, dtype=None):
    """``0..n-1`` next to ``like`` (default dtype: the namespace's default integer)."""
    xp = get_array_module(like)
    kw = _device_kw(xp, like)
    return xp.arange(n, dtype=dtype, **kw) if dtype is not None else xp.arange(n, **kw)


def from_host(host: np.ndarray, like):
    """Copy the NumPy array ``host`` into the namespace and onto the device of ``like``."""
    xp = get_array_module(like)
    if xp is np:
        return host
    if xp.__name__ == "cupy":
        return xp.asarray(host)
    return xp.asarray(host, device=like.device)
