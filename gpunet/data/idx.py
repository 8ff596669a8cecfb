"""The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout: magic ``00 00 TT DD`` (``TT`` the element type code, ``DD`` the number of
dimensions), then ``DD`` big-endian uint32 sizes, then the elements, big-endian, in
C order. Gzip is recognised by its magic bytes ``1f 8b``, not by the file name.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import IDXFormatError

#: IDX type code -> (big-endian dtype as stored, name)
IDX_DTYPES = {
    0x08: (np.dtype(">u1"), "uint8"),
    0x09: (np.dtype(">i1"), "int8"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
_CODES = ", ".join(f"0x{c:02X} ({name})" for c, (_, name) in IDX_DTYPES.items())
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip or raw), native byte order, e.g.
    uint8 (60000, 28, 28) for ``train-images-idx3-ubyte.gz``. Raises
    :class:`IDXFormatError` naming the file and what is wrong."""
    path = Path(path)
    data = path.read_bytes()
    where = str(path)
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXFormatError(
                f"{path}: the file starts with the gzip magic bytes 1f 8b but does not "
                f"decompress ({type(exc).__name__}: {exc}); it is truncated or corrupt, "
                "download or install it again"
            ) from None
        where = f"{path} (after gzip decompression)"
    return parse_idx(data, where)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file; ``name`` is used in errors."""
    n = len(data)
    if n < 4:
        raise IDXFormatError(
            f"{name}: {n} bytes is shorter than the 4-byte IDX header (00 00 type ndim); "
            "the file is empty or truncated"
        )
    if data[:2] != b"\x00\x00":
        raise IDXFormatError(
            f"{name}: not an IDX file: expected the magic number to start with bytes 00 00, "
            f"found {data[0]:02x} {data[1]:02x}; pass an IDX file such as "
            "train-images-idx3-ubyte[.gz]"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise IDXFormatError(
            f"{name}: unknown IDX element type code 0x{code:02X} (byte 3 of the header); "
            f"expected one of {_CODES}"
        )
    if ndim == 0:
        raise IDXFormatError(f"{name}: the header declares 0 dimensions; expected 1 or more")
    header = 4 + 4 * ndim
    if n < header:
        raise IDXFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header} header bytes, the "
            f"file has {n} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype, tname = IDX_DTYPES[code]
    body = math.prod(dims) * dtype.itemsize
    if n != header + body:
        problem = "truncated" if n < header + body else f"{n - header - body} trailing bytes"
        raise IDXFormatError(
            f"{name}: size mismatch ({problem}): the header declares shape {dims} of {tname} "
            f"= {header} + {body} = {header + body} bytes, but the file has {n} bytes; "
            "download or install it again"
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` (a dtype listed in :data:`IDX_DTYPES`) as an IDX file; gzip it
    when ``compress`` (default: when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    for code, (dtype, _) in IDX_DTYPES.items():
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
