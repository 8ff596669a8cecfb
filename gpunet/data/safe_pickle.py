"""Unpickling CIFAR batches without trusting them, in bounded time and memory.

``pickle.load`` can run any code a file asks for, and even without code a few bytes can
make the unpickler allocate gigabytes (a memo index of 2**28, an object array of any
size). :func:`safe_load_pickle` therefore

1. scans the opcodes first, running nothing: only plain data, memo, ``GLOBAL``,
   ``REDUCE`` and ``BUILD`` opcodes; memo indices in sequence; few dict items;
2. unpickles with :class:`RestrictedUnpickler`: a global resolves only if it is on
   :data:`ALLOWED_GLOBALS`, as a checking stand-in that ``BUILD`` cannot change; NumPy
   arrays are built from the file's bytes after their dtype (integers only) and size
   (at most a CIFAR batch) are checked; everything built costs from a budget of twice
   the file size;
3. walks the result once per object (by id), at most :data:`MAX_DEPTH` deep and
   :data:`MAX_OBJECTS` large, keeping only dicts, lists, tuples, str, bytes, numbers,
   bool, None and those arrays.

Anything else raises :class:`~gpunet.data.errors.UnsafePickleError` (a disallowed
request) or :class:`~gpunet.data.errors.DataFormatError` (a damaged file).
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import warnings

import numpy as np

from .errors import DataFormatError, UnsafePickleError, describe
from .locate import as_path

#: Largest pickle read (the CIFAR-100 training batch, the largest, is 155 MB).
MAX_PICKLE_BYTES = 512 * 2**20
#: Largest array: the 50000 x 3072 pixels of the CIFAR-100 training batch.
MAX_ARRAY_ELEMENTS = 50000 * 3072
#: Nesting and size of the unpickled structure (a CIFAR batch: depth 2, ~150k objects).
MAX_DEPTH = 32
MAX_OBJECTS = 1_000_000
#: Dict entries in one pickle (bounds the cost of crafted hash collisions).
MAX_DICT_ITEMS = 1024
#: Element types an array may have: the uint8 pixels and integer labels of a batch.
ARRAY_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8")

#: Opcodes a pickle may use: plain data, containers, stack and memo, GLOBAL/REDUCE/BUILD.
#: Not: EXT1-4 (a registry that bypasses find_class), INST/OBJ/NEWOBJ (instances),
#: PERSID, sets, out-of-band buffers.
_OPCODES = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NONE",
    "NEWTRUE", "NEWFALSE", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "FLOAT", "BINFLOAT", "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE",
    "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "POP", "DUP",
    "MARK", "POP_MARK", "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT",
    "MEMOIZE", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "PROTO", "STOP", "FRAME",
})


def _genops(data: bytes):
    """pickletools.genops, without its DeprecationWarning for bad escapes in a STRING."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield from pickletools.genops(data)


def scan_opcodes(data: bytes) -> None:
    """Refuse a pickle whose opcodes could run code or allocate beyond the file's size,
    before anything is unpickled (a dry run of the stack, nothing is built)."""
    depth, marks, memo, items = 0, [], 0, 0
    try:
        for op, arg, pos in _genops(data):
            name = op.name
            if name not in _OPCODES:
                raise UnsafePickleError(
                    f"opcode {name} at byte {pos} is not allowed (a CIFAR batch holds only "
                    "plain containers, strings, numbers and NumPy arrays)"
                )
            if name == "MARK":
                marks.append(depth)
                continue
            before = op.stack_before
            if pickletools.markobject in before:  # pops everything above the last MARK
                if not marks:
                    raise DataFormatError(f"opcode {name} at byte {pos} has no MARK before it")
                sliced, depth = depth - marks[-1], marks.pop()
                if name in ("SETITEMS", "DICT"):
                    items += sliced // 2
                below = before.index(pickletools.markobject)
            elif name == "POP" and marks and depth == marks[-1]:
                marks.pop()  # POP with nothing above the mark removes the mark
                continue
            else:
                below = len(before)
            if depth - (marks[-1] if marks else 0) < below:
                raise DataFormatError(f"opcode {name} at byte {pos} finds too few stack items")
            depth += len(op.stack_after) - below
            items += name == "SETITEM"
            if name == "MEMOIZE":
                memo += 1
            elif name.endswith("PUT"):
                if not 0 <= arg <= memo:
                    raise UnsafePickleError(
                        f"memo index {arg} at byte {pos} is out of sequence (next is {memo})"
                    )
                memo = max(memo, arg + 1)
            if items > MAX_DICT_ITEMS:
                raise UnsafePickleError(f"more than {MAX_DICT_ITEMS} dict items")
    except (UnsafePickleError, DataFormatError):
        raise
    except Exception as exc:  # noqa: BLE001 - genops: unknown opcode, cut argument, no STOP
        raise _unreadable(exc) from None


