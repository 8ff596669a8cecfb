"""Atomic .npz checkpoints: round trip without pickle, and no file lost to a failed write."""

import subprocess
import sys

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


def _fail_midway(monkeypatch, exc=OSError("disk full")):  # noqa: B008 (never mutated)
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


# --- crafted and damaged files: one error type, nothing allocated beyond the file (issue 10.13)


def _zip(path, members: dict) -> None:
    """Write ``members`` (name -> raw bytes) as an uncompressed zip: a hand-made .npz."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(header: str, body: bytes = b"") -> bytes:
    """A .npy version 1.0 member with the literal ``header`` (padded as NumPy pads it)."""
    h = header.encode("latin1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + body


def _meta(text: str) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array(text))
    return buf.getvalue()


GOOD_META = '{"format": "gpunet-checkpoint", "version": 1}'


@pytest.mark.parametrize("members,match", [
    # a header that claims 2**40 float64 (8 TiB) with 16 bytes behind it
    ({"w.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }",
                    b"\0" * 16), "__meta__.npy": _meta(GOOD_META)}, "claims shape"),
    ({"w.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", b"\0" * 8),
      "__meta__.npy": _meta(GOOD_META)}, "holds 8 bytes"),
    ({"w.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-4,), }"),
      "__meta__.npy": _meta(GOOD_META)}, "no valid .npy header|shape"),
    ({"w.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,"),  # tokenize error
      "__meta__.npy": _meta(GOOD_META)}, "no valid .npy header"),
    ({"w.npy": _npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
      "__meta__.npy": _meta(GOOD_META)}, "Python objects"),
    ({"w.npy": b"not an npy file", "__meta__.npy": _meta(GOOD_META)}, "no valid .npy header"),
    ({"__meta__.npy": _meta("{not json")}, "not valid JSON"),
    ({"__meta__.npy": _meta("[1, 2]")}, "must be a JSON object"),
    ({"__meta__.npy": _meta('{"format": "gpunet-checkpoint", "version": 1, "x": '
                            '{"__ndarray__": [1], "dtype": "V1000000000"}}')}, "not valid JSON"),
    ({"__meta__.npy": _meta("[" * 100000 + "]" * 100000)}, "not valid JSON"),
    ({"__meta__.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
                           b"\0" * 8)}, "must be a 0-d text array"),
    ({"w.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8)},
     "no '__meta__' entry"),
])
def test_crafted_files_raise_checkpoint_error_naming_the_file(tmp_path, members, match):
    path = tmp_path / "crafted.npz"
    _zip(path, members)
    with pytest.raises(checkpoint.CheckpointError, match=match) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_byte_flips_never_escape_as_another_error(tmp_path):
    """Every single-byte corruption of a real checkpoint loads the same data or raises
    CheckpointError (never JSONDecodeError, KeyError, MemoryError, ...)."""
    path = tmp_path / "c.npz"
    save_npz_atomic(path, {"w": np.arange(6.0).reshape(2, 3), "i": np.arange(3)},
                    {"epoch": 2, "history": {"loss": [1.0, 0.5]}})
    raw = path.read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.npz"
    outcomes = set()
    for pos in rng.choice(len(raw), 300, replace=False):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(flipped))
        try:
            arrays, meta = load_npz(bad)
        except checkpoint.CheckpointError:
            outcomes.add("error")
            continue
        outcomes.add("loaded")
        assert set(arrays) <= {"w", "i"} or meta  # loaded: the zip directory stayed readable
    assert "error" in outcomes


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_npz(tmp_path)


# --- temporary files and permissions (issue 10.16) ------------------------------------------


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    import os
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # a process that has ended
    stale = tmp_path / f".run_last.npz.{dead_pid}.abcd1234.tmp"
    live = tmp_path / f".run_last.npz.{os.getpid()}.abcd1234.tmp"  # a writer that still runs
    old_style = tmp_path / ".run_epoch_3.npz.x1y2z3w4.tmp"  # the naming before process ids
    foreign = tmp_path / ".notes.txt.tmp"  # not ours
    for p in (stale, live, old_style, foreign):
        p.write_bytes(b"partial")
    past = time.time() - 3600
    os.utime(old_style, (past, past))
    save_npz_atomic(tmp_path / "other.npz", {"w": np.ones(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, foreign.name, "other.npz"])


KILL_MID_WRITE = """
import os, signal, sys
import subprocess
import sys

import numpy as np
from gpunet import checkpoint

def killed(f, payload):
    f.write(b"PK\\x03\\x04 partial")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

checkpoint._write_npz = killed
checkpoint.save_npz_atomic(sys.argv[1], {"w": np.ones(3)})
"""


def test_sigkill_mid_write_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    target = tmp_path / "run_last.npz"
    r = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(target)], timeout=60)
    assert r.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".run_last.npz.") and left[0].endswith(".tmp")
    save_npz_atomic(target, {"w": np.zeros(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["run_last.npz"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_follow_the_umask_like_np_savez(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        np.savez(tmp_path / "ref.npz", a=np.ones(1))
        save_npz_atomic(tmp_path / "c.npz", {"a": np.ones(1)})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "c.npz").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "ref.npz").stat().st_mode) == 0o666 & ~umask


def test_a_replaced_file_keeps_its_mode(tmp_path):
    import os
    import stat

    path = save_npz_atomic(tmp_path / "c.npz", {"a": np.ones(1)})
    os.chmod(path, 0o640)
    save_npz_atomic(path, {"a": np.zeros(1)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
