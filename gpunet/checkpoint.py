"""Checkpoint files: ``.npz`` archives written atomically, read with ``allow_pickle=False``.

A checkpoint holds named arrays (copied to the host, so a file written on a GPU loads on
a CPU) plus JSON metadata stored as a 0-d unicode array under :data:`META_KEY`. Writing
goes to a temporary file ``.NAME.PID.XXXXXXXX.tmp`` in the target directory, is flushed
and fsync'ed, then ``os.replace``'d over the target: a crash or error mid-write leaves the
previous file intact; temporary files of writers that no longer run (a SIGKILL) are
removed by the next save. A new file gets the permissions ``np.savez`` would give it (the
umask's); a replaced one keeps its mode.

Reading checks every member's ``.npy`` header against the bytes the archive holds before
anything is allocated; every file that cannot be read as a checkpoint raises
:class:`CheckpointError` naming it (a missing one ``FileNotFoundError``).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from .backend import to_numpy

__all__ = ["FORMAT", "META_KEY", "VERSION", "CheckpointError", "from_json", "load_npz",
           "save_npz_atomic", "to_json"]

FORMAT = "gpunet-checkpoint"
VERSION = 1
META_KEY = "__meta__"

_STARTED = time.time()  # temporary files older than this process are nobody's write
_TMP = re.compile(r"^\..+?\.(?:(\d+)\.)?[A-Za-z0-9_]{8}\.tmp$")  # ours: .NAME[.PID].XXXXXXXX.tmp
_DEFLATE_RATIO = 1032  # deflate expands at most ~1032x: the most a compressed member can hold
_umask_lock = threading.Lock()


class CheckpointError(ValueError):
    """A file is not a readable gpunet checkpoint (missing, damaged, crafted or of another
    format); the message names the file and what is wrong."""


def _json_default(obj):
    if isinstance(obj, np.ndarray):  # e.g. MT19937 bit-generator state
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(
        f"checkpoint metadata must be JSON data (numbers, strings, lists, dicts), got "
        f"{type(obj).__name__}; store arrays as checkpoint arrays instead"
    )


def _json_hook(d):
    if "__ndarray__" in d and set(d) == {"__ndarray__", "dtype"}:
        dtype = np.dtype(d["dtype"])
        if dtype.kind not in "biuf":  # numbers only: no huge void or object dtypes
            raise ValueError(f"an array in the metadata has dtype {dtype}; expected numbers")
        return np.asarray(d["__ndarray__"], dtype=dtype)
    return d


def to_json(obj) -> str:
    """JSON text of ``obj`` (JSON data; NumPy arrays and scalars inside, e.g. a bit-generator
    state, are allowed): the checkpoint metadata's encoding, also used to send such data
    between processes."""
    return json.dumps(obj, default=_json_default)


def from_json(text: str):
    """The data :func:`to_json` encoded (NumPy arrays restored with their dtype)."""
    return json.loads(text, object_hook=_json_hook)


def encode_meta(meta: dict) -> np.ndarray:
    """``meta`` as a 0-d unicode array holding its JSON text (loads without pickle)."""
    return np.array(to_json(meta))


def decode_meta(arr: np.ndarray) -> dict:
    return from_json(str(arr[()]))


def save_npz_atomic(path, arrays: dict, meta: dict | None = None) -> Path:
    """Write ``arrays`` (name -> array of any backend) and JSON ``meta`` to ``path`` atomically.

    The file appears complete or not at all; an existing file at ``path`` is replaced only
    once the new one is fully on disk. Returns the path.
    """
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved for the checkpoint metadata")
    payload = {}
    for name, a in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"checkpoint array names must be non-empty strings, got {name!r}")
        host = to_numpy(a)
        if host.dtype == object:
            raise TypeError(f"checkpoint array {name!r} has dtype object (would need pickle)")
        payload[name] = host
    full_meta = {"format": FORMAT, "version": VERSION, **(meta or {})}
    payload[META_KEY] = encode_meta(full_meta)

    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, payload)
            f.flush()
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return path


def try_directory(directory) -> Path:
    """Make ``directory`` (with its parents) and write a temporary file in it: an ``OSError``
    now instead of after the first epoch. Returns the directory."""
    directory = Path(directory) if str(directory) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass
    return directory


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "wb")`` would leave: the existing file's, else 0o666 minus the
    umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        pass
    with _umask_lock:  # reading the umask means setting it; put it back at once
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


def remove_stale_temporaries(directory) -> list[Path]:
    """Remove the temporary files of our naming in ``directory`` whose writer no longer runs
    (its process id is gone), or, for names without a process id, that are older than this
    process. Returns the removed paths; files that cannot be removed are left."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stale = (not _alive(int(m.group(1)))) if m.group(1) else \
                entry.stat(follow_symlinks=False).st_mtime < _STARTED
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (ours always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's), or not a pid we can judge: keep the file
    return True


def _write_npz(f, payload: dict) -> None:
    """Serialize ``payload`` into the open binary file ``f`` (separate so tests can fail it)."""
    np.savez(f, **payload)


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable (POSIX); not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_npz(path) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` from a checkpoint written by :func:`save_npz_atomic` (host arrays).

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file for anything that is
    not a complete, well-formed checkpoint of this format version, and ``FileNotFoundError``
    when there is no file.
    """
    path = Path(path)
    where = f"checkpoint {str(path)!r}"
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{where} {what}; give the path of a checkpoint file (.npz)")
    try:
        with zipfile.ZipFile(path) as z:
            arrays = {}
            for info in z.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                arrays[name] = _read_member(z, info)
    except CheckpointError as exc:
        raise CheckpointError(f"{where} is damaged: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
            RuntimeError, NotImplementedError, OverflowError, MemoryError) as exc:
        raise CheckpointError(f"{where} is not a readable .npz checkpoint: "
                              f"{type(exc).__name__}: {exc}") from None
    if META_KEY not in arrays:
        raise CheckpointError(
            f"{where} has no {META_KEY!r} entry: not a gpunet checkpoint "
            "(write one with Solver.save_checkpoint or gpunet.checkpoint.save_npz_atomic)"
        )
    meta_arr = arrays.pop(META_KEY)
    if meta_arr.dtype.kind != "U" or meta_arr.shape != ():
        raise CheckpointError(f"{where}: {META_KEY!r} must be a 0-d text array, got dtype "
                              f"{meta_arr.dtype} and shape {meta_arr.shape}")
    try:
        meta = decode_meta(meta_arr)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{where}: its metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: its metadata must be a JSON object, got "
                              f"{type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{where} is format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"this gpunet reads {FORMAT!r} version {VERSION}"
        )
    return arrays, meta


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before reading."""
    name = info.filename
    if info.compress_type != zipfile.ZIP_STORED and \
            info.file_size > _DEFLATE_RATIO * max(info.compress_size, 1):
        raise CheckpointError(f"member {name!r} claims {info.file_size} bytes from "
                              f"{info.compress_size} compressed")
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
        except Exception as exc:  # noqa: BLE001 - any header parsing error (tokenize, ast, ...)
            raise CheckpointError(f"member {name!r} has no valid .npy header "
                                  f"({type(exc).__name__}: {exc})") from None
        if dtype.hasobject:
            raise CheckpointError(f"member {name!r} holds Python objects (dtype {dtype}): "
                                  "checkpoints are read without pickle")
        count = 1
        for n in shape:
            if n < 0:
                raise CheckpointError(f"member {name!r} has shape {shape}")
            count *= n
        header = f.tell()
        if header + count * dtype.itemsize != info.file_size:
            raise CheckpointError(
                f"member {name!r} claims shape {shape} of {dtype} ({count * dtype.itemsize} "
                f"bytes) but holds {info.file_size - header} bytes")
        data = f.read(count * dtype.itemsize)
    array = np.frombuffer(data, dtype=dtype, count=count).copy()
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
