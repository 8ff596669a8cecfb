"""Splits, normalisation, the Dataset container and the batch iterator of gpunet.data."""

import dataclasses

import numpy as np
import pytest

import gpunet
from gpunet._validate import ArgumentError
from gpunet.backend import backend_of
from gpunet.data import (
    BatchIterator,
    Dataset,
    channel_stats,
    iterate_minibatches,
    normalize,
    split_indices,
    train_val_test_split,
)
from gpunet.data.dataset import make_dataset


def _labels(counts, rng):
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return rng.permutation(y)


# --- split_indices ---------------------------------------------------------------------


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("val,test", [(0.1, 0.2), (0.25, 0.0), (30, 17), (0.0, 0.5)])
def test_split_is_a_disjoint_cover(stratify, val, test, rng):
    y = _labels([50, 30, 13, 7], rng)
    tr, va, te = split_indices(y, val=val, test=test, seed=3, stratify=stratify)
    n = len(y)
    want_val = val if isinstance(val, int) else round(val * n)
    want_test = test if isinstance(test, int) else round(test * n)
    assert (len(va), len(te), len(tr)) == (want_val, want_test, n - want_val - want_test)
    everything = np.concatenate([tr, va, te])
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))  # cover, no overlap
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)


def test_split_is_stratified(rng):
    y = _labels([400, 200, 100, 100], rng)
    tr, va, te = split_indices(y, val=0.1, test=0.25, seed=0)
    np.testing.assert_array_equal(np.bincount(y[te]), [100, 50, 25, 25])
    np.testing.assert_array_equal(np.bincount(y[va]), [40, 20, 10, 10])
    np.testing.assert_array_equal(np.bincount(y[tr]), [260, 130, 65, 65])


def test_stratified_split_rounds_to_the_exact_total(rng):
    y = _labels([7, 5, 3, 2, 1], rng)  # 18 samples, fractions that do not divide evenly
    tr, va, te = split_indices(y, val=0.2, test=0.3, seed=1)
    assert (len(va), len(te)) == (round(0.2 * 18), round(0.3 * 18))
    # each class within one sample of its proportional share
    for part, frac in ((va, 0.2), (te, 0.3)):
        share = np.bincount(y[part], minlength=5) - frac * np.bincount(y)
        assert np.all(np.abs(share) < 1 + 1e-9), share


def test_split_is_deterministic_per_seed(rng):
    y = _labels([60, 40], rng)
    a = split_indices(y, val=0.2, test=0.2, seed=7)
    b = split_indices(y, val=0.2, test=0.2, seed=7)
    c = split_indices(y, val=0.2, test=0.2, seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(np.sort(u), np.sort(w)) for u, w in zip(a, c))


