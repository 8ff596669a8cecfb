"""Errors raised by :mod:`gpunet.data`; each message says what was expected, what was
found, and how to fix it. :func:`describe` names a value from a file without printing
it (no deep or huge repr of untrusted data)."""

from __future__ import annotations

import pickle

import numpy as np


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where gpunet looked; the message lists every place
    searched and how to install or point to the data."""


class DataFormatError(ValueError):
    """A data file exists but its content is not what the format promises."""


class IDXFormatError(DataFormatError):
    """An IDX file (MNIST / Fashion-MNIST) has a bad header, type code or size."""


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle asked for something outside what :func:`gpunet.data.safe_load_pickle`
    allows (a global off the allow-list, a forbidden opcode, an array beyond a CIFAR
    batch, a structure too deep or too large); nothing from it was run."""


def describe(value) -> str:
    """A short description of ``value`` for an error message: its type and size, or a
    short repr of a small scalar; never the repr of a container."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
    if isinstance(value, (float, str, bytes)) and len(text := repr(value)) <= 40:
        return f"{type(value).__name__} {text}"
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"
