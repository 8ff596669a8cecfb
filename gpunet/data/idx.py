"""The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout: magic ``00 00 TT DD`` (``TT`` the element type code, ``DD`` the number of
dimensions), then ``DD`` big-endian uint32 sizes, then the elements, big-endian, in
C order. Gzip is recognised by its magic bytes ``1f 8b``, not by the file name. Reading
allocates what the header declares (up to a limit) and never more.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .._validate import integer
from .errors import IDXFormatError
from .locate import as_path

#: IDX type code -> (big-endian dtype as stored, name)
IDX_DTYPES: dict[int, tuple[np.dtype, str]] = {
    0x08: (np.dtype(">u1"), "uint8"),
    0x09: (np.dtype(">i1"), "int8"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
_CODES = ", ".join(f"0x{c:02X} ({name})" for c, (_, name) in IDX_DTYPES.items())
GZIP_MAGIC = b"\x1f\x8b"
#: Default limit of read_idx: above the largest IDX dataset (EMNIST ByClass, 547 MB).
MAX_IDX_BYTES = 2**30
_CHUNK = 2**20  # bytes decompressed per read
_MAX_NDIM = 64  # NumPy's limit


def read_idx(path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip or raw), native byte order, e.g.
    uint8 (60000, 28, 28) for ``train-images-idx3-ubyte.gz``.

    The body is streamed into one array of the size the header declares (refused above
    ``max_bytes``); nothing beyond it is decompressed and nothing is copied. Raises
    :class:`IDXFormatError` naming the file and what is wrong.
    """
    path = as_path("path", path, "read_idx")
    integer("max_bytes", max_bytes, low=0, fn="read_idx")
    with open(path, "rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            raw.seek(0)
            return _read(raw, str(path), os.fstat(raw.fileno()).st_size, max_bytes)
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) as f:
                return _read(f, f"{path} (after gzip decompression)", None, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(
                f"{path}: the file starts with the gzip magic bytes 1f 8b but does not "
                f"decompress ({type(exc).__name__}: {exc}); it is truncated or corrupt, "
                "download or install it again"
            ) from None


def _read(f, name: str, size: int | None, max_bytes: int) -> np.ndarray:
    """Decode the IDX stream ``f``; ``size`` is its length when known (raw files), None
    for a decompressing stream; ``name`` is used in errors."""
    head = f.read(4)
    n = len(head)
    if n < 4:
        raise IDXFormatError(
            f"{name}: {n} bytes is shorter than the 4-byte IDX header (00 00 type ndim); "
            "the file is empty or truncated"
        )
    if head[:2] != b"\x00\x00":
        raise IDXFormatError(
            f"{name}: not an IDX file: expected the magic number to start with bytes 00 00, "
            f"found {head[0]:02x} {head[1]:02x}; pass an IDX file such as "
            "train-images-idx3-ubyte[.gz]"
        )
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise IDXFormatError(
            f"{name}: unknown IDX element type code 0x{code:02X} (byte 3 of the header); "
            f"expected one of {_CODES}"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise IDXFormatError(
            f"{name}: the header declares {ndim} dimensions; expected 1 to {_MAX_NDIM}"
        )
    header = 4 + 4 * ndim
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise IDXFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header} header bytes, the "
            f"file has {4 + len(sizes)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", sizes)
    dtype, tname = IDX_DTYPES[code]
    body = math.prod(dims) * dtype.itemsize
    declared = f"the header declares shape {dims} of {tname} = {header} + {body} = {header + body} bytes"
    if size is not None and size != header + body:
        problem = "truncated" if size < header + body else f"{size - header - body} trailing bytes"
        raise IDXFormatError(
            f"{name}: size mismatch ({problem}): {declared}, but the file has {size} bytes; "
            "download or install it again"
        )
    span = math.prod(max(d, 1) for d in dims) * dtype.itemsize  # what NumPy must address
    if span > max_bytes:
        raise IDXFormatError(
            f"{name}: the header declares shape {dims} of {tname} ({span} bytes), more than "
            f"the limit of max_bytes={max_bytes}; if the file is genuine, call "
            "read_idx(path, max_bytes=...) with a larger limit"
        )
    out = np.empty(dims, dtype=dtype.newbyteorder("="))
    view = out.reshape(-1).view(np.uint8).data  # a memoryview of out's bytes
    got = 0
    while got < body and (k := f.readinto(view[got : got + _CHUNK])):
        got += k
    if got < body:
        raise IDXFormatError(
            f"{name}: size mismatch (truncated): {declared}, but the file has {header + got} "
            "bytes; download or install it again"
        )
    if size is None and f.read(1):
        raise IDXFormatError(
            f"{name}: size mismatch (trailing bytes): {declared}, but the data goes on; "
            "download or install it again"
        )
    if not dtype.isnative and dtype.itemsize > 1:
        out.byteswap(inplace=True)  # stored big-endian, now in native order, in place
    return out


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` (a dtype listed in :data:`IDX_DTYPES`) as an IDX file; gzip it
    when ``compress`` (default: when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    for code, (dtype, _) in IDX_DTYPES.items():  # noqa: B007 (code is used after the loop)
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            break
    else:
        raise TypeError(
            f"IDX cannot store dtype {array.dtype}; use one of "
            + ", ".join(name for _, name in IDX_DTYPES.values())
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got an array of shape {array.shape}")
    blob = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=dtype).tobytes()
    )
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(blob, mtime=0) if compress else blob)