def test_split_of_a_count_is_unstratified():
    tr, va, te = split_indices(10, val=2, test=3, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(10))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(val=0.6, test=0.5), "leave 0 of 100 samples for training; at least 1 are needed"),
        (dict(val=1.0), r"val must be a finite number in \[0.0, 1.0\), got 1.0; val is a fraction"),
        (dict(val=-0.1), r"val must be a finite number in \[0.0, 1.0\)"),
        (dict(test=100), r"test must be an int in \[0, 99\], got 100"),
        (dict(val="10%"), "or an int count of them"),
    ],
)
def test_split_rejects_bad_sizes(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        split_indices(np.zeros(100, dtype=int), **kw)


def test_train_val_test_split_keeps_rows_and_labels_together(rng):
    y = _labels([30, 20, 10], rng)
    X = np.arange(len(y) * 2, dtype=np.float32).reshape(-1, 2) + 1000 * y[:, None]
    Xtr, ytr, Xva, yva, Xte, yte = train_val_test_split(X, y, val=0.2, test=0.2, seed=5)
    for Xs, ys in ((Xtr, ytr), (Xva, yva), (Xte, yte)):
        np.testing.assert_array_equal(Xs[:, 0] // 1000, ys)  # row k still has label y[k]
    with pytest.raises(ValueError, match="same number of samples"):
        train_val_test_split(X, y[:-1])


# --- normalisation ---------------------------------------------------------------------


def test_channel_stats_match_numpy(rng):
    scale = np.array([1, 10, 0.1], dtype=np.float32)[:, None, None]
    X = rng.normal(3.0, 2.0, size=(37, 3, 5, 4)).astype(np.float32) * scale
    mean, std = channel_stats(X, block=8)  # several blocks, last one short
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(mean, X64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, X64.std(axis=(0, 2, 3)), rtol=1e-6)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (3,)


def test_channel_stats_of_a_table_are_per_feature_and_constant_features_get_std_1(rng):
    X = rng.normal(size=(20, 4))
    X[:, 2] = 5.0
    mean, std = channel_stats(X)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std[[0, 1, 3]], X.std(axis=0)[[0, 1, 3]], rtol=1e-6)
    assert std[2] == 1.0
    assert np.all(normalize(X, mean, std)[:, 2] == 0)


def test_normalize_does_not_modify_its_input_and_checks_shapes(rng):
    X = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    before = X.copy()
    out = normalize(X, [1.0, -1.0], [2.0, 4.0])
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(out[:, 0], (X[:, 0] - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], (X[:, 1] + 1) / 4, rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match=r"mean and std of shape \(C,\)"):
        normalize(X, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


def test_make_dataset_normalises_with_training_statistics_only(rng):
    y = _labels([40, 40], rng)
    X = rng.uniform(0, 255, size=(80, 3, 4, 4)).astype(np.uint8)
    X_test = np.full((10, 3, 4, 4), 255, dtype=np.uint8)  # far from the training data
    raw = make_dataset("t", X, y, ["a", "b"], X_test=X_test, y_test=np.zeros(10), val=0.25,
                       seed=2, normalize=False, scale=1 / 255)
    ds = make_dataset("t", X, y, ["a", "b"], X_test=X_test, y_test=np.zeros(10), val=0.25,
                      seed=2, normalize=True, scale=1 / 255)
    ref = raw.X_train.astype(np.float64)
    np.testing.assert_allclose(ds.mean, ref.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(ds.std, ref.std(axis=(0, 2, 3)), rtol=1e-5)
    # train is standardised; val and test use the *training* statistics
    np.testing.assert_allclose(ds.X_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X_train.std(axis=(0, 2, 3)), 1, rtol=1e-4)
    shape = (1, 3, 1, 1)
    for name in ("X_val", "X_test"):
        expect = (getattr(raw, name) - ds.mean.reshape(shape)) / ds.std.reshape(shape)
        np.testing.assert_allclose(getattr(ds, name), expect, rtol=1e-5, atol=1e-5)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(raw.X_test, 1.0)  # scale applied: 255 * (1/255)


# --- Dataset ---------------------------------------------------------------------------


def _small_dataset(rng, **kw):
    y = _labels([20, 20, 20], rng)
    X = rng.normal(size=(60, 2, 3, 3)).astype(np.float32)
    return make_dataset("small", X, y, ["x", "y", "z"], val=0.2, test=0.2, seed=0, **kw)


def test_dataset_solver_data_and_metadata(rng):
    ds = _small_dataset(rng)
    data = ds.as_solver_data()
    assert list(data) == ["X_train", "y_train", "X_val", "y_val"]
    assert data["X_train"] is ds.X_train and data["y_val"] is ds.y_val
    assert set(ds.as_solver_data(include_test=True)) == set(data) | {"X_test", "y_test"}
    assert (ds.num_classes, ds.sample_shape, ds.num_features) == (3, (2, 3, 3), 18)
    assert len(ds.X_train) + len(ds.X_val) + len(ds.X_test) == 60
    assert "small" in repr(ds) and "normalised" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.X_train = None


def test_dataset_flatten_keeps_values_and_stats(rng):
    ds = _small_dataset(rng)
    flat = ds.flatten()
    assert flat.X_train.shape == (len(ds.X_train), 18) and flat.is_flat and not ds.is_flat
    np.testing.assert_array_equal(flat.X_test, ds.X_test.reshape(len(ds.X_test), -1))
    assert flat.mean is ds.mean and flat.y_train is ds.y_train
    flat2 = _small_dataset(np.random.default_rng(1234), flatten=True)
    np.testing.assert_array_equal(flat2.X_val, flat.X_val)


def test_dataset_normalized_once(rng):
    raw = _small_dataset(rng, normalize=False)
    assert raw.mean is None and "not normalised" in repr(raw)
    ds = raw.normalized()
    np.testing.assert_allclose(ds.X_train.mean(axis=(0, 2, 3)), 0, atol=1e-6)
    with pytest.raises(ValueError, match="already normalised"):
        ds.normalized()


# --- batches ---------------------------------------------------------------------------


def test_batches_cover_the_data_in_order_on_the_current_backend(backend, rng):
    X = rng.normal(size=(23, 1, 2, 2)).astype(np.float32)
    y = np.arange(23, dtype=np.int64)
    batches = list(BatchIterator(X, y, batch_size=5))
    assert [len(gpunet.to_numpy(b[1])) for b in batches] == [5, 5, 5, 5, 3]
    for Xb, yb in batches:
        assert backend_of(Xb) == backend_of(yb) == backend
    np.testing.assert_array_equal(np.concatenate([gpunet.to_numpy(b[0]) for b in batches]), X)
    np.testing.assert_array_equal(np.concatenate([gpunet.to_numpy(b[1]) for b in batches]), y)


def test_shuffled_batches_are_a_seeded_permutation_per_epoch(backend):
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20, dtype=np.int64)

    def epoch(it):
        pairs = [(gpunet.to_numpy(Xb), gpunet.to_numpy(yb)) for Xb, yb in it]
        for Xb, yb in pairs:
            np.testing.assert_array_equal(Xb, X[yb])  # rows stay with their labels
        order = np.concatenate([yb for _, yb in pairs])
        np.testing.assert_array_equal(np.sort(order), y)  # every sample exactly once
        return order

    it = BatchIterator(X, y, 6, shuffle=True, seed=11)
    first, second = epoch(it), epoch(it)
    assert not np.array_equal(first, y) and not np.array_equal(first, second)
    again = BatchIterator(X, y, 6, shuffle=True, seed=11)  # same seed, same epochs
    np.testing.assert_array_equal(epoch(again), first)
    np.testing.assert_array_equal(epoch(again), second)
    from_gen = BatchIterator(X, y, 6, shuffle=True, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(epoch(from_gen), first)


def test_drop_last_and_len():
    X = np.zeros((23, 3), dtype=np.float32)
    assert len(BatchIterator(X, None, 5)) == 5
    it = BatchIterator(X, None, 5, drop_last=True, shuffle=True, seed=0)
    assert len(it) == 4
    sizes = [len(Xb) for Xb, yb in it]
    assert sizes == [5, 5, 5, 5] and all(yb is None for _, yb in it)
    assert len(list(iterate_minibatches(X, None, 50, drop_last=True))) == 0


def test_one_transfer_per_array_per_batch(monkeypatch, rng):
    import gpunet.data.batches as batches

    calls = []
    real = batches.asarray

    def counting(x, dtype=None):
        calls.append(np.shape(x))
        return real(x, dtype)

    monkeypatch.setattr(batches, "asarray", counting)
    X = rng.normal(size=(1000, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 10, size=1000)
    n = sum(1 for _ in iterate_minibatches(X, y, 128, shuffle=True, seed=0))
    assert n == 8 and len(calls) == 2 * n  # X and y, once each per batch
    assert all(shape[0] <= 128 for shape in calls)  # never the whole dataset


def test_dtype_option_and_device_resident_data(backend, rng):
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = np.arange(12, dtype=np.int64)
    Xd, yd = gpunet.asarray(X), gpunet.asarray(y)  # already on the backend
    got = list(BatchIterator(Xd, yd, 5, shuffle=True, seed=4, dtype="float64"))
    ref = list(BatchIterator(X, y, 5, shuffle=True, seed=4))
    for (Xb, yb), (Xr, yr) in zip(got, ref):
        assert backend_of(Xb) == backend
        np.testing.assert_array_equal(gpunet.to_numpy(yb), gpunet.to_numpy(yr))
        np.testing.assert_array_equal(gpunet.to_numpy(Xb), gpunet.to_numpy(Xr).astype(np.float64))
        assert gpunet.to_numpy(Xb).dtype == np.float64


def test_batch_iterator_rejects_bad_arguments():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        BatchIterator(X, np.zeros(9), 4)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            BatchIterator(X, None, bad)


def test_dataset_is_exported():
    assert Dataset is gpunet.data.Dataset


def test_a_split_must_leave_one_training_row_per_class(rng):
    y = _labels([20] * 10, rng)  # 200 samples, 10 classes
    with pytest.raises(ArgumentError) as err:
        split_indices(y, val=0.5, test=0.48)  # 100 + 96: 4 training rows for 10 classes
    assert ("leave 4 of 200 samples for training; at least 10 are needed (one per class)"
            in str(err.value))
    assert "together at most 190 samples" in str(err.value)
    tr, _, _ = split_indices(y, val=100, test=90)  # exactly one per class is accepted
    assert len(tr) == 10
    with pytest.raises(ArgumentError, match="leave 0 of 5 samples for training; at least 1"):
        split_indices(5, val=3, test=2)


def test_numpy_scalars_are_accepted_and_mean_the_same(rng):
    y = _labels([30, 20, 10], rng)
    ref = split_indices(y, val=0.25, test=10, seed=3)
    got = split_indices(y, val=np.float32(0.25), test=np.int64(10), seed=np.uint8(3),
                        stratify=np.bool_(True))
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(val=True), "val must be an int in [0, 59], got True"),
        (dict(val=np.bool_(False)), "val must be a finite number"),
        (dict(test=float("nan")), "test must be a finite number in [0.0, 1.0), got nan"),
        (dict(val=float("inf")), "val must be a finite number"),
        (dict(seed=-1), "seed must be None, an int >= 0"),
        (dict(seed=1.5), "seed must be None, an int >= 0"),
        (dict(stratify="no"), "stratify must be True or False"),
    ],
)
def test_bool_nan_and_bad_seeds_are_refused_with_the_arguments_name(kw, message, rng):
    with pytest.raises(ArgumentError) as err:
        split_indices(_labels([30, 30], rng), **kw)
    assert str(err.value).startswith("split_indices: ") and message in str(err.value)
