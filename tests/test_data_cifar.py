"""CIFAR-10 python batches through the restricted unpickler, on a tiny fake directory
written here; malicious pickles must be refused without running anything."""

import builtins
import io
import os
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gpunet.data import (
    DataFormatError,
    DatasetNotFoundError,
    UnsafePickleError,
    load_cifar10,
    load_cifar_batch,
    load_dataset,
    safe_load_pickle,
)
from gpunet.data.cifar import CIFAR10_CLASSES


class Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 byte strings (SHORT_BINSTRING/BINSTRING)
    and names NumPy's core module ``numpy.core``, as the original CIFAR-10 files do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        op = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(op + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_dumps(obj):
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


DUMPERS = {
    "python2": py2_dumps,
    "protocol2": lambda o: pickle.dumps(o, protocol=2),
    "protocol5": lambda o: pickle.dumps(o, protocol=5),
}


def make_batch(n, first_label, rng):
    """n images whose R, G, B planes are constant 10*i+1, 10*i+2, 10*i+3 (mod 256) plus
    noise in one pixel, in CIFAR's row layout (N, 3072) = R plane, G plane, B plane."""
    images = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            images[i, c] = (10 * (first_label + i) + c + 1) % 256
        images[i, 0, 5, 7] = rng.integers(0, 256)
    labels = [(first_label + i) % 10 for i in range(n)]
    return images, labels


def fake_cifar(directory, dumps, n=4, rng=None, meta=True):
    rng = rng or np.random.default_rng(0)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    truth = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        images, labels = make_batch(n, 2 * b, rng)
        batch = {
            "batch_label": f"batch {b}",
            "labels": labels,
            "data": images.reshape(n, 3072),
            "filenames": [f"img_{b}_{i}.png" for i in range(n)],
        }
        if dumps is not py2_dumps:  # Python 3 writers: bytes keys as CIFAR's own loader gives them
            batch = {k.encode(): v for k, v in batch.items()}
        (directory / name).write_bytes(dumps(batch))
        truth[name] = (images, np.array(labels))
    if meta:
        names = [c.upper() for c in CIFAR10_CLASSES]
        (directory / "batches.meta").write_bytes(
            dumps({"label_names": names, "num_cases_per_batch": n, "num_vis": 3072})
        )
    return truth


@pytest.mark.parametrize("writer", list(DUMPERS))
def test_batches_load_in_every_pickle_flavour(tmp_path, writer):
    truth = fake_cifar(tmp_path / "cifar-10-batches-py", DUMPERS[writer])
    X, y = load_cifar_batch(tmp_path / "cifar-10-batches-py" / "data_batch_2")
    assert X.shape == (4, 3, 32, 32) and X.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(X, truth["data_batch_2"][0])
    np.testing.assert_array_equal(y, truth["data_batch_2"][1])
    assert X[1, 2, 0, 0] == 10 * 3 + 3  # image 1 of batch 2 has label 3; B plane = +3


