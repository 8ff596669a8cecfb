"""Argument checks for every module: scalars (ints, reals, probabilities, flags, seeds) and
arrays (float dtype, ndim, shape, parameter dicts).

Each failure raises :class:`ArgumentError` naming the argument and saying what was
expected, what was given and, where it helps, how to fix it. NumPy scalars are accepted
wherever Python numbers are; ``bool`` is never a number here, NaN never a valid real.
Array checks read shapes, dtypes and dict keys only, never values, so nothing syncs with
a device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from numbers import Integral, Real
from typing import Any, Literal, overload

import numpy as np

from .backend import backend_of, get_array_module

__all__ = [
    "ArgumentError",
    "boolean",
    "cached",
    "choice",
    "dtype",
    "float_dtype",
    "float_inputs",
    "integer",
    "keys",
    "labels",
    "memo_key",
    "mode",
    "ndim",
    "pair",
    "probability",
    "real",
    "samples",
    "seed",
    "shape",
]


class ArgumentError(ValueError, TypeError):
    """An argument has the wrong type or value. Both a ``ValueError`` and a ``TypeError``
    (as NumPy's ``AxisError`` is both a ``ValueError`` and an ``IndexError``), so callers
    catching either keep working."""


def _prefix(fn: str | None) -> str:
    return f"{fn}: " if fn else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


# --- scalars -------------------------------------------------------------------------------


@overload
def integer(name: str, value: Any, *, low: int | None = ..., high: int | None = ...,
            allow_none: Literal[False] = ..., fn: str | None = ...) -> int: ...
@overload
def integer(name: str, value: Any, *, low: int | None = ..., high: int | None = ...,
            allow_none: bool, fn: str | None = ...) -> int | None: ...


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None,
            allow_none: bool = False, fn: str | None = None) -> int | None:
    """``value`` as a Python int in [low, high] (Python or NumPy integer; not bool)."""
    if value is None and allow_none:
        return None
    bounds = _interval(low, high, True, True, int)
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        more = " or None" if allow_none else ""
        raise ArgumentError(f"{_prefix(fn)}{name} must be an int{bounds}{more}, got {value!r}")
    return int(value)


@overload
def real(name: str, value: Any, *, low: float | None = ..., high: float | None = ...,
         low_open: bool = ..., high_open: bool = ..., finite: bool = ...,
         allow_none: Literal[False] = ..., fn: str | None = ...) -> float: ...
@overload
def real(name: str, value: Any, *, low: float | None = ..., high: float | None = ...,
         low_open: bool = ..., high_open: bool = ..., finite: bool = ...,
         allow_none: bool, fn: str | None = ...) -> float | None: ...


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, finite: bool = True,
         allow_none: bool = False, fn: str | None = None) -> float | None:
    """``value`` as a Python float in the given interval (Python or NumPy number; not bool,
    never NaN; infinite only with ``finite=False``)."""
    if value is None and allow_none:
        return None
    bounds = _interval(low, high, not low_open, not high_open, float)
    ok = _is_real(value) and not math.isnan(value) and (math.isfinite(value) or not finite)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        kind = "a finite number" if finite else "a number"
        more = " or None" if allow_none else ""
        raise ArgumentError(f"{_prefix(fn)}{name} must be {kind}{bounds}{more}, got {value!r}")
    return float(value)


def probability(name: str, value: Any, *, zero: bool = False, one: bool = True,
                fn: str | None = None) -> float:
    """A probability in (0, 1] by default; ``zero``/``one`` say whether 0 and 1 are allowed."""
    return real(name, value, low=0.0, high=1.0, low_open=not zero, high_open=not one, fn=fn)


def boolean(name: str, value: Any, *, fn: str | None = None) -> bool:
    """``value`` as a Python bool (``True``/``False`` or a NumPy bool; not 0/1 or strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{_prefix(fn)}{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, choices: Collection, *, fn: str | None = None) -> Any:
    """``value`` if it is one of ``choices`` (True and False are not 1 and 0 here)."""
    flag = isinstance(value, (bool, np.bool_))
    try:
        ok = any(value == c and flag == isinstance(c, (bool, np.bool_)) for c in choices)
    except (TypeError, ValueError):  # e.g. an array compared with a string
        ok = False
    if not ok:
        listed = ", ".join(map(repr, choices))
        raise ArgumentError(f"{_prefix(fn)}{name} must be one of {listed}, got {value!r}")
    return value


def seed(name: str, value: Any, *, fn: str | None = None):
    """A seed for ``numpy.random.default_rng``: None, an int >= 0, a ``SeedSequence`` or a
    ``Generator`` (returned as given; ints as Python ints)."""
    if value is None or isinstance(value, (np.random.Generator, np.random.SeedSequence)):
        return value
    if _is_int(value) and value >= 0:
        return int(value)
    raise ArgumentError(
        f"{_prefix(fn)}{name} must be None, an int >= 0 or a numpy.random.Generator, got {value!r}"
    )


_FLOATS = ("float16", "float32", "float64")


def float_dtype(name: str, value: Any, *, fn: str | None = None) -> np.dtype:
    """``value`` (a name such as ``"float32"``, a NumPy dtype or type) as a NumPy dtype
    float16, float32 or float64."""
    try:
        found = None if value is None else np.dtype(value)  # np.dtype(None) would be float64
    except (TypeError, ValueError):
        found = None
    if found is None or found.name not in _FLOATS:
        raise ArgumentError(
            f"{_prefix(fn)}{name} must be a floating dtype ({', '.join(map(repr, _FLOATS))}), "
            f"got {value!r}"
        )
    return found


def _interval(low, high, low_closed: bool, high_closed: bool, kind) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>=' if low_closed else '>'} {kind(low)}"
    if low is None:
        return f" {'<=' if high_closed else '<'} {kind(high)}"
    return f" in {'[' if low_closed else '('}{kind(low)}, {kind(high)}{']' if high_closed else ')'}"


def memo_key(value: Any):
    """A hashable key under which a passed check of ``value`` may be cached: keys are equal
    only for values of the same types and values (``1``, ``1.0``, ``True`` and
    ``np.int64(1)`` all differ), through tuples, lists and dicts; ``None`` when ``value``
    holds something unhashable (check it every time)."""
    kind = type(value)
    if kind in (tuple, list):
        parts = tuple(memo_key(v) for v in value)
        return None if None in parts else (kind, parts)
    if kind is dict:
        items = tuple((memo_key(k), memo_key(v)) for k, v in value.items())
        return None if any(None in item for item in items) else (kind, items)
    try:
        hash(value)
    except TypeError:
        return None
    return (kind, value)


def cached(cache: dict, key, check: Callable[[], Any], size: int = 256) -> Any:
    """``check()``'s result, computed once per ``key`` (e.g. from :func:`memo_key`) and kept
    in ``cache`` (emptied when it holds ``size`` entries); a check that raises is not kept,
    and ``key=None`` checks every time."""
    if key is None:
        return check()
    try:
        return cache[key]
    except KeyError:
        pass
    result = check()
    if len(cache) >= size:
        cache.clear()
    cache[key] = result
    return result


# --- arrays and parameter dicts -------------------------------------------------------------


def float_inputs(fn: str, **arrays):
    """Namespace of ``arrays`` after checking they are arrays (not None, lists or Python
    numbers), real floating and of one dtype. Raises :class:`ArgumentError` (not an array,
    dtype) or ``TypeError`` (arrays of two backends).
    """
    common = None  # fast path, the same checks: NumPy arrays (exact type) of one float dtype
    for a in arrays.values():
        if type(a) is not np.ndarray or a.dtype.kind != "f" or (common is not None and a.dtype != common):
            break  # anything else (None included) gets the full checks below
        common = a.dtype
    else:
        if common is not None:
            return np
    for name, a in arrays.items():
        if not _is_array(a) or isinstance(a, (np.matrix, np.ma.MaskedArray)):
            # (a matrix's * is a matrix product, a masked array's mask would be ignored)
            raise ArgumentError(
                f"{fn}: {name} must be a real floating array (float16/32/64), got "
                f"{type(a).__name__}; convert it with gpunet.asarray({name}, dtype='float32')"
            )
    xp = get_array_module(*arrays.values())
    dtypes = {}
    for name, a in arrays.items():
        if not xp.isdtype(a.dtype, "real floating"):
            given = a.dtype
            raise ArgumentError(
                f"{fn}: {name} must be a real floating array (float16/32/64), got {given}; "
                f"convert it with gpunet.asarray({name}, dtype='float32')"
            )
        dtypes[name] = a.dtype
    if len(set(map(str, dtypes.values()))) > 1:
        listed = ", ".join(f"{k}={_short(v)}" for k, v in dtypes.items())
        raise ArgumentError(
            f"{fn}: all inputs must share one dtype (nothing is upcast silently), got {listed}; "
            "cast them to one dtype first"
        )
    return xp


def _is_array(a) -> bool:
    """An array of a known backend (or a NumPy scalar, which acts as a 0-d array)."""
    try:
        backend_of(a)
    except TypeError:
        return False
    return hasattr(a, "dtype") and hasattr(a, "shape")


def _short(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def samples(fn: str, name: str, X) -> None:
    """``X`` is an array of samples (N, ...) (at least one dimension; its values are not read)."""
    if not _is_array(X) or X.ndim < 1:
        raise ArgumentError(f"{fn}: {name} must be an array of samples (N, ...), got "
                            f"{getattr(X, 'shape', type(X).__name__)}")


def labels(fn: str, name: str, y, n: int) -> None:
    """``y`` is an integer array of class labels of shape (n,) (its values are not read)."""
    if not _is_array(y) or not get_array_module(y).isdtype(y.dtype, "integral"):
        given = getattr(y, "dtype", type(y).__name__)
        raise ArgumentError(
            f"{fn}: {name} must be an integer array of class labels, got {given}; convert it with "
            f"{name}.astype('int64') if the values are whole numbers"
        )
    shape(fn, name, y, (n,), "one label per sample")


def ndim(fn: str, name: str, a, expected: int, meaning: str = "") -> None:
    """``a.ndim == expected``; ``meaning`` describes the axes, e.g. "(N, C, H, W)"."""
    if a.ndim != expected:
        what = f" {meaning}" if meaning else ""
        raise ArgumentError(
            f"{fn}: {name} must have {expected} dimensions{what}, got shape {tuple(a.shape)}"
        )


def shape(fn: str, name: str, a, expected: tuple, why: str = "") -> None:
    """``a.shape == expected``; ``why`` says where the expected shape comes from."""
    if tuple(a.shape) != tuple(expected):
        because = f" ({why})" if why else ""
        raise ArgumentError(
            f"{fn}: {name} must have shape {tuple(expected)}{because}, got {tuple(a.shape)}"
        )


def dtype(fn: str, name: str, a, expected, why: str = "") -> None:
    """``a.dtype`` is the dtype ``expected``, compared by name (NumPy, CuPy and strict dtypes compare)."""
    if _short(a.dtype) != _short(expected):
        because = f" ({why})" if why else ""
        raise ArgumentError(
            f"{fn}: {name} must have dtype {_short(expected)}{because}, got {_short(a.dtype)}; "
            "cast it first (nothing is cast silently)"
        )


def pair(fn: str, name: str, value: Any, *, low: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints (Python or NumPy) as ``(h, w)``, each >= ``low`` if given."""
    if _is_int(value):
        hw = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        hw = (int(value[0]), int(value[1]))
    else:
        hw = None
    if hw is None or (low is not None and min(hw) < low):
        bound = f" >= {low}" if low is not None else ""
        raise ArgumentError(
            f"{fn}: {name} must be an int{bound} or a pair of ints{bound} (h, w), got {value!r}"
        )
    return hw


def keys(fn: str, param_name: str, param: Any, allowed: Collection,
         required: Collection = frozenset()) -> None:
    """Reject a non-dict and unknown or missing keys of a CS231n-style parameter dict."""
    if not isinstance(param, Mapping):
        raise ArgumentError(f"{fn}: {param_name} must be a dict, got {type(param).__name__}")
    unknown = set(param) - set(allowed)
    if unknown:
        raise ArgumentError(
            f"{fn}: unknown {param_name} key(s) {sorted(map(str, unknown))}; accepted: {sorted(allowed)}"
        )
    missing = set(required) - set(param)
    if missing:
        raise ArgumentError(f"{fn}: {param_name} is missing required key(s) {sorted(missing)}")


def mode(fn: str, param_name: str, param: Mapping) -> str:
    """``param['mode']``, which must be 'train' or 'test'."""
    m = param.get("mode")
    if m not in ("train", "test"):
        raise ArgumentError(f"{fn}: {param_name}['mode'] must be 'train' or 'test', got {m!r}")
    return m