def _unreadable(exc: Exception) -> DataFormatError:
    return DataFormatError(
        f"not a readable pickle ({type(exc).__name__}: {exc}); the file is truncated or "
        "corrupt, download and extract it again"
    )


# --- what the allowed globals resolve to ----------------------------------------------------


class _Budget:
    """Bytes the allowed globals may still build from one pickle. (The stand-ins hold
    this, not the unpickler, whose memo holds them: no reference cycle keeps a load's
    memory alive until the garbage collector runs.)"""

    __slots__ = ("left",)

    def __init__(self, nbytes: int):
        self.left = nbytes

    def spend(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise UnsafePickleError(
                "the pickle builds more data than twice its own size (it reuses its contents "
                "to multiply them); a CIFAR batch never does"
            )


class _Global:
    """An allowed global as the unpickler hands it out: calls ``fn(budget, *args)``;
    ``BUILD`` on it is refused, so a pickle cannot change gpunet's functions (e.g. their
    ``__defaults__``) or anything else."""

    __slots__ = ("budget", "fn", "name")

    def __init__(self, name, fn, budget):
        self.name, self.fn, self.budget = name, fn, budget

    def __call__(self, *args):
        return self.fn(self.budget, *args)

    def __setstate__(self, state):
        raise UnsafePickleError(f"the pickle tries to change the global {self.name} (BUILD)")


class _DType:
    """Stands for a ``numpy.dtype`` while unpickling: an integer dtype only; ``BUILD`` may
    set its byte order once and nothing else."""

    __slots__ = ("built", "dtype")

    def __init__(self, dtype):
        self.dtype, self.built = dtype, False

    def __setstate__(self, state):
        # NumPy writes (3, byteorder, None, None, None, -1, -1, flags) for a plain dtype
        # (byteorder is bytes in a Python 2 pickle).
        order = state[1] if isinstance(state, tuple) and len(state) == 8 else None
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if self.built or order not in ("<", ">", "|", "=") or state[2:7] != (None,) * 3 + (-1, -1):
            raise UnsafePickleError(
                f"the pickle sets the state {describe(state)} on a NumPy dtype; only the byte "
                "order of a plain integer dtype may be set"
            )
        self.built = True
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """Stands for a NumPy array while unpickling; gets its contents from ``BUILD`` (or
    :func:`_frombuffer`) exactly once, after its dtype and size are checked."""

    __slots__ = ("array", "budget")

    def __init__(self, budget, array=None):
        self.budget, self.array = budget, array

    def __setstate__(self, state):
        # ndarray.__reduce__ writes (version 1, shape, dtype, is_fortran, raw bytes).
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5 \
                or state[0] != 1 or not isinstance(state[3], bool):
            raise UnsafePickleError(
                f"the pickle sets the state {describe(state)} on a NumPy array; expected "
                "(1, shape, dtype, is_fortran, data) once"
            )
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, str):  # Python 2 str decoded with encoding="latin1"
            self.budget.spend(len(raw))
            raw = raw.encode("latin1")
        self.array = _build_array(self.budget, raw, dtype, shape, "F" if fortran else "C")