def test_load_cifar10(tmp_path):
    truth = fake_cifar(tmp_path / "cifar-10-batches-py", DUMPERS["python2"])
    ds = load_cifar10(tmp_path, val=5, normalize=False)  # the parent directory works too
    assert ds.name == "cifar10" and ds.sample_shape == (3, 32, 32)
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (15, 5, 4)
    assert ds.classes[0] == "AIRPLANE"  # from batches.meta
    np.testing.assert_allclose(ds.X_test, truth["test_batch"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, truth["test_batch"][1])
    train_X = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    ours = np.rint(np.concatenate([ds.X_train, ds.X_val]) * 255).astype(np.uint8)
    assert sorted(a.tobytes() for a in ours) == sorted(a.tobytes() for a in train_X)
    norm = load_cifar10(tmp_path / "cifar-10-batches-py", val=5, flatten=True)
    assert norm.X_train.shape == (15, 3072) and norm.mean.shape == (3,)
    ref = ds.X_train.astype(np.float64)
    np.testing.assert_allclose(norm.mean, ref.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.std, ref.std(axis=(0, 2, 3)), rtol=1e-5)


def test_default_class_names_and_env_lookup(tmp_path, monkeypatch):
    fake_cifar(tmp_path / "cifar-10-batches-py", DUMPERS["protocol5"], meta=False)
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path))
    ds = load_dataset("cifar-10", val=0)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.source.how == "env" and ds.source.directory == tmp_path / "cifar-10-batches-py"
    assert sorted(ds.source.files) == sorted([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"])


def test_missing_cifar_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUNET_DATA", raising=False)
    (tmp_path / "c").mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10(tmp_path / "c")
    text = str(err.value)
    assert f"{tmp_path / 'c'} (the path argument): missing data_batch_1" in text
    assert "cifar-10-python.tar.gz" in text and "tar xzf" in text
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetNotFoundError, match="tar.gz \\(the path argument\\): a file, not a directory"):
        load_cifar10(tmp_path / "cifar-10-python.tar.gz")


# --- malicious and malformed pickles -------------------------------------------------


class WriteFile:
    """A pickle that, when loaded by plain pickle, creates a file (a harmless stand-in
    for arbitrary code)."""

    def __init__(self, path, how):
        self.path, self.how = str(path), how

    def __reduce__(self):
        if self.how == "open":
            return (builtins.open, (self.path, "w"))
        if self.how == "system":
            return (os.system, (f"touch {self.path}",))
        if self.how == "exec":
            return (builtins.exec, (f"open({self.path!r}, 'w').close()",))
        if self.how == "subprocess":
            return (subprocess.call, (["touch", self.path],))
        raise AssertionError(self.how)


@pytest.mark.parametrize("how", ["open", "system", "exec", "subprocess"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, how, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": WriteFile(marker, how)},
        protocol=protocol,
    )
    # the payload is real: plain pickle runs it
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    directory = tmp_path / "cifar"
    fake_cifar(directory, DUMPERS["protocol2"])
    (directory / "data_batch_3").write_bytes(payload)
    with pytest.raises(UnsafePickleError) as err:
        load_cifar10(directory)
    assert not marker.exists()
    assert str(directory / "data_batch_3") in str(err.value) and "not allowed" in str(err.value)
    assert isinstance(err.value, pickle.UnpicklingError)


def test_object_arrays_and_other_tricks_are_refused(tmp_path):
    obj_array = np.array([1, "a", None], dtype=object)
    for protocol in (2, 5):
        with pytest.raises(UnsafePickleError, match="dtype str 'O8'.*only integer arrays"):
            safe_load_pickle(pickle.dumps({"data": obj_array}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=r"global \S*builtin\S*\.set, which is not allowed"):
        safe_load_pickle(pickle.dumps({1, 2}, protocol=2))
    # _codecs.encode is allowed for latin1 only (how protocol-2 pickles store bytes)
    sneaky = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00rot_13\x86R."
    assert pickle.loads(sneaky) == "nop"  # the reference: plain pickle runs the codec
    with pytest.raises(UnsafePickleError, match="encoding str .rot_13.; only a str in latin1"):
        safe_load_pickle(sneaky)
    # numpy.ndarray may only be used by _reconstruct: calling it (e.g. to allocate) fails
    alloc = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x7f\x85R."
    with pytest.raises(UnsafePickleError, match="calls numpy.ndarray"):
        safe_load_pickle(alloc)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "not a readable pickle"),
        (pickle.dumps([1, 2]), "found a list"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "missing ['labels']"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}),
         "found a uint8 array of shape (2, 100)"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}),
         "dtype str 'f4'; only integer arrays"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
         "must be a list of 2 integers"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 12]}),
         "labels must be integers 0..9, found labels[1] = 12"),
        (pickle.dumps({b"data": 1, b"fine_labels": [0]}), "CIFAR-100"),
    ],
)
def test_malformed_batches_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as err:
        load_cifar_batch(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_truncated_pickle(tmp_path):
    blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    path = tmp_path / "test_batch"
    path.write_bytes(blob[:-40])
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        load_cifar_batch(path)


# --- bounded, and nothing a pickle can change (issue 10, items 1, 2 and 14) -------------


def test_shared_references_are_visited_once_and_kept_shared():
    x = []
    for _ in range(12):
        x = [x, x]
    out = safe_load_pickle(pickle.dumps(x))
    for _ in range(12):  # the same structure, still one object per level
        assert len(out) == 2 and out[0] is out[1]
        out = out[0]
    assert out == []


def test_nesting_deeper_than_the_limit_is_refused():
    x = []
    for _ in range(40):  # 254 bytes: the pickle that never returned
        x = [x, x]
    with pytest.raises(UnsafePickleError, match="nested more than 32 levels"):
        safe_load_pickle(pickle.dumps(x))
    chain = root = []
    for _ in range(40):  # a chain reached through shortcuts is just as deep
        chain.append([])
        chain = chain[-1]
    with pytest.raises(UnsafePickleError, match="nested more than 32 levels"):
        safe_load_pickle(pickle.dumps(root))


def test_build_cannot_change_functions_or_module_state():
    from gpunet.data import safe_pickle

    defaults = safe_pickle._latin1_encode.__defaults__
    # (the global, then (None, {'__defaults__': ('rot_13',)})), BUILD: plain pickle obeys
    probe = b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__X\x06\x00\x00\x00rot_13\x85s\x86b."
    with pytest.raises(UnsafePickleError, match="tries to change the global _codecs.encode"):
        safe_load_pickle(probe)
    assert safe_pickle._latin1_encode.__defaults__ == defaults
    dict_state = probe.replace(b"N}", b"}").replace(b"\x86b", b"b")  # __dict__ update form
    with pytest.raises(UnsafePickleError, match="tries to change the global"):
        safe_load_pickle(dict_state)
    assert not hasattr(safe_pickle._latin1_encode, "__defaults___")


def _array_pickle(state: bytes) -> bytes:
    """numpy's own _reconstruct placeholder, then BUILD with ``state`` (raw opcodes)."""
    return (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            + state + b"b.")


U1 = b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x85R"


@pytest.mark.parametrize(
    "blob,message",
    [
        # numpy's _reconstruct would allocate an object array of 2**27 (1 GiB) here
        (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x08\x85"
         b"X\x01\x00\x00\x00O\x87R.", "refusing to allocate"),
        (_array_pickle(b"(K\x01\x8a\x05\x00\x00\x00\x80\x00\x85" + U1 + b"\x89C\x00t"),
         "2147483648 elements, more than"),
        (_array_pickle(b"(K\x01K\x02K\x02K\x02\x87" + U1 + b"\x89C\x08\0\0\0\0\0\0\0\0t"),
         "shape must be 1 or 2 sizes"),
        # a checked dtype given fields afterwards (NumPy's own pickle of a structured dtype)
        (pickle.dumps(np.zeros(1, [("a", "u1")]), protocol=2).replace(b"V1", b"u1"),
         "only the byte order of a plain integer dtype"),
        # a second BUILD on an array that already has its data
        (_array_pickle(b"(K\x01K\x01\x85" + U1 + b"\x89C\x01\0t")[:-1]
         + b"(K\x01K\x01\x85" + U1 + b"\x89C\x01\0tb.", "expected (1, shape, dtype, is_fortran, data) once"),
        (pickle.dumps(np.zeros(3, np.float64)), "dtype str 'f8'"),
        (pickle.dumps({"x": {1, 2}}, protocol=4), "opcode EMPTY_SET"),
        (pickle.dumps([[1]], protocol=2).replace(b"]q\x01", b"]r\x00\x00\x00\x10"), "memo index 268435456"),
        (b"\x80\x02\x82\x01.", "opcode EXT1"),
        (b"\x80\x02(cbuiltins\nlist\no.", "opcode OBJ"),
        (pickle.dumps({(1, 2): 3}), "dict key that is a tuple"),
        (pickle.dumps({i: i for i in range(2000)}), "more than 1024 dict items"),
        (b"\x80\x02c_codecs\nencode\nq\x00X\x00\x00\x01\x00" + b"a" * 65536 + b"q\x01("
         + b"h\x00h\x01X\x06\x00\x00\x00latin1\x86R" * 100 + b"l.", "more data than twice its own size"),
    ],
)
def test_pickles_beyond_a_cifar_batch_are_refused_before_allocating(blob, message):
    with pytest.raises(UnsafePickleError) as err:
        safe_load_pickle(blob)
    assert message in str(err.value)
    assert isinstance(err.value, DataFormatError)  # one except clause catches every bad file


def test_array_data_of_the_wrong_length_is_a_format_error():
    with pytest.raises(DataFormatError, match="needs 3 bytes of data, the pickle gives 2"):
        safe_load_pickle(_array_pickle(b"(K\x01K\x03\x85" + U1 + b"\x89C\x02\0\0t"))


def test_cycles_are_refused():
    a = []
    a.append(a)
    with pytest.raises(UnsafePickleError, match="reference cycle"):
        safe_load_pickle(pickle.dumps(a))


@pytest.mark.parametrize("protocol", range(6))
def test_integer_arrays_round_trip_in_every_protocol(protocol):
    # the reference: plain pickle of data written here
    a = np.arange(-6, 6, dtype=">i2").reshape(3, 4)
    obj = {"c": a, "f": np.asfortranarray(a.astype(np.uint8)), "shared": [a, a], "e": np.zeros((0, 5), np.int64)}
    blob = pickle.dumps(obj, protocol=protocol)
    ref, got = pickle.loads(blob), safe_load_pickle(blob)
    for key in ("c", "f", "e"):
        np.testing.assert_array_equal(got[key], ref[key])
        # native byte order, as NumPy's own unpickling gives for protocols 0-4 (not 5)
        assert got[key].dtype == ref[key].dtype.newbyteorder("=") and got[key].flags.writeable
    assert got["shared"][0] is got["shared"][1]


@pytest.mark.parametrize(
    "labels,message",
    [
        ([1.7, 2.2], "labels[0] = float 1.7"),
        (["1", "2"], "labels[0] = str '1'"),
        ([0, 2**70], "labels[1] = an int of 71 bits"),
        ([True, 0], "labels[0] = True"),
        ([0, -1], "labels[1] = -1"),
        (np.array([1.0, 2.0]), "dtype str 'f8'"),
        (np.array([[1, 2]]), "found a int64 array of shape (1, 2)"),
        ((x for x in [0, 1]), "not allowed"),
        ("01", "found str '01'"),
    ],
)
def test_labels_must_be_integers_0_to_9(tmp_path, labels, message):
    path = tmp_path / "data_batch_1"
    try:
        blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels})
    except TypeError:  # a generator: pickled by hand as an object the unpickler refuses
        blob = b"\x80\x02}(C\x06labelscbuiltins\niter\n]\x85Ru."
    path.write_bytes(blob)
    with pytest.raises(DataFormatError) as err:
        load_cifar_batch(path)
    assert message in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("labels", [np.array([3, 9], dtype=">i2"), np.array([3, 9], dtype=np.uint8), (3, 9)])
