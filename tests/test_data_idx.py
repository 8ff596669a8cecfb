"""IDX reading (raw and gzip, corrupt files) and the MNIST / Fashion-MNIST loaders.

The IDX bytes are written by hand here with ``struct`` (big-endian header, then data),
independently of gpunet's own writer.
"""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import gpunet.data.mnist as mnist
from gpunet._validate import ArgumentError
from gpunet.data import (
    DatasetNotFoundError,
    IDXFormatError,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array, code=None):
    array = np.asarray(array)
    code = CODES[array.dtype.type] if code is None else code
    header = b"\x00\x00" + bytes([code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, blob, gz=False):
    path = Path(path)
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


# --- the format ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz, rng):
    a = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    got = read_idx(write(tmp_path / "x.idx", idx_bytes(a), gz))
    np.testing.assert_array_equal(got, a)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative and got.flags.writeable


def test_gzip_is_detected_by_content_not_name(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "looks-raw", idx_bytes(a), gz=True)), a)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "looks.gz", idx_bytes(a))), a)


def test_write_idx_matches_the_hand_written_bytes(tmp_path, rng):
    a = rng.integers(-1000, 1000, size=(4, 3)).astype(np.int16)
    write_idx(tmp_path / "a.idx", a)
    assert (tmp_path / "a.idx").read_bytes() == idx_bytes(a)
    write_idx(tmp_path / "a.idx.gz", a)
    assert gzip.decompress((tmp_path / "a.idx.gz").read_bytes()) == idx_bytes(a)
    with pytest.raises(TypeError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "b", np.zeros(2, dtype=np.uint16))


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "blob,messages",
    [
        (b"", ["0 bytes", "shorter than the 4-byte IDX header"]),
        (b"\x00\x00\x08", ["3 bytes"]),
        (b"PK\x03\x04" + GOOD[4:], ["not an IDX file", "found 50 4b"]),
        (b"\x00\x00\x07\x02" + GOOD[4:], ["unknown IDX element type code 0x07", "0x08 (uint8)"]),
        (b"\x00\x00\x08\x00", ["0 dimensions"]),
        (GOOD[:10], ["truncated header", "need 12 header bytes", "has 10 bytes"]),
        (GOOD[:-1], ["size mismatch (truncated)", "(3, 4) of uint8", "= 24 bytes", "has 23 bytes"]),
        (GOOD + b"\x00\x00", ["2 trailing bytes", "has 26 bytes"]),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + b"\x00" * 11, ["(3,) of int32", "= 20 bytes", "has 19 bytes"]),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 28, 28) + b"\x00" * 100, ["truncated", "(60000, 28, 28)"]),
    ],
)
def test_corrupt_idx_files_say_what_is_wrong(tmp_path, blob, messages):
    path = write(tmp_path / "bad-idx3-ubyte", blob)
    with pytest.raises(IDXFormatError) as err:
        read_idx(path)
    text = str(err.value)
    assert str(path) in text
    for m in messages:
        assert m in text, text


def test_corrupt_idx_inside_gzip_and_broken_gzip(tmp_path):
    path = write(tmp_path / "f.gz", GOOD[:-3], gz=True)
    with pytest.raises(IDXFormatError, match="after gzip decompression.*truncated"):
        read_idx(path)
    broken = write(tmp_path / "g.gz", gzip.compress(GOOD)[:-8])  # cut inside the stream
    with pytest.raises(IDXFormatError, match="gzip magic bytes 1f 8b but does not decompress"):
        read_idx(broken)


# --- the loaders -----------------------------------------------------------------------


