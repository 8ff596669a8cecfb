"""Hostile inputs for gpunet.data: generated bad files, pickles, arguments and settings,
each run through the function that reads it; prints how each ended.

    python scripts/hostile_data.py [--examples 150] [--seed 0]

Each family draws inputs with hypothesis and classifies every call:

- ``ok``: a result, for an input the family's oracle (an independent parse or rule)
  calls valid, equal to the oracle's result;
- ``refused (Type)``: one of the documented errors (DataFormatError and its subclasses
  IDXFormatError/UnsafePickleError, DatasetNotFoundError, ArgumentError) for an input
  the oracle calls invalid;
- ``WRONG ...``: a valid input refused, an invalid one accepted, or a result that differs
  from the oracle's;
- ``UNDOCUMENTED (Type)``: any other exception (a traceback a user would see).

The bombs (decompression and pickle bombs, hangs) run in one subprocess, in order, each
reporting its time and the growth of the process's peak RSS (``resource``): ``bounded``
or ``UNBOUNDED``. tests/test_data_hostile.py runs the same families and bombs.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpunet._validate import ArgumentError  # noqa: E402 (after the sys.path line)
from gpunet.data import (  # noqa: E402
    DataFormatError,
    DatasetNotFoundError,
    load_cifar_batch,
    load_dataset,
    read_idx,
    safe_load_pickle,
    split_indices,
)

DOCUMENTED = (DataFormatError, DatasetNotFoundError, ArgumentError)


class Invalid(Exception):
    """Raised by an oracle for an input that must be refused."""


NO_ORACLE = object()


def outcome(run, oracle, value) -> str:
    """How ``run(value)`` ended, judged by ``oracle(value)`` (the expected result, or
    :class:`Invalid`; ``None`` as oracle: any result is accepted)."""
    try:
        expected = NO_ORACLE if oracle is None else oracle(value)
    except Invalid:
        expected = Invalid
    try:
        got = run(value)
    except DOCUMENTED as exc:
        if expected is Invalid or expected is NO_ORACLE:
            return f"refused ({type(exc).__name__})"
        return f"WRONG: refused a valid input ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001 - the point is to catch everything else
        return f"UNDOCUMENTED ({type(exc).__name__}: {str(exc)[:80]})"
    if expected is Invalid:
        return "WRONG: accepted an invalid input"
    if expected is not NO_ORACLE and not same(got, expected):
        return "WRONG: result differs from the oracle"
    return "ok"


def same(a, b) -> bool:
    """Deep equality of results (arrays by dtype, shape and values; NaN equals NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        nan_ok = a.dtype.kind in "fc"  # array_equal's equal_nan refuses other dtypes
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=nan_ok)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and (a == b or (isinstance(a, float) and a != a and b != b))


# --- IDX files -------------------------------------------------------------------------------

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
LIMIT = 2**30  # read_idx's default max_bytes


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_TYPES[code]).tobytes()


