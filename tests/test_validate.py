"""The argument checks every module uses: Python and NumPy numbers accepted alike, bool,
NaN and out-of-range values refused with the argument's name, against plain comparisons."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpunet
from gpunet import _validate as V
from gpunet._validate import ArgumentError

FAST = settings(max_examples=60, deadline=None)
INT_TYPES = st.sampled_from([int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])
FLOAT_TYPES = st.sampled_from([float, np.float16, np.float32, np.float64])
BOUND = st.none() | st.integers(-5, 5)


@FAST
@given(v=st.integers(-100, 100), kind=INT_TYPES, low=BOUND, high=BOUND)
def test_integer_accepts_python_and_numpy_ints_exactly_in_range(v, kind, low, high):
    if kind is not int and not np.can_cast(np.min_scalar_type(v), kind):
        return
    value = kind(v)
    inside = (low is None or v >= low) and (high is None or v <= high)
    if inside:
        out = V.integer("n", value, low=low, high=high)
        assert out == v and type(out) is int
    else:
        with pytest.raises(ArgumentError, match=r"^f: n must be an int .*, got "):
            V.integer("n", value, low=low, high=high, fn="f")


@pytest.mark.parametrize("bad", [True, np.bool_(False), 1.0, np.float32(2), "1", None, [1], 1 + 0j])
def test_integer_refuses_non_ints(bad):
    with pytest.raises(ArgumentError, match=r"n must be an int, got "):
        V.integer("n", bad)
    assert V.integer("n", None, allow_none=True) is None


@FAST
@given(v=st.floats(-10, 10, width=16), kind=FLOAT_TYPES, low=BOUND, high=BOUND,
       low_open=st.booleans(), high_open=st.booleans())
def test_real_accepts_numbers_exactly_in_the_interval(v, kind, low, high, low_open, high_open):
    value = kind(v)
    inside = ((low is None or (v > low if low_open else v >= low))
              and (high is None or (v < high if high_open else v <= high)))
    kw = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    if inside:
        out = V.real("x", value, **kw)
        assert out == v and type(out) is float
    else:
        with pytest.raises(ArgumentError, match=r"^x must be a finite number .*, got "):
            V.real("x", value, **kw)


@pytest.mark.parametrize("bad", [math.nan, np.float32("nan"), math.inf, -np.inf, True, np.bool_(True), "0.5",
                                 None, np.array([0.5]), 1j])
def test_real_refuses_nan_inf_bool_and_non_numbers(bad):
    with pytest.raises(ArgumentError, match="x must be a finite number, got "):
        V.real("x", bad)


def test_real_allows_infinity_only_when_asked():
    assert V.real("x", math.inf, finite=False) == math.inf
    with pytest.raises(ArgumentError, match="x must be a number >= 0.0"):
        V.real("x", -math.inf, low=0.0, finite=False)
    with pytest.raises(ArgumentError):
        V.real("x", math.nan, finite=False)


@pytest.mark.parametrize("value,zero,one,ok", [
    (0.0, False, True, False), (0.0, True, True, True), (1.0, False, True, True), (1.0, True, False, False),
    (np.float32(0.5), False, True, True), (1.5, True, True, False), (-0.1, True, True, False),
])
def test_probability_endpoints(value, zero, one, ok):
    if ok:
        assert V.probability("p", value, zero=zero, one=one) == float(value)
    else:
        with pytest.raises(ArgumentError, match="p must be a finite number in"):
            V.probability("p", value, zero=zero, one=one)


def test_seed():
    g = np.random.default_rng(0)
    assert V.seed("seed", g) is g and V.seed("seed", None) is None and V.seed("seed", np.uint64(7)) == 7
    for bad in (-1, np.int64(-2), 1.5, "abc", True):
        with pytest.raises(ArgumentError, match="seed must be None, an int >= 0 or a numpy.random.Generator"):
            V.seed("seed", bad)


@FAST
@given(h=st.integers(-3, 3), w=st.integers(-3, 3), kind=st.sampled_from([int, np.int64, np.int32]),
       form=st.sampled_from(["int", "tuple", "list"]), low=st.none() | st.integers(0, 1))
def test_pair_with_a_lower_bound(h, w, kind, form, low):
    value = kind(h) if form == "int" else (kind(h), kind(w)) if form == "tuple" else [kind(h), kind(w)]
    expected = (h, h) if form == "int" else (h, w)
    if low is None or min(expected) >= low:
        out = V.pair("f", "stride", value, low=low)
        assert out == expected and all(type(v) is int for v in out)
    else:
        with pytest.raises(ArgumentError, match=rf"^f: stride must be an int >= {low} or a pair of ints >= {low} "):
            V.pair("f", "stride", value, low=low)


@pytest.mark.parametrize("bad", [(1,), (1, 2, 3), (1, 2.0), 2.0, "2", None, (True, 1), True])
def test_pair_refuses_non_pairs(bad):
    with pytest.raises(ArgumentError, match=r"f: k must be an int or a pair of ints \(h, w\), got "):
        V.pair("f", "k", bad)


@pytest.mark.parametrize("value,name", [("float32", "float32"), (np.float64, "float64"), ("f2", "float16"),
                                        (np.dtype("float32"), "float32"), (float, "float64")])
def test_float_dtype_accepts_float_dtypes(value, name):
    assert V.float_dtype("dtype", value) == np.dtype(name)


@pytest.mark.parametrize("bad", [None, "int32", np.int64, bool, "bogus", np.complex64, "float32,float32", 3, "U3"])
def test_float_dtype_refuses_everything_else(bad):
    expected = r"^Linear: dtype must be a floating dtype \('float16', 'float32', 'float64'\)"
    with pytest.raises(ArgumentError, match=expected):
        V.float_dtype("dtype", bad, fn="Linear")


def test_dtype_compares_by_name_across_backends():
    with gpunet.use_backend("strict"):
        s32 = gpunet.asarray(np.ones(2), dtype="float32")
    V.dtype("f", "w", s32, np.dtype("float32"))  # same dtype on another backend: no error
    with pytest.raises(ArgumentError, match=r"f: w must have dtype float64 \(the model's\), got float32; cast it"):
        V.dtype("f", "w", s32, np.dtype("float64"), "the model's")


def test_choice_with_an_unhashable_value():
    with pytest.raises(ArgumentError, match=r"mode must be one of .*'b'.*, got \['a'\]"):
        V.choice("mode", ["a"], {"a", "b"})