def fake_mnist(directory, n_train=40, n_test=20, gz=(True, False, True, False), seed=0,
               names=mnist._PARTS):
    """The four files of a small MNIST-like set; returns (X_train, y_train, X_test, y_test)."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    Xtr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    ytr = np.arange(n_train, dtype=np.uint8) % 10
    Xte = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    yte = (np.arange(n_test, dtype=np.uint8) * 3) % 10
    for name, arr, z in zip(names, (Xtr, ytr, Xte, yte), gz):
        write(directory / (name + (".gz" if z else "")), idx_bytes(arr), z)
    return Xtr, ytr, Xte, yte


def test_load_mnist_from_a_path(tmp_path):
    Xtr, ytr, Xte, yte = fake_mnist(tmp_path / "m")
    ds = load_mnist(tmp_path / "m", val=10, normalize=False)
    assert ds.sample_shape == (1, 28, 28) and ds.num_classes == 10 and ds.name == "mnist"
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (30, 10, 20)
    np.testing.assert_array_equal(np.bincount(ds.y_val), np.ones(10))  # stratified
    # the test split is the official one, in file order, scaled to [0, 1]
    np.testing.assert_allclose(ds.X_test[:, 0], Xte / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, yte)
    # train + val are the training rows, each with its own label
    X = np.concatenate([ds.X_train, ds.X_val])[:, 0]
    y = np.concatenate([ds.y_train, ds.y_val])
    key = {Xtr[i].tobytes(): ytr[i] for i in range(len(Xtr))}
    restored = np.rint(X * 255).astype(np.uint8)
    assert sorted(r.tobytes() for r in restored) == sorted(key)
    assert all(key[r.tobytes()] == lab for r, lab in zip(restored, y))
    flat = load_mnist(tmp_path / "m", val=10, flatten=True)
    assert flat.X_train.shape == (30, 784) and flat.mean.shape == (1,)


def test_path_may_be_the_parent_and_dotted_names_work(tmp_path):
    dotted = [n.replace("-idx", ".idx") for n in mnist._PARTS]
    fake_mnist(tmp_path / "fashion-mnist", gz=(False,) * 4, names=dotted)
    ds = load_fashion_mnist(tmp_path, val=0)
    assert len(ds.X_val) == 0 and len(ds.X_train) == 40
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.source.how == "path" and ds.source.directory == tmp_path / "fashion-mnist"
    assert sorted(p.name for p in ds.source.files.values()) == sorted(dotted)


def test_gpunet_data_env_var(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "fashion-mnist")
    fake_mnist(tmp_path / "mnist", n_train=30)
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path))
    source = load_fashion_mnist(val=0).source
    assert source.how == "env" and source.directory == tmp_path / "fashion-mnist"
    assert len(load_dataset("mnist", val=0).X_train) == 30
    fake_mnist(tmp_path / "flat", n_train=50)  # files straight in $GPUNET_DATA
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "flat"))
    assert len(load_fashion_mnist(val=0).X_train) == 50


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    fake_mnist(tmp_path / "env", gz=(True,) * 4)
    os.remove(tmp_path / "env" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError) as err:
        load_fashion_mnist()
    text = str(err.value)
    for needle in (
        str(tmp_path / "env" / "fashion-mnist") + " ($GPUNET_DATA): no such directory",
        str(tmp_path / "env") + " ($GPUNET_DATA): missing t10k-labels-idx1-ubyte[.gz]",
        str(tmp_path / "system") + " (system location): no such directory",
        "sudo apt install dataset-fashion-mnist",
        "GPUNET_DATA=DIR",
    ):
        assert needle in text, text
    assert isinstance(err.value, FileNotFoundError)
    monkeypatch.delenv("GPUNET_DATA")
    with pytest.raises(DatasetNotFoundError, match=r"\$GPUNET_DATA is not set"):
        load_fashion_mnist()


def test_an_explicit_path_is_never_replaced_by_another_copy(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "elsewhere")
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetNotFoundError, match="the path argument"):
        load_fashion_mnist(tmp_path / "typo")
    with pytest.raises(DatasetNotFoundError, match="no such directory"):
        load_mnist(tmp_path / "typo")


def test_missing_mnist_hint(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUNET_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="load_mnist\\(path=DIR\\)"):
        load_mnist()


@pytest.mark.parametrize(
    "part,array,message",
    [
        (0, np.zeros((5, 28, 27), dtype=np.uint8), "expected uint8 images of shape (N, 28, 28)"),
        (1, np.zeros((40, 1), dtype=np.uint8), "expected uint8 labels of shape (N,)"),
        (1, np.zeros(39, dtype=np.uint8), "40 images but"),
        (1, np.full(40, 10, dtype=np.uint8), "labels must be 0..9, found 10"),
        (0, np.zeros((40, 28, 28), dtype=np.float32), "found float32"),
    ],
)
def test_wrong_content_is_named(tmp_path, part, array, message):
    fake_mnist(tmp_path, gz=(False,) * 4)
    path = write(tmp_path / mnist._PARTS[part], idx_bytes(array))
    with pytest.raises(IDXFormatError) as err:
        load_mnist(tmp_path)
    assert message in str(err.value) and str(path) in str(err.value)


# --- the real Fashion-MNIST (Debian package dataset-fashion-mnist) ----------------------

SYSTEM = Path(mnist.FASHION_MNIST_SYSTEM_DIR)
needs_fashion = pytest.mark.skipif(
    not (SYSTEM / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {SYSTEM} (sudo apt install dataset-fashion-mnist)",
)


def _reference_idx(path, header):
    return np.frombuffer(gzip.decompress(path.read_bytes())[header:], dtype=np.uint8)


@needs_fashion
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("GPUNET_DATA", raising=False)
    ds = load_fashion_mnist()
    assert ds.source.how == "system" and ds.source.directory == SYSTEM
    assert (len(ds.X_train) + len(ds.X_val), len(ds.X_val), len(ds.X_test)) == (60000, 6000, 10000)
    assert ds.sample_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.X_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.y_val), np.full(10, 600))  # stratified
    y_test = _reference_idx(SYSTEM / "t10k-labels-idx1-ubyte.gz", 8)
    np.testing.assert_array_equal(ds.y_test, y_test)
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    X_test = _reference_idx(SYSTEM / "t10k-images-idx3-ubyte.gz", 16).reshape(10000, 28, 28)
    np.testing.assert_allclose(ds.X_test[:, 0] * ds.std[0] + ds.mean[0], X_test / 255.0, atol=1e-5)
    # the well-known pixel statistics of the Fashion-MNIST training set
    assert ds.mean[0] == pytest.approx(0.2860, abs=2e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=2e-3)


# --- bounded reading and argument checks (issue 10, items 2 and 14) ----------------------


@pytest.mark.parametrize(
    "blob,messages",
    [
        (b"\x00\x00\x08\x41" + b"\x00\x00\x00\x01" * 65, ["declares 65 dimensions; expected 1 to 64"]),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1), ["more than the limit"]),
        (b"\x00\x00\x0e\x01" + struct.pack(">I", 2**28), ["size mismatch (truncated)"]),
    ],
)
def test_headers_numpy_cannot_hold_are_format_errors(tmp_path, blob, messages):
    with pytest.raises(IDXFormatError) as err:
        read_idx(write(tmp_path / "x-idx", blob))
    for m in messages:
        assert m in str(err.value)


def test_a_header_over_max_bytes_is_refused_before_reading(tmp_path):
    a = np.arange(24, dtype=np.int32)  # 96 bytes of data
    for gz in (False, True):
        path = write(tmp_path / f"a{gz}", idx_bytes(a), gz)
        np.testing.assert_array_equal(read_idx(path, max_bytes=96), a)
        with pytest.raises(IDXFormatError, match=r"\(96 bytes\), more than the limit of max_bytes=95"):
            read_idx(path, max_bytes=95)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ArgumentError, match="max_bytes must be an int >= 0"):
            read_idx(path, max_bytes=bad)
    with pytest.raises(ArgumentError, match="path must be a path"):
        read_idx(3)


def test_gzip_data_beyond_the_header_is_refused_without_reading_it(tmp_path):
    a = np.arange(12, dtype=np.uint8)
    path = write(tmp_path / "more.gz", idx_bytes(a) + b"\x00" * 10**6, gz=True)
    with pytest.raises(IDXFormatError, match=r"after gzip decompression\): size mismatch \(trailing bytes\)"):
        read_idx(path)
    # the CRC is checked at the end of the stream: a flipped data byte is caught
    blob = bytearray(gzip.compress(idx_bytes(a), mtime=0))
    blob[-8] ^= 1
    with pytest.raises(IDXFormatError, match="does not decompress"):
        read_idx(write(tmp_path / "crc.gz", bytes(blob)))


def test_gpunet_data_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    # with a copy in the system location, a typo in GPUNET_DATA must not silently train on it
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    fake_mnist(tmp_path / "system")
    for value, what in ((tmp_path / "typo", "not an existing directory"), (tmp_path / "file", "a file")):
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("GPUNET_DATA", str(value))
        with pytest.raises(DatasetNotFoundError) as err:
            load_fashion_mnist()
        assert f"$GPUNET_DATA is set to '{value}', which is {what}" in str(err.value)
        assert "unset GPUNET_DATA" in str(err.value)


def test_gpunet_data_without_the_dataset_falls_through_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    fake_mnist(tmp_path / "system", gz=(True,) * 4)
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "mine"))
    source = load_fashion_mnist(val=0).source
    assert source.how == "system" and source.directory == tmp_path / "system"
    assert str(source) == (
        f"{tmp_path / 'system'} (system location: train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz); "
        f"not found in $GPUNET_DATA={tmp_path / 'mine'}"
    )
    monkeypatch.delenv("GPUNET_DATA")
    assert load_fashion_mnist(val=0).source.note == ""


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(val=float("nan")), "val must be a finite number"),
        (dict(val=True), "val must be an int"),
        (dict(seed=-1), "seed must be None, an int >= 0"),
        (dict(seed="a"), "seed must be None"),
        (dict(normalize="yes"), "normalize must be True or False"),
        (dict(flatten=1), "flatten must be True or False"),
    ],
)
def test_loader_arguments_are_checked_before_any_file_is_read(tmp_path, kwargs, message):
    with pytest.raises(ArgumentError, match=f"load_mnist: {message}"):
        load_mnist(tmp_path / "not-there", **kwargs)
    with pytest.raises(ArgumentError, match="load_mnist: path must be a path"):
        load_mnist(42)


def test_numpy_scalars_work_as_loader_arguments(tmp_path):
    fake_mnist(tmp_path)
    ref = load_mnist(tmp_path, val=10, seed=3)
    ds = load_mnist(tmp_path, val=np.int64(10), seed=np.int32(3), normalize=np.bool_(True))
    np.testing.assert_array_equal(ds.y_val, ref.y_val)
    np.testing.assert_array_equal(ds.X_train, ref.X_train)
