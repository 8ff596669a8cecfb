"""Many arrays as one flat contiguous buffer per dtype, and back in place.

A collective over a list of arrays (all gradients of a step, all parameters) becomes one
MPI/NCCL call per dtype on a buffer that is allocated once and reused: ``pack`` copies
each array into its slice of the buffer, the collective runs on the buffer, ``unpack``
copies each slice back into the array it came from (a new array only when the original
cannot be written: a read-only NumPy array or a scalar).

Arrays are grouped by *place* (``"host"``: NumPy, and array_api_strict arrays copied
through NumPy; ``"cupy"``: device arrays, packed on the device) and by *wire dtype*
(the dtype itself, except float16, which travels as float32 because not every MPI can
reduce half precision; the round trip float16 -> float32 -> float16 of a sum is exact
up to the final rounding to float16).
"""

from __future__ import annotations

from numbers import Number

import numpy as np

from ..backend.namespace import backend_of, from_host, to_numpy

__all__ = ["BufferPool", "Group", "group_arrays", "pack", "unpack", "wire_dtype"]

_KINDS = {"f": "floating", "c": "complex", "i": "signed integer", "u": "unsigned integer",
          "b": "bool"}


def wire_dtype(dtype) -> np.dtype:
    """The dtype an array of ``dtype`` travels as (float16 -> float32, else itself)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _KINDS:
        raise TypeError(f"cannot communicate arrays of dtype {dtype}; expected a numeric or "
                        "bool dtype")
    return np.dtype(np.float32) if dtype == np.float16 else dtype.newbyteorder("=")


class Group:
    """Arrays of one place and wire dtype: their positions in the list, shapes, offsets."""

    def __init__(self, place: str, dtype: np.dtype):
        self.place, self.dtype = place, dtype
        self.index: list[int] = []
        self.shapes: list[tuple] = []
        self.offsets: list[int] = [0]

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def add(self, i: int, shape: tuple) -> None:
        self.index.append(i)
        self.shapes.append(shape)
        self.offsets.append(self.offsets[-1] + int(np.prod(shape, dtype=np.int64)))


def _place(a) -> str:
    return "cupy" if backend_of(a) == "cupy" else "host"  # numpy, strict (via NumPy), scalars


def host_dtype(a) -> np.dtype:
    """The NumPy dtype of a NumPy, CuPy or array_api_strict array."""
    return np.dtype(str(a.dtype).rsplit(".", 1)[-1])


def group_arrays(arrays, op: str):
    """``(arrays, groups)``: ``arrays`` as a list with numbers made 0-d NumPy arrays, and
    their groups by place and wire dtype in order of first appearance. ``op`` names the
    collective in error messages."""
    out = []
    groups: dict[tuple, Group] = {}
    for i, a in enumerate(arrays):
        if isinstance(a, (Number, np.generic)) and not isinstance(a, (bool, np.bool_)):
            a = np.asarray(a)
        else:
            try:
                ok = backend_of(a) is not None
            except TypeError:
                ok = False
            if not ok:
                raise TypeError(f"{op}: item {i} is a {type(a).__name__}; expected arrays "
                                "(NumPy, CuPy or array_api_strict) or numbers")
        key = (_place(a), wire_dtype(host_dtype(a)))
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(*key)
        g.add(i, tuple(int(s) for s in a.shape))
        out.append(a)
    return out, list(groups.values())


class BufferPool:
    """Flat buffers kept across calls, one per (namespace, dtype), grown when too small."""

    def __init__(self):
        self._buffers: dict = {}

    def get(self, xp, dtype: np.dtype, n: int):
        """A contiguous 1-d buffer of ``n`` elements of ``dtype`` in namespace ``xp``."""
        key = (xp.__name__, np.dtype(dtype).str)
        buf = self._buffers.get(key)
        if buf is None or buf.shape[0] < n:
            buf = xp.empty(max(n, 1), dtype=dtype)
            self._buffers[key] = buf
        return buf[:n]


def pack(group: Group, arrays: list, buf) -> None:
    """Copy the group's arrays into the flat ``buf`` (host NumPy or CuPy, one dtype)."""
    for i, shape, lo, hi in zip(group.index, group.shapes, group.offsets, group.offsets[1:]):
        a = arrays[i]
        if backend_of(a) == "strict":
            a = to_numpy(a)
        buf[lo:hi].reshape(shape)[...] = a


def unpack(group: Group, arrays: list, buf) -> None:
    """Copy the slices of ``buf`` back into the group's arrays, in place when they can be
    written; an array that cannot (read-only NumPy) is replaced in ``arrays`` by a copy."""
    for i, shape, lo, hi in zip(group.index, group.shapes, group.offsets, group.offsets[1:]):
        a = arrays[i]
        part = buf[lo:hi].reshape(shape)
        b = backend_of(a)
        if b == "strict":
            a[...] = from_host(part.astype(host_dtype(a)), a)  # astype copies: no alias
        elif b == "cupy" or a.flags.writeable:
            a[...] = part
        else:  # never hand out a view of the reused buffer
            arrays[i] = part.astype(a.dtype, copy=True)
