"""Input checks shared by layers and losses: each failure says what was expected,
what was given, and how to fix it. Only shapes, dtypes and dict keys are read here,
never array values, so nothing syncs with a device."""

from __future__ import annotations

from ..backend import get_array_module


def float_inputs(fn: str, **arrays):
    """Namespace of ``arrays`` after checking they are real floating and share one dtype.

    ``None`` values are skipped. Raises ``ValueError`` (dtype) or ``TypeError`` (backends).
    """
    present = {k: a for k, a in arrays.items() if a is not None}
    xp = get_array_module(*present.values())
    dtypes = {}
    for name, a in present.items():
        if not hasattr(a, "dtype") or not xp.isdtype(a.dtype, "real floating"):
            given = getattr(a, "dtype", type(a).__name__)
            raise ValueError(
                f"{fn}: {name} must be a real floating array (float16/32/64), got {given}; "
                f"convert it with gpunet.asarray({name}, dtype='float32')"
            )
        dtypes[name] = a.dtype
    if len(set(map(str, dtypes.values()))) > 1:
        listed = ", ".join(f"{k}={_short(v)}" for k, v in dtypes.items())
        raise ValueError(
            f"{fn}: all inputs must share one dtype (nothing is upcast silently), got {listed}; "
            "cast them to one dtype first"
        )
    return xp


def _short(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def ndim(fn: str, name: str, a, expected: int, meaning: str = "") -> None:
    if a.ndim != expected:
        what = f" {meaning}" if meaning else ""
        raise ValueError(
            f"{fn}: {name} must have {expected} dimensions{what}, got shape {tuple(a.shape)}"
        )


def shape(fn: str, name: str, a, expected: tuple, why: str = "") -> None:
    if tuple(a.shape) != tuple(expected):
        because = f" ({why})" if why else ""
        raise ValueError(
            f"{fn}: {name} must have shape {tuple(expected)}{because}, got {tuple(a.shape)}"
        )


def pair(fn: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of ints as ``(h, w)``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{fn}: {name} must be an int or a pair of ints (h, w), got {value!r}")


def keys(fn: str, param_name: str, param: dict, allowed: set, required: set = frozenset()) -> None:
    """Reject unknown and missing keys of a CS231n-style parameter dict."""
    if not isinstance(param, dict):
        raise ValueError(f"{fn}: {param_name} must be a dict, got {type(param).__name__}")
    unknown = set(param) - set(allowed)
    if unknown:
        raise ValueError(
            f"{fn}: unknown {param_name} key(s) {sorted(unknown)}; accepted: {sorted(allowed)}"
        )
    missing = set(required) - set(param)
    if missing:
        raise ValueError(f"{fn}: {param_name} is missing required key(s) {sorted(missing)}")


def mode(fn: str, param_name: str, param: dict) -> str:
    m = param.get("mode")
    if m not in ("train", "test"):
        raise ValueError(f"{fn}: {param_name}['mode'] must be 'train' or 'test', got {m!r}")
    return m
