"""Checkpoint files: ``.npz`` archives written atomically, read with ``allow_pickle=False``.

A checkpoint holds named arrays (copied to the host, so a file written on a GPU loads on
a CPU) plus JSON metadata stored as a 0-d unicode array under :data:`META_KEY`. Writing
goes to a temporary file in the target directory, is flushed and fsync'ed, then
``os.replace``'d over the target: a crash or error mid-write leaves the previous file
intact and no temporary file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .backend import to_numpy

__all__ = ["FORMAT", "META_KEY", "VERSION", "from_json", "load_npz", "save_npz_atomic", "to_json"]

FORMAT = "gpunet-checkpoint"
VERSION = 1
META_KEY = "__meta__"


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
        return np.asarray(d["__ndarray__"], dtype=np.dtype(d["dtype"]))
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, payload)
            f.flush()
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
    """``(arrays, meta)`` from a checkpoint written by :func:`save_npz_atomic` (host arrays)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not a readable gpunet checkpoint: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(path)!r} is not a readable .npz checkpoint: {exc}") from exc
    if META_KEY not in arrays:
        raise ValueError(
            f"{str(path)!r} has no {META_KEY!r} entry: not a gpunet checkpoint "
            "(write one with Solver.save_checkpoint or gpunet.checkpoint.save_npz_atomic)"
        )
    meta = decode_meta(arrays.pop(META_KEY))
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{str(path)!r} is format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"this gpunet reads {FORMAT!r} version {VERSION}"
        )
    return arrays, meta
