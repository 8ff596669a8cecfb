"""Atomic .npz checkpoints: round trip without pickle, and no file lost to a failed write."""

import numpy as np
import pytest

import gpunet
from gpunet import checkpoint
from gpunet.checkpoint import load_npz, save_npz_atomic


def test_round_trip_arrays_and_json_meta(tmp_path, put, host):
    rng = np.random.default_rng(0)
    arrays = {
        "param/W1": put(rng.normal(size=(3, 4)).astype(np.float32)),
        "param/b1": put(np.zeros(4)),
        "labels": np.arange(5, dtype=np.int64),
        "scalar": np.float64(2.5),
    }
    mt = np.random.Generator(np.random.MT19937(3)).bit_generator.state  # holds an ndarray
    meta = {
        "epoch": 3, "history": {"loss": [1.0, float("nan")], "best": float("inf")},
        "pcg": np.random.default_rng(7).bit_generator.state,  # 128-bit ints
        "mt": mt, "name": "run-ü",
    }
    path = save_npz_atomic(tmp_path / "c.npz", arrays, meta)
    got, got_meta = load_npz(path)
    assert set(got) == set(arrays)
    for k, a in arrays.items():
        np.testing.assert_array_equal(got[k], host(a))
        assert got[k].dtype == host(a).dtype
    assert got_meta["epoch"] == 3 and got_meta["name"] == "run-ü"
    assert np.isnan(got_meta["history"]["loss"][1]) and got_meta["history"]["best"] == np.inf
    assert got_meta["pcg"] == meta["pcg"]
    # The restored states reproduce the generators' streams.
    g = np.random.default_rng()
    g.bit_generator.state = got_meta["pcg"]
    assert g.random() == np.random.default_rng(7).random()
    g = np.random.Generator(np.random.MT19937())
    g.bit_generator.state = got_meta["mt"]
    assert g.random() == np.random.Generator(np.random.MT19937(3)).random()


def test_file_is_plain_npz_loadable_without_pickle(tmp_path):
    save_npz_atomic(tmp_path / "c.npz", {"a": np.ones(2)}, {"k": [1, 2]})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert set(z.files) == {"a", checkpoint.META_KEY}
        assert z[checkpoint.META_KEY].dtype.kind == "U" and z[checkpoint.META_KEY].shape == ()


def _fail_midway(monkeypatch, exc=OSError("disk full")):
    """Make the next checkpoint write put some bytes on disk, then crash."""

    def broken(f, payload):
        f.write(b"PK\x03\x04 partial zip")
        raise exc

    monkeypatch.setattr(checkpoint, "_write_npz", broken)


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, exc):
    path = tmp_path / "run_best.npz"
    save_npz_atomic(path, {"w": np.arange(3.0)}, {"epoch": 1})
    before = path.read_bytes()
    _fail_midway(monkeypatch, exc)
    with pytest.raises(type(exc)):
        save_npz_atomic(path, {"w": np.arange(3.0) + 10}, {"epoch": 2})
    assert path.read_bytes() == before
    arrays, meta = load_npz(path)
    np.testing.assert_array_equal(arrays["w"], np.arange(3.0))
    assert meta["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_best.npz"]


def test_failed_rename_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save_npz_atomic(path, {"w": np.ones(2)})

    def no_replace(src, dst):
        raise PermissionError("replace failed")

    monkeypatch.setattr(checkpoint.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        save_npz_atomic(path, {"w": np.zeros(2)})
    np.testing.assert_array_equal(load_npz(path)[0]["w"], np.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_write_creates_parent_directories(tmp_path):
    path = save_npz_atomic(tmp_path / "a" / "b" / "c.npz", {"w": np.ones(1)})
    assert path.exists()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="not a gpunet checkpoint"):
        load_npz(tmp_path / "plain.npz")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(tmp_path / "trunc.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable"):
        load_npz(tmp_path / "obj.npy")


def test_bad_arrays_and_meta_raise(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        save_npz_atomic(tmp_path / "c.npz", {"o": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="reserved"):
        save_npz_atomic(tmp_path / "c.npz", {checkpoint.META_KEY: np.ones(1)})
    with pytest.raises(TypeError, match="JSON"):
        save_npz_atomic(tmp_path / "c.npz", {}, {"f": object()})
    assert list(tmp_path.iterdir()) == []


def test_version_mismatch_raises(tmp_path):
    np.savez(tmp_path / "v.npz", **{checkpoint.META_KEY: np.array(
        '{"format": "gpunet-checkpoint", "version": 99}')})
    with pytest.raises(ValueError, match="version 99"):
        load_npz(tmp_path / "v.npz")


def test_device_arrays_are_saved_from_the_device(tmp_path):
    with gpunet.use_backend("strict"):
        a = gpunet.asarray(np.arange(4.0))
    save_npz_atomic(tmp_path / "c.npz", {"a": a})
    np.testing.assert_array_equal(load_npz(tmp_path / "c.npz")[0]["a"], np.arange(4.0))
