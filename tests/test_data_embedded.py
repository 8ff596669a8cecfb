"""The datasets shipped inside gpunet: digits and breast cancer, checked against an
independent parse of the bundled CSV files and the published dataset facts."""

import csv
import gzip
import hashlib

import numpy as np
import pytest

import gpunet
from gpunet._validate import ArgumentError
from gpunet.data import load_breast_cancer, load_dataset, load_digits
from gpunet.data.embedded import BREAST_CANCER_FILE, DIGITS_FILE, FILES


def _csv_rows(path, opener=open):
    with opener(path, "rt") as f:
        return [row for row in csv.reader(f)]


def _sorted_rows(a):
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    return a[np.lexsort(a.T[::-1])]


def test_files_and_credits_ship_in_the_package():
    credits = (FILES / "CREDITS.md").read_text()
    for needle in ("CC BY 4.0", "UCI", "scikit-learn", "Alpaydin", "Wolberg"):
        assert needle in credits
    for path in (DIGITS_FILE, BREAST_CANCER_FILE):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in credits, f"{path.name} differs from the copy recorded in CREDITS.md"


def test_digits_facts():
    ds = load_digits(normalize=False)
    assert ds.name == "digits" and ds.classes == tuple("0123456789")
    assert ds.sample_shape == (1, 8, 8) and ds.X_train.dtype == np.float32
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert y.dtype == np.int64
    # class counts of the UCI optdigits test set (1797 samples)
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert (len(ds.y_val), len(ds.y_test)) == (round(0.1 * 1797), round(0.2 * 1797))
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert X.min() == 0.0 and X.max() == 1.0  # 0..16 scaled by 1/16


def test_digits_splits_are_the_csv_rows():
    rows = np.array(_csv_rows(DIGITS_FILE, gzip.open), dtype=np.float64)  # independent parse
    assert rows.shape == (1797, 65)
    ds = load_digits(normalize=False, flatten=True, seed=3)
    ours = np.concatenate([
        np.column_stack([ds.X_train * 16, ds.y_train]),
        np.column_stack([ds.X_val * 16, ds.y_val]),
        np.column_stack([ds.X_test * 16, ds.y_test]),
    ])
    np.testing.assert_array_equal(_sorted_rows(ours), _sorted_rows(rows))
    # one image: the first CSV row is a zero (8x8, row-major)
    first = rows[0, :64].reshape(8, 8)
    assert rows[0, 64] == 0 and first[0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_digits_normalised_with_train_stats_and_seeded():
    raw = load_digits(normalize=False, seed=1)
    ds = load_digits(seed=1)
    tr = raw.X_train.astype(np.float64)
    np.testing.assert_allclose(ds.mean, [tr.mean()], rtol=1e-5)
    np.testing.assert_allclose(ds.std, [tr.std()], rtol=1e-5)
    np.testing.assert_allclose(ds.X_test, (raw.X_test - ds.mean[0]) / ds.std[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(load_digits(seed=1).y_train, ds.y_train)
    assert not np.array_equal(load_digits(seed=2).y_train, ds.y_train)


def test_breast_cancer_facts():
    rows = _csv_rows(BREAST_CANCER_FILE)
    assert rows[0] == ["569", "30", "malignant", "benign"]
    table = np.array(rows[1:], dtype=np.float64)
    ds = load_breast_cancer(normalize=False)
    assert ds.classes == ("malignant", "benign") and ds.sample_shape == (30,)
    assert ds.info["feature_names"][:2] == ("mean radius", "mean texture")
    assert ds.info["feature_names"][10] == "radius error" and ds.info["feature_names"][20] == "worst radius"
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    np.testing.assert_array_equal(np.bincount(y), [212, 357])  # 212 malignant, 357 benign
    # published ranges: radius (mean) 6.981..28.11, area (worst) 185.2..4254
    assert X[:, 0].min() == pytest.approx(6.981) and X[:, 0].max() == pytest.approx(28.11)
    assert X[:, 23].min() == pytest.approx(185.2) and X[:, 23].max() == pytest.approx(4254.0)
    ours = np.column_stack([X.astype(np.float64), y])
    np.testing.assert_allclose(_sorted_rows(ours), _sorted_rows(table), rtol=1e-6)


def test_breast_cancer_is_standardised_per_feature():
    ds = load_breast_cancer()
    assert ds.mean.shape == ds.std.shape == (30,)
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X_train.std(axis=0), 1, rtol=1e-4)


def test_loaded_arrays_do_not_share_memory_with_the_cache():
    a = load_digits(normalize=False)
    a.X_train[...] = -1
    b = load_digits(normalize=False)
    assert b.X_train.min() == 0.0


def test_load_dataset_by_name():
    assert load_dataset("digits", val=0.2).y_val.shape == (round(0.2 * 1797),)
    assert load_dataset("breast_cancer").name == "breast-cancer"
    assert load_dataset("Breast-Cancer", flatten=True).sample_shape == (30,)
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("digits", "/tmp")


def test_solver_data_feeds_a_linear_model():
    # end to end: a least-squares linear classifier on the normalised flat digits data
    # reaches the accuracy such a model is known to get (> 90 %), so the splits,
    # scaling and labels line up.
    ds = load_digits(flatten=True)
    data = ds.as_solver_data()
    A = np.column_stack([data["X_train"], np.ones(len(data["X_train"]))])
    W = np.linalg.lstsq(A, np.eye(10)[data["y_train"]], rcond=None)[0]
    Av = np.column_stack([data["X_val"], np.ones(len(data["X_val"]))])
    assert np.mean(np.argmax(Av @ W, axis=1) == data["y_val"]) > 0.9
    assert gpunet.to_numpy(gpunet.asarray(data["X_train"])).dtype == np.float32


def test_unknown_keywords_name_the_argument_and_the_accepted_ones():
    with pytest.raises(ArgumentError) as err:
        load_dataset("digits", shuffle=True)
    text = str(err.value)
    assert "load_dataset('digits'): unknown argument(s) 'shuffle'" in text
    assert "accepted: val, test, seed, stratify, normalize, flatten" in text
    assert "BatchIterator(..., shuffle=True)" in text
    with pytest.raises(ArgumentError, match=r"unknown argument\(s\) 'test', 'batch_size'; accepted: val, seed,"):
        load_dataset("mnist", test=0.1, batch_size=3)  # the official test set: no `test`
    with pytest.raises(ArgumentError, match="name must be a str"):
        load_dataset(None)


def test_split_options_of_the_shipped_datasets_are_checked():
    with pytest.raises(ArgumentError, match="leave 1 of 1797 samples for training; at least 10"):
        load_digits(val=0.5, test=0.5)
    with pytest.raises(ArgumentError, match="load_breast_cancer: seed must be None, an int >= 0"):
        load_dataset("breast-cancer", seed=-1)
    ds = load_digits(val=np.float64(0.2), test=np.int32(100), seed=np.int64(1))
    assert (len(ds.y_val), len(ds.y_test)) == (round(0.2 * 1797), 100)


def test_shipped_datasets_say_where_they_came_from():
    for loader, name in ((load_digits, "digits.csv.gz"), (load_breast_cancer, "breast_cancer.csv")):
        source = loader().source
        assert source.how == "package" and source.directory == FILES
        assert str(source) == f"{FILES} (shipped with gpunet: {name})"
