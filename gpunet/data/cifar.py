"""CIFAR-10 from its "python version" batches, read without trusting the pickles.

``pickle.load`` can run any code a file asks for. :class:`RestrictedUnpickler` resolves
no global except the few that rebuild a NumPy array (each replaced by a checking
wrapper), so a batch can hold only dicts, lists, tuples, str, bytes, numbers, bool,
None and NumPy arrays of non-object dtype. Anything else raises
:class:`~gpunet.data.errors.UnsafePickleError` before any of it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from .dataset import Dataset, make_dataset
from .errors import DataFormatError, UnsafePickleError
from .locate import ENV_VAR, locate

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"


# --- the allow-list -----------------------------------------------------------------
# Each allowed global is a wrapper that checks its arguments; none of them is a class
# or function that could be reached with attacker-chosen arguments otherwise.

class _NDArrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle; only :func:`_reconstruct` accepts it
    (calling it, e.g. to allocate a huge array, fails)."""

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("not picklable")


_NDARRAY = _NDArrayToken()
_np_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own, found without private imports


def _plain_dtype(dt: np.dtype) -> np.dtype:
    if dt.hasobject:
        raise UnsafePickleError(
            f"pickle holds a NumPy array of dtype {dt} (Python objects); only plain numeric, "
            "bool, bytes and str dtypes are allowed"
        )
    return dt


def _reconstruct(subtype, shape, order):
    """``numpy.core.multiarray._reconstruct`` for plain ``ndarray`` only (protocol 0-4)."""
    if subtype is not _NDARRAY:
        raise UnsafePickleError(
            f"pickle asks _reconstruct to build {subtype!r}; only numpy.ndarray is allowed"
        )
    return _np_reconstruct(np.ndarray, shape, order)


def _dtype(*args):
    """``numpy.dtype(...)`` as pickles call it, refusing object dtypes."""
    return _plain_dtype(np.dtype(*args))


def _frombuffer(buf, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays), re-implemented."""
    dtype = _plain_dtype(np.dtype(dtype))
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy(order="K")


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 writes ``bytes`` in protocol 0-2 pickles: latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(
            f"pickle calls _codecs.encode with encoding {encoding!r}; only latin1 is allowed"
        )
    return text.encode("latin1")


#: (module, name) -> what it resolves to. Both spellings of NumPy's core module are
#: listed: files written by NumPy 1.x (like the original CIFAR-10 batches) say
#: ``numpy.core``, NumPy 2 writes ``numpy._core``.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other class or
    function (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
    :class:`UnsafePickleError` without being imported or called."""

    source = "<pickle>"

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"{self.source}: the pickle asks for the global {module}.{name}, which is not "
                "allowed (only plain containers, str/bytes, numbers and NumPy arrays may be "
                "loaded); refusing to load it, nothing from it was run. A genuine CIFAR-10 "
                "batch never needs this: the file is not one, and may be malicious"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in the pickle")


_PLAIN = (str, bytes, int, float, bool, type(None))


def _check_plain(obj, where, depth=0):
    """Raise unless ``obj`` is built from plain containers, scalars and plain arrays."""
    if depth > 100:
        raise UnsafePickleError(f"{where}: the pickle is nested more than 100 levels deep")
    if isinstance(obj, np.ndarray):
        _plain_dtype(obj.dtype)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, where, depth + 1)
            _check_plain(v, where, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where, depth + 1)
    elif not isinstance(obj, _PLAIN):
        raise UnsafePickleError(f"{where}: the pickle holds a {type(obj).__name__}; not allowed")