def test_integer_label_arrays_and_tuples_are_read(tmp_path, labels):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}))
    X, y = load_cifar_batch(path)
    np.testing.assert_array_equal(y, [3, 9])
    assert y.dtype == np.int64


@pytest.mark.parametrize(
    "meta,message",
    [
        ([b"airplane"] * 10, "expected a dict with 'label_names' (a dict), found a list of length 10"),
        ({b"label_names": [b"a"] * 9}, "found a list of length 9"),
        ({b"label_names": [1] * 10}, "found a list of length 10"),
        ({b"other": 1}, "found None"),
    ],
)
def test_a_bad_batches_meta_says_what_is_wrong(tmp_path, meta, message):
    directory = tmp_path / "cifar-10-batches-py"
    fake_cifar(directory, DUMPERS["protocol2"], meta=False)
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(DataFormatError) as err:
        load_cifar10(directory)
    assert message in str(err.value) and "batches.meta" in str(err.value)


def test_source_lists_the_files_read(tmp_path):
    fake_cifar(tmp_path / "cifar-10-batches-py", DUMPERS["python2"])
    source = load_cifar10(tmp_path, val=5).source
    assert source.how == "path" and source.directory == tmp_path / "cifar-10-batches-py"
    assert list(source.files)[-1] == "batches.meta" and len(source.files) == 7
    assert str(source).startswith(f"{tmp_path / 'cifar-10-batches-py'} (the path argument: data_batch_1, ")


def test_a_loaded_array_is_freed_when_dropped_without_the_garbage_collector():
    # no reference cycle (unpickler -> memo -> stand-ins -> unpickler) may keep a batch alive
    import gc
    import weakref

    blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    gc.disable()
    try:
        ref = weakref.ref(safe_load_pickle(blob)[b"data"])
        assert ref() is None
    finally:
        gc.enable()