def reference_idx(blob: bytes) -> np.ndarray:
    """An independent IDX parse of a small file (whole-buffer, no streaming)."""
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except Exception:  # noqa: BLE001
            raise Invalid from None
    if len(blob) < 4 or blob[:2] != b"\0\0" or blob[2] not in IDX_TYPES or not 1 <= blob[3] <= 64:
        raise Invalid
    ndim = blob[3]
    if len(blob) < 4 + 4 * ndim:
        raise Invalid
    dims = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_TYPES[blob[2]])
    if math.prod(max(d, 1) for d in dims) * dtype.itemsize > LIMIT:
        raise Invalid
    if len(blob) != 4 + 4 * ndim + math.prod(dims) * dtype.itemsize:
        raise Invalid
    return np.frombuffer(blob, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx_bytes(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f-idx3-ubyte"
        path.write_bytes(blob)
        return read_idx(path)


@st.composite
def mutated_idx(draw):
    """A valid small IDX file with a few header/body edits, maybe gzipped or cut."""
    code = draw(st.sampled_from(sorted(IDX_TYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    blob = bytearray(idx_bytes(np.arange(math.prod(shape)).reshape(shape) % 100, code))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["byte", "dim", "cut", "append"]))
        if kind == "byte" and blob:
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
        elif kind == "dim" and len(blob) >= 8:
            at = 4 + 4 * draw(st.integers(0, max(0, min(blob[3], (len(blob) - 8) // 4))))
            huge = draw(st.sampled_from([0, 1, 2**16, 2**31, 2**32 - 1]))
            blob[at : at + 4] = struct.pack(">I", huge)
        elif kind == "cut":
            del blob[draw(st.integers(0, len(blob))) :]
        else:
            blob += draw(st.binary(min_size=1, max_size=8))
    blob = bytes(blob)
    if draw(st.booleans()):
        blob = gzip.compress(blob, mtime=0)
        if draw(st.booleans()):  # damage the compressed stream
            cut = draw(st.integers(0, len(blob)))
            blob = blob[:cut] + draw(st.binary(max_size=4))
    return blob


# --- pickles -----------------------------------------------------------------------------------

PROTOCOLS = st.integers(0, 5)


def cifar_batch_reference(obj):
    """What load_cifar_batch must return for the pickled ``obj`` (built here, so trusted),
    by the format's rules, written independently of gpunet's checks."""
    _no_unsafe(obj, 0)
    if not isinstance(obj, dict):
        raise Invalid
    keys = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = keys.get("data"), keys.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        raise Invalid
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not (isinstance(labels, (list, tuple)) and len(labels) == len(data)
            and all(type(v) is int and 0 <= v <= 9 for v in labels)):
        raise Invalid
    return data.reshape(-1, 3, 32, 32), np.array(labels, dtype=np.int64)


def _no_unsafe(obj, depth):
    """Invalid if ``obj`` holds anything the safe unpickler must refuse."""
    if depth > 32:
        raise Invalid
    if isinstance(obj, np.ndarray):
        if obj.dtype.str[1:] not in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8") \
                or not 1 <= obj.ndim <= 2:
            raise Invalid
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _no_unsafe(v, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, bytes, int, float, bool, type(None))):
                raise Invalid
            _no_unsafe(v, depth + 1)
    elif type(obj) not in (str, bytes, int, float, bool, type(None)):
        raise Invalid  # sets, NumPy scalars, anything else


LABELS = st.one_of(
    st.lists(st.integers(0, 9), min_size=2, max_size=2),
    st.lists(st.integers(-3, 12), min_size=2, max_size=2),
    st.lists(st.sampled_from([1.7, 2.0, "1", b"2", True, None, 2**70, -(2**70), [1], (2,),
                              np.int64(3), np.float64(1.0)]), min_size=2, max_size=2),
    st.lists(st.integers(0, 9), min_size=0, max_size=4),
    st.sampled_from([np.array([1, 2]), np.array([1.0, 2.0]), np.array([[1, 2]]),
                     np.array([1, 2], dtype=">i2"), np.array([3, 4], dtype=np.uint64),
                     np.array(["1", "2"]), np.array([True, False]), "12", b"\x01\x02", None, 7,
                     {1, 2}, {"a": 1}]),
)
DATA = st.sampled_from([
    np.zeros((2, 3072), np.uint8), np.full((2, 3072), 255, np.uint8),
    np.zeros((2, 100), np.uint8), np.zeros((2, 3072), np.float32), np.zeros((2, 3072), np.int64),
    np.zeros((2, 3, 32, 32), np.uint8), np.zeros(6144, np.uint8),
    np.asfortranarray(np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)),
    np.zeros((2, 3072), np.uint8).tolist(), b"\0" * 6144, None,
])


@st.composite
def cifar_batches(draw):
    """A CIFAR-like batch dict with wrong or odd parts, pickled with any protocol."""
    batch = {}
    for name, part in (("data", DATA), ("labels", LABELS),
                       ("filenames", st.just([b"a.png", b"b.png"])),
                       ("batch_label", st.sampled_from([b"training batch 1 of 5", "x", 3]))):
        if draw(st.integers(0, 9)):  # sometimes a key is missing
            key = draw(st.sampled_from([name, name.encode(), name.upper()]))
            batch[key] = draw(part)
    extra = draw(st.sampled_from([None, (1, 2), {1, 2}, frozenset(), 1.5, [[[]]], {(1,): 2}]))
    if extra is not None:
        batch["extra"] = extra
    obj = batch if draw(st.integers(0, 9)) else draw(st.sampled_from([[batch], (batch,), "batch"]))
    return obj, draw(PROTOCOLS)


def load_batch_bytes(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data_batch_1"
        path.write_bytes(blob)
        return load_cifar_batch(path)


GLOBALS = [
    "numpy.core.multiarray\n_reconstruct", "numpy._core.multiarray\n_reconstruct", "numpy\nndarray",
    "numpy\ndtype", "numpy._core.numeric\n_frombuffer", "_codecs\nencode", "os\nsystem",
    "posix\nsystem", "builtins\neval", "builtins\ngetattr", "builtins\nset", "subprocess\nPopen",
    "numpy\nload", "numpy.core.multiarray\nscalar", "copyreg\n_reconstructor", "gpunet.data\nread_idx",
    "__builtin__\nopen", "numpy\nfrombuffer", "pickle\nloads", "sys\nexit",
]

# Opcodes, in and out of the allow-list, for random programs: those without an argument
# as pickle's own constants, those with one as an encoder drawing it.
_NO_ARG = (
    "MARK", "STOP", "POP", "POP_MARK", "DUP", "NONE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE",
    "EMPTY_SET", "FROZENSET", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "TUPLE", "TUPLE2",
    "LIST", "DICT", "MEMOIZE", "REDUCE", "BUILD", "NEWOBJ", "NEXT_BUFFER", "STACK_GLOBAL",
)
_OPS = {name: getattr(pickle, name) for name in _NO_ARG}
_OPS.update({
    "PROTO": lambda d: b"\x80" + bytes([d(st.integers(0, 5))]),
    "BININT1": lambda d: b"K" + bytes([d(st.integers(0, 255))]),
    "BININT": lambda d: b"J" + struct.pack("<i", d(st.integers(-(2**31), 2**31 - 1))),
    "LONG4": lambda d: b"\x8b" + struct.pack("<i", d(st.sampled_from([1, 8, 2**31 - 1]))) + b"\x01",
    "BINFLOAT": lambda d: b"G" + struct.pack(">d", d(st.floats())),
    "SHORT_BINUNICODE": lambda d: b"\x8c\x03abc",
    "BINUNICODE8": lambda d: b"\x8d" + struct.pack("<Q", d(st.sampled_from([2, 2**62]))) + b"ab",
    "BINBYTES8": lambda d: b"\x8e" + struct.pack("<Q", d(st.sampled_from([1, 2**40]))) + b"x",
    "BYTEARRAY8": lambda d: b"\x96" + struct.pack("<Q", 2) + b"xy",
    "BINPUT": lambda d: b"q" + bytes([d(st.integers(0, 3))]),
    "LONG_BINPUT": lambda d: b"r" + struct.pack("<I", d(st.sampled_from([0, 1, 2**20, 2**31]))),
    "BINGET": lambda d: b"h" + bytes([d(st.integers(0, 3))]),
    "EXT1": lambda d: b"\x82" + bytes([d(st.integers(1, 255))]),
    "PERSID": lambda d: b"P1\n",
    "INST": lambda d: b"ibuiltins\nlist\n",
    "FRAME": lambda d: b"\x95" + struct.pack("<Q", d(st.sampled_from([0, 4, 2**40]))),
    "GLOBAL": lambda d: b"c" + d(st.sampled_from(GLOBALS)).encode() + b"\n",
})


@st.composite
def opcode_programs(draw):
    """A random sequence of pickle opcodes (allowed and forbidden), usually ending in STOP."""
    names = draw(st.lists(st.sampled_from(sorted(_OPS)), min_size=1, max_size=24))
    ops = (_OPS[n] for n in names)
    blob = b"\x80\x02" + b"".join(op if isinstance(op, bytes) else op(draw) for op in ops)
    return blob + (b"." if draw(st.integers(0, 4)) else b"")


@st.composite
def global_calls(draw):
    """GLOBAL (or STACK_GLOBAL) of a listed or random name, then REDUCE/BUILD with args."""
    target = draw(st.one_of(st.sampled_from(GLOBALS),
                            st.tuples(st.text(max_size=12), st.text(max_size=12)).map("\n".join)))
    module, _, name = target.partition("\n")
    if draw(st.booleans()):
        head = b"c" + module.encode("utf-8", "replace") + b"\n" + name.encode("utf-8", "replace") + b"\n"
    else:
        head = b"".join(b"X" + struct.pack("<I", len(s.encode())) + s.encode() for s in (module, name))
        head += b"\x93"
    args = draw(st.sampled_from([b")", b"K\x01\x85", b"X\x01\x00\x00\x00a\x85",
                                 b"X\x03\x00\x00\x00abcX\x06\x00\x00\x00latin1\x86",
                                 b"X\x02\x00\x00\x00O8\x85", b"X\x02\x00\x00\x00u1\x85",
                                 b"]\x85", b"J\x00\x00\x00\x08\x85"]))
    tail = draw(st.sampled_from([b"R.", b"R}b.", b"N}X\x0c\x00\x00\x00__defaults__K\x01s\x86b.", b"."]))
    return b"\x80\x04" + head + args + tail


def run_cifar_batch(value):
    obj, protocol = value
    return load_batch_bytes(pickle.dumps(obj, protocol=protocol))


def cifar_family_reference(value):
    return cifar_batch_reference(value[0])


# --- arguments -------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-5, 2000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([np.float32(0.2), np.float64(0.5), np.int64(100), np.int32(-1), np.uint8(7),
                     np.bool_(True), True, False, None, "0.1", b"1", [0.1], 2**70, 0.999999]),
)
KWARGS = st.dictionaries(
    st.sampled_from(["val", "test", "seed", "stratify", "normalize", "flatten", "shuffle",
                     "batch_size", "path", "Val", ""]),
    st.one_of(NUMBERS, st.sampled_from([True, False, np.bool_(False), "yes", 0, 1])),
    max_size=4,
)
SIZES = {"digits": (1797, 10), "breast-cancer": (569, 2)}
ACCEPTED = {"val", "test", "seed", "stratify", "normalize", "flatten"}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _count(v, n):
    """The sample count of a split size by the documented rule, else Invalid."""
    if _is_int(v):
        if 0 <= v < max(n, 1):
            return int(v)
    elif isinstance(v, (float, np.floating)) and math.isfinite(v) and 0 <= v < 1:
        return round(float(v) * n)
    raise Invalid


def split_reference(kwargs, n, classes):
    """(train, val, test) sizes for split options ``kwargs`` of ``n`` samples, else Invalid."""
    val, test = _count(kwargs.get("val", 0.1), n), _count(kwargs.get("test", 0.2), n)
    s = kwargs.get("seed", 0)
    if not (s is None or (_is_int(s) and s >= 0)):
        raise Invalid
    if any(not isinstance(kwargs.get(k, True), (bool, np.bool_))
           for k in ("stratify", "normalize", "flatten")):
        raise Invalid
    if n - val - test < classes:
        raise Invalid
    return n - val - test, val, test


@st.composite
def dataset_calls(draw):
    name = draw(st.one_of(st.sampled_from(["digits", "Breast_Cancer", "digit", "cifar-10"]),
                          st.text(max_size=8), st.sampled_from([None, 3, b"digits"])))
    return name, draw(KWARGS)


def run_dataset_call(value):
    name, kwargs = value
    ds = load_dataset(name, **kwargs)
    return len(ds.y_train), len(ds.y_val), len(ds.y_test)


def dataset_reference(value):
    name, kwargs = value
    if not isinstance(name, str):
        raise Invalid
    key = name.strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key in ("fashion-mnist", "mnist", "cifar10"):
        return NO_ORACLE  # on disk: loads if installed, else DatasetNotFoundError
    options = dict(kwargs)
    if key not in SIZES or options.pop("path", None) is not None or set(options) - ACCEPTED:
        raise Invalid
    return split_reference(options, *SIZES[key])


@st.composite
def split_calls(draw):
    y = draw(st.one_of(st.integers(-2, 30), st.lists(st.integers(0, 3), max_size=30),
                       st.sampled_from([True, 2.5, "abc", [[1, 2]]])))
    return y, draw(KWARGS.filter(lambda k: "path" not in k))


def run_split_call(value):
    y, kwargs = value
    options = {k: v for k, v in kwargs.items() if k in ("val", "test", "seed", "stratify")}
    return tuple(len(part) for part in split_indices(y, **options))


def split_call_reference(value):
    y, kwargs = value
    options = {k: v for k, v in kwargs.items() if k in ("val", "test", "seed", "stratify")}
    options.setdefault("test", 0.0)
    if isinstance(y, bool):
        raise Invalid
    if _is_int(y):
        if y < 0:
            raise Invalid
        n, classes = int(y), 1
    elif isinstance(y, list) and all(_is_int(v) for v in y):  # (bool: refused below)
        n, classes = len(y), max(len(set(y)), 1)
    else:
        return NO_ORACLE  # floats or strings as labels: no rule to check
    return split_reference(options, n, classes)


# --- environment -----------------------------------------------------------------------------


def environment_cases(tmp: Path):
    """(label, GPUNET_DATA value, loader name): settings a user might have."""
    (tmp / "file").write_text("x")
    (tmp / "empty").mkdir(exist_ok=True)
    values = [str(tmp / "nonexistent"), str(tmp / "file"), str(tmp / "empty"), "", "~/nope",
              "relative/dir", str(tmp / "empty") + "/", " "]
    return [(v, name) for v in values for name in ("fashion-mnist", "mnist", "cifar10")]


def run_environment_case(case):
    value, name = case
    old = os.environ.get("GPUNET_DATA")
    os.environ["GPUNET_DATA"] = value
    try:
        return load_dataset(name)
    finally:
        if old is None:
            del os.environ["GPUNET_DATA"]
        else:
            os.environ["GPUNET_DATA"] = old


# --- the families ----------------------------------------------------------------------------

#: name -> (strategy, run, oracle)
FAMILIES = {
    "idx: random bytes": (st.binary(max_size=64), read_idx_bytes, reference_idx),
    "idx: edited headers, cuts, gzip damage": (mutated_idx(), read_idx_bytes, reference_idx),
    "pickle: random bytes": (st.binary(max_size=64), safe_load_pickle, None),
    "pickle: random opcode programs": (opcode_programs(), safe_load_pickle, None),
    "pickle: globals, REDUCE and BUILD": (global_calls(), safe_load_pickle, None),
    "cifar batch: wrong keys, data and labels": (cifar_batches(), run_cifar_batch,
                                                 cifar_family_reference),
    "load_dataset: names and keywords": (dataset_calls(), run_dataset_call, dataset_reference),
    "split_indices: labels and sizes": (split_calls(), run_split_call, split_call_reference),
}


#: Python source that runs the bombs (all, or those named in argv) in order and prints one
#: JSON line per bomb: its result, time and peak-RSS growth against what is allowed.
BOMBS = r'''
import gzip, json, os, pickle, resource, struct, sys, tempfile, time
from pathlib import Path
from gpunet.data import read_idx, safe_load_pickle

tmp = Path(tempfile.mkdtemp())

def gz_idx(path, dims, body_bytes):
    """A gzip IDX file of zeros declaring ``dims`` (uint8) and holding body_bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as f:
        f.write(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        chunk = bytes(2**22)
        left = body_bytes
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
    return path

def nested(levels):
    x = []
    for _ in range(levels):
        x = [x, x]
    return pickle.dumps(x)

M = 2**61 - 1
def long1(v):
    b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b

def raw(path, blob):
    path.write_bytes(blob)
    return path

def reconstruct(shape, typecode):
    """numpy's _reconstruct(ndarray, shape, typecode) as a pickle."""
    return (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + shape + b"\x85"
            + typecode + b"\x87R.")

MB = 2**20
DTYPE_U1 = b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x85R"
BOMBS = [
    # name, expected result, declared size in MB (bounds the memory), call
    ("pickle: 40 levels of shared lists (254 bytes)", "UnsafePickleError", 0,
     lambda: safe_load_pickle(nested(40))),
    ("pickle: 30 levels of shared lists", "ok", 0, lambda: safe_load_pickle(nested(30))),
    ("pickle: memo index 2**28 (9 bytes)", "UnsafePickleError", 0,
     lambda: safe_load_pickle(b"\x80\x02Nr" + struct.pack("<I", 2**28) + b".")),
    ("pickle: _reconstruct of 2**27 objects (typecode 'O')", "UnsafePickleError", 0,
     lambda: safe_load_pickle(reconstruct(b"J\x00\x00\x00\x08", b"X\x01\x00\x00\x00O"))),
    ("pickle: _reconstruct of 2**27 objects (dtype O8)", "UnsafePickleError", 0,
     lambda: safe_load_pickle(reconstruct(b"J\x00\x00\x00\x08", b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x85R"))),
    ("pickle: _reconstruct of 2**40 uint8", "UnsafePickleError", 0,
     lambda: safe_load_pickle(reconstruct(b"\x8a\x06" + (2**40).to_bytes(6, "little"), DTYPE_U1))),
    ("pickle: BUILD state of 2**31 uint8 without data", "UnsafePickleError", 0,
     lambda: safe_load_pickle(reconstruct(b"K\x00", b"C\x01b")[:-1] + b"(K\x01\x8a\x05"
                              + (2**31).to_bytes(5, "little") + b"\x85" + DTYPE_U1 + b"\x89C\x00tb.")),
    ("pickle: 1 MB string latin1-encoded 1000 times", "UnsafePickleError", 1,
     lambda: safe_load_pickle(b"\x80\x02c_codecs\nencode\nq\x00X" + struct.pack("<I", MB) + b"a" * MB
                              + b"q\x01(" + b"h\x00h\x01X\x06\x00\x00\x00latin1\x86R" * 1000 + b"l.")),
    ("pickle: 50000 dict keys with one hash", "UnsafePickleError", 0, lambda: safe_load_pickle(
        b"\x80\x02}(" + b"".join(long1(k * M) + b"N" for k in range(1, 50000)) + b"u.")),
    ("pickle: BINBYTES8 declaring 2**40 bytes", "DataFormatError", 0,
     lambda: safe_load_pickle(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x.")),
    ("pickle: FRAME declaring 2**40 bytes", "DataFormatError", 0,
     lambda: safe_load_pickle(b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"N.")),
    ("idx: raw header declaring (2**32-1, 2**32-1) uint8 in 12 bytes", "IDXFormatError", 0,
     lambda: read_idx(raw(tmp / "h", b"\0\0\x08\x02" + b"\xff" * 8))),
    ("idx: raw header declaring (0, 2**32-1, 2**32-1) uint8", "IDXFormatError", 0,
     lambda: read_idx(raw(tmp / "z", b"\0\0\x08\x03" + b"\0" * 4 + b"\xff" * 8))),
    ("idx: gzip declaring 2 GiB, holding 2 MiB", "IDXFormatError", 2,
     lambda: read_idx(gz_idx(tmp / "a.gz", (2**31,), 2 * MB))),
    ("idx: gzip declaring 16 MiB, inflating to 256 MiB", "IDXFormatError", 16,
     lambda: read_idx(gz_idx(tmp / "b.gz", (16 * MB,), 256 * MB))),
    ("idx: gzip of 96 MiB zeros, read whole", "ok", 96,
     lambda: read_idx(gz_idx(tmp / "c.gz", (96 * MB,), 96 * MB)).shape),
]
print(json.dumps([b[0] for b in BOMBS]), flush=True)
for name, expect, size, call in BOMBS:
    if sys.argv[1:] and name not in sys.argv[1:]:
        continue
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        call()
        result = "ok"
    except Exception as exc:
        result = type(exc).__name__
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"name": name, "result": result, "expect": expect,
                      "seconds": time.perf_counter() - t, "rss_growth_mb": growth,
                      "allowed_mb": 1.25 * size + 32}), flush=True)
'''


def run_bombs(names=(), timeout: float = 300.0) -> tuple[list[str], list[dict]]:
    """Run the bombs (all, or those in ``names``) in order in one subprocess: the names
    of all bombs and one result row per bomb run; a hang or crash ends the rows with one
    naming the bomb after the last one reported. Once a bomb exceeds its allowance, the
    peak RSS of later bombs in the same process is hidden: run one per process to count.

    Python runs as a grandchild (through ``sh``): Linux carries a parent's peak RSS into
    a child's ``ru_maxrss`` across fork and exec, which would hide the bombs' growth.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = ["/bin/sh", "-c", '"$0" -c "$@"; exit $?', sys.executable, BOMBS, *names]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        failure = proc.returncode and f"crash: {err[-300:]}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and its Python child
        out, _ = proc.communicate()
        failure = f"HANG (no result within {timeout} s)"
    lines = out.splitlines()
    every = json.loads(lines[0]) if lines and lines[0].startswith("[") else []
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    if failure:
        after = rows[-1]["name"] if rows else "the start"
        rows.append({"name": f"the bomb after {after}", "result": failure, "expect": "",
                     "seconds": timeout, "rss_growth_mb": 0, "allowed_mb": 0})
    return every, rows


def bounded(row: dict) -> bool:
    """A bomb ended as expected, within its memory allowance."""
    return row["result"] == row["expect"] and row["rss_growth_mb"] <= row["allowed_mb"]


def count_family(strategy, run, oracle, examples: int, random_seed: int):
    """How ``examples`` inputs drawn from ``strategy`` ended (a Counter of outcomes) and
    the slowest call in seconds."""
    counts: collections.Counter = collections.Counter()
    slowest = 0.0

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def probe(value):
        nonlocal slowest
        t = time.perf_counter()
        counts[outcome(run, oracle, value)] += 1
        slowest = max(slowest, time.perf_counter() - t)

    probe()
    return counts, slowest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=150, help="inputs per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    total: collections.Counter = collections.Counter()
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        families = dict(FAMILIES)
        families["GPUNET_DATA settings"] = (
            st.sampled_from(environment_cases(Path(d))), run_environment_case, None)
        for family, (strategy, run, oracle) in families.items():
            counts, slowest = count_family(strategy, run, oracle, args.examples, args.seed)
            print(f"{family}: {sum(counts.values())} inputs, slowest {slowest:.3f} s")
            for kind, n in sorted(counts.items()):
                print(f"  {n:5d}  {kind}")
                bad += n if kind.startswith(("WRONG", "UNDOCUMENTED")) else 0
            total.update(counts)

    print("bombs (one subprocess each, peak RSS growth):")
    every, _ = run_bombs(["(list only)"])
    for r in (row for name in every for row in run_bombs([name])[1]):
        ok = bounded(r)
        bad += not ok
        total["bomb " + ("bounded" if ok else "UNBOUNDED")] += 1
        print(f"  {'bounded  ' if ok else 'UNBOUNDED'} {r['name']}: {r['result']}, "
              f"{r['seconds']:.2f} s, peak RSS +{r['rss_growth_mb']:.0f} MB "
              f"(allowed {r['allowed_mb']:.0f})")
    n = sum(total.values())
    print(f"total: {n} inputs; {bad} wrong, undocumented or unbounded")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