def safe_load_pickle(source, *, encoding: str = "bytes"):
    """Unpickle ``source`` (a path, bytes, or binary file) with :class:`RestrictedUnpickler`.

    ``encoding`` decodes Python 2 ``str`` (CIFAR-10's batches were written by Python 2):
    ``"bytes"`` keeps them as bytes. A damaged file raises
    :class:`~gpunet.data.errors.DataFormatError`; a disallowed global
    :class:`~gpunet.data.errors.UnsafePickleError`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        f, where = io.BytesIO(source), "<bytes>"
    elif hasattr(source, "read"):
        f, where = source, getattr(source, "name", "<file>")
    else:
        where = str(source)
        f = io.BytesIO(Path(source).read_bytes())
    unpickler = RestrictedUnpickler(f, encoding=encoding)
    unpickler.source = where
    try:
        obj = unpickler.load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt stream, bad arguments to a wrapper
        raise DataFormatError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt, download and extract it again"
        ) from None
    _check_plain(obj, where)
    return obj


# --- CIFAR-10 --------------------------------------------------------------------------


def _text_keys(d: dict) -> dict:
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def load_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: images uint8 (N, 3, 32, 32) (RGB planes) and labels
    int64 (N,) in 0..9, checked against the format."""
    batch = safe_load_pickle(path)
    if not isinstance(batch, dict):
        raise DataFormatError(
            f"{path}: expected a CIFAR-10 batch (a dict with 'data' and 'labels'), "
            f"found a {type(batch).__name__}"
        )
    batch = _text_keys(batch)
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataFormatError(
            f"{path}: a CIFAR-10 batch needs the keys 'data' and 'labels', missing "
            f"{missing} (found {sorted(batch)}); is this the CIFAR-10 *python* version "
            "(CIFAR-100 uses 'fine_labels')?"
        )
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072) (32x32 pixels x 3 "
            f"channels), found {desc}"
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        y = None
    if y is None or y.shape != (data.shape[0],):
        raise DataFormatError(
            f"{path}: 'labels' must hold {data.shape[0]} integers (one per row of 'data'), "
            f"found {np.shape(labels) if y is not None else type(labels).__name__}"
        )
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataFormatError(
            f"{path}: labels must be in 0..9, found {int(y.min())}..{int(y.max())}"
        )
    return data.reshape(-1, 3, 32, 32), y


def _class_names(meta_path) -> tuple[str, ...]:
    if meta_path is None:
        return CIFAR10_CLASSES
    meta = _text_keys(safe_load_pickle(meta_path))
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataFormatError(
            f"{meta_path}: expected 'label_names', a list of 10 class names, found {names!r}"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar10(path=None, *, val=0.1, seed=0, stratify=True, normalize=True,
                 flatten=False) -> Dataset:
    """CIFAR-10 (50000 train + 10000 test 32x32 RGB images, 10 classes) from the python
    batches ``data_batch_1..5`` and ``test_batch`` in ``path`` (or its
    ``cifar-10-batches-py`` folder, or ``$GPUNET_DATA/cifar-10-batches-py``).
    ``X_*`` float32 (N, 3, 32, 32) scaled to [0, 1] (then standardised per channel if
    ``normalize``), or (N, 3072) with ``flatten``; ``val`` is carved from training."""
    required = {name: [name] for name in (*TRAIN_BATCHES, TEST_BATCH)}
    hint = (
        "download the CIFAR-10 python version (cifar-10-python.tar.gz, from "
        "https://www.cs.toronto.edu/~kriz/cifar.html), extract it with "
        "`tar xzf cifar-10-python.tar.gz`, and call load_cifar10(path='cifar-10-batches-py') "
        f"or set {ENV_VAR} to the directory that holds cifar-10-batches-py"
    )
    directory, files = locate("CIFAR-10", path, "cifar-10-batches-py", required, (), hint)
    parts = [load_cifar_batch(files[name]) for name in TRAIN_BATCHES]
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    X_test, y_test = load_cifar_batch(files[TEST_BATCH])
    meta = directory / META
    return make_dataset(
        "cifar10", X, y, _class_names(meta if meta.is_file() else None),
        X_test=X_test, y_test=y_test, val=val, seed=seed, stratify=stratify,
        normalize=normalize, flatten=flatten, scale=1 / 255, source=str(directory),
    )