def _build_array(budget, raw, dtype, shape, order) -> np.ndarray:
    """A new array of ``shape`` from the bytes ``raw``, after every check."""
    if not isinstance(dtype, _DType):
        raise UnsafePickleError(f"an array's dtype must be a numpy.dtype, found {describe(dtype)}")
    if not (isinstance(shape, tuple) and 1 <= len(shape) <= 2
            and all(type(d) is int and d >= 0 for d in shape)):
        raise UnsafePickleError(
            f"an array's shape must be 1 or 2 sizes (N,) or (N, D), found {describe(shape)}"
        )
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise UnsafePickleError(
            f"an array of shape {shape} has {count} elements, more than the "
            f"{MAX_ARRAY_ELEMENTS} of the largest CIFAR batch"
        )
    if not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        raise UnsafePickleError(
            f"an array's data must be bytes in C or F order, found {describe(raw)}, {describe(order)}"
        )
    nbytes = count * dtype.dtype.itemsize
    if len(raw) != nbytes:
        raise DataFormatError(
            f"an array of shape {shape} and dtype {dtype.dtype} needs {nbytes} bytes of data, "
            f"the pickle gives {len(raw)}"
        )
    budget.spend(nbytes)
    array = np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)
    return array.astype(dtype.dtype.newbyteorder("="), order="K")  # a copy, as NumPy's own


def _ndarray(budget, *args):
    raise UnsafePickleError("the pickle calls numpy.ndarray; only _reconstruct may use it")


def _reconstruct(budget, subtype, shape, typecode):
    """``numpy.core.multiarray._reconstruct`` as ndarray.__reduce__ calls it: an empty
    placeholder that BUILD then fills; allocates nothing."""
    if not (isinstance(subtype, _Global) and subtype.fn is _ndarray) or shape != (0,) \
            or typecode not in (b"b", "b"):
        raise UnsafePickleError(
            "the pickle calls _reconstruct with other arguments than NumPy writes "
            "(numpy.ndarray, (0,), b'b'); refusing to allocate"
        )
    return _Array(budget)


def _dtype(budget, spec, align=False, copy=True):
    """``numpy.dtype(spec, align, copy)`` for the integer dtypes of :data:`ARRAY_DTYPES`."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if spec not in ARRAY_DTYPES:
        raise UnsafePickleError(
            f"the pickle asks for a NumPy array of dtype {describe(spec)}; only integer arrays "
            f"({', '.join(ARRAY_DTYPES)}) are allowed (a CIFAR batch holds uint8 pixels and "
            "integer labels; dtype object could run code)"
        )
    return _DType(np.dtype(spec))


def _frombuffer(budget, buf, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays), checked like BUILD."""
    return _Array(budget, _build_array(budget, buf, dtype, shape, order))


def _empty_bytes(budget, *args):
    """``bytes()`` as Python 3 writes an empty ``bytes`` in protocol 0-2 pickles."""
    if args:
        raise UnsafePickleError("the pickle calls bytes() with arguments; only bytes() is allowed")
    return b""


