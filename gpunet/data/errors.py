"""Errors raised by :mod:`gpunet.data`; each message says what was expected, what was
found, and how to fix it."""

from __future__ import annotations

import pickle


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where gpunet looked; the message lists every place
    searched and how to install or point to the data."""


class DataFormatError(ValueError):
    """A data file exists but its content is not what the format promises."""


class IDXFormatError(DataFormatError):
    """An IDX file (MNIST / Fashion-MNIST) has a bad header, type code or size."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global (class or function) outside the small allow-list of
    :class:`gpunet.data.cifar.RestrictedUnpickler`; nothing was called."""