def _latin1_encode(budget, text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes ``bytes`` in protocol 0-2 pickles: latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(
            f"the pickle calls _codecs.encode with {describe(text)} and encoding "
            f"{describe(encoding)}; only a str in latin1 is allowed"
        )
    budget.spend(len(text))
    return text.encode("latin1")


#: (module, name) -> the checking function it resolves to. Both spellings of NumPy's core
#: module are listed: files written by NumPy 1.x (like the original CIFAR-10 batches) say
#: ``numpy.core``, NumPy 2 writes ``numpy._core``.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _ndarray,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other class or
    function (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
    :class:`UnsafePickleError` without being imported or called. Arrays and bytes it
    builds may total ``budget`` bytes; ``load()`` returns only plain data (step 3 of the
    module docstring). Use it through :func:`safe_load_pickle`, which also scans the
    opcodes first (step 1)."""

    def __init__(self, file, *, encoding: str = "bytes", budget: int = MAX_PICKLE_BYTES):
        super().__init__(file, encoding=encoding)
        self.budget = _Budget(budget)

    def find_class(self, module, name):
        fn = ALLOWED_GLOBALS.get((module, name))
        if fn is None:
            raise UnsafePickleError(
                f"the pickle asks for the global {module}.{name}, which is not allowed (only "
                "plain containers, str/bytes, numbers and NumPy arrays may be loaded); "
                "nothing from it was run. A genuine CIFAR batch never needs this: the file is "
                "not one, and may be malicious"
            )
        return _Global(f"{module}.{name}", fn, self.budget)

    def load(self):
        return _plain(super().load())

    def persistent_load(self, pid):
        raise UnsafePickleError("persistent ids are not allowed in the pickle")


_SCALARS = (str, bytes, int, float, bool, type(None))


def _plain(root: object) -> object:
    """``root`` with every array stand-in replaced by its array, after checking that it
    holds only plain containers, scalars and arrays; each object is visited once."""
    done: dict[int, tuple[object, int]] = {}  # id -> (result, height of its nesting)
    active: set[int] = set()

    def visit(obj, depth):
        """``(result, height)`` of ``obj`` reached ``depth`` levels below the root."""
        key = id(obj)
        if key in done:
            return done[key]
        if key in active:
            raise UnsafePickleError("the pickle holds a reference cycle")
        if depth > MAX_DEPTH:
            raise UnsafePickleError(f"the pickle is nested more than {MAX_DEPTH} levels deep")
        if len(done) >= MAX_OBJECTS:
            raise UnsafePickleError(f"the pickle holds more than {MAX_OBJECTS} objects")
        active.add(key)
        height = 0
        if isinstance(obj, _SCALARS):
            out = obj
        elif type(obj) is _Array:
            if obj.array is None:
                raise UnsafePickleError("the pickle leaves a NumPy array without its data")
            out = obj.array
        elif type(obj) in (list, tuple, dict):
            if type(obj) is dict:
                bad = next((k for k in obj if not isinstance(k, _SCALARS)), None)
                if bad is not None:
                    raise UnsafePickleError(f"the pickle has a dict key that is {describe(bad)}")
            keys = list(obj) if type(obj) is dict else range(len(obj))
            items = [visit(obj[k], depth + 1) for k in keys]
            height = 1 + max((h for _, h in items), default=0)
            if height > MAX_DEPTH:
                raise UnsafePickleError(f"the pickle is nested more than {MAX_DEPTH} levels deep")
            if type(obj) is tuple:
                same = all(new is old for (new, _), old in zip(items, obj))
                out = obj if same else tuple(new for new, _ in items)
            else:
                out = obj
                for k, (new, _) in zip(keys, items):
                    obj[k] = new
        else:
            what = f"the global {obj.name}" if type(obj) is _Global else \
                "a NumPy dtype outside an array" if type(obj) is _DType else describe(obj)
            raise UnsafePickleError(f"the pickle holds {what}; not allowed")
        active.discard(key)
        done[key] = out, height
        return done[key]

    try:
        return visit(root, 0)[0]
    finally:
        done.clear()  # visit refers to itself: free what it holds without waiting for gc


def _read(source) -> bytes:
    """The bytes of ``source`` (bytes, a binary file or a path), at most MAX_PICKLE_BYTES."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_PICKLE_BYTES + 1)
    else:
        with open(as_path("source", source, "safe_load_pickle"), "rb") as f:
            data = f.read(MAX_PICKLE_BYTES + 1)
    if not isinstance(data, bytes):
        raise DataFormatError(f"expected the bytes of a pickle, read {describe(data)}")
    if len(data) > MAX_PICKLE_BYTES:
        raise UnsafePickleError(
            f"the file is larger than {MAX_PICKLE_BYTES} bytes, more than any CIFAR batch"
        )
    return data


def safe_load_pickle(source, *, encoding: str = "bytes"):
    """Unpickle ``source`` (a path, bytes, or binary file) as described in the module
    docstring: plain containers, scalars and integer NumPy arrays (in native byte order)
    only.

    ``encoding`` decodes Python 2 ``str`` (CIFAR's batches were written by Python 2):
    ``"bytes"`` keeps them as bytes. A damaged file raises
    :class:`~gpunet.data.errors.DataFormatError`; a disallowed request its subclass
    :class:`~gpunet.data.errors.UnsafePickleError`; both name the file.
    """
    where = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else \
        getattr(source, "name", "<file>") if hasattr(source, "read") else str(source)
    try:
        data = _read(source)
        scan_opcodes(data)
        unpickler = RestrictedUnpickler(io.BytesIO(data), encoding=encoding,
                                        budget=2 * len(data) + 2**20)
        try:
            return unpickler.load()
        except DataFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt stream, bad arguments to a global
            raise _unreadable(exc) from None
    except DataFormatError as exc:
        raise type(exc)(f"{where}: {exc}") from None
