"""Bad input to every layer function gets an error that names the function, the argument
and what was expected (DESIGN principle 7), and the layers' keyword defaults do what
their docstrings say. Written against the mutants of ``gpunet/layers`` that survived the
value and gradient tests (``scripts/mutation.sh layers``)."""

import numpy as np
import pytest

from gpunet import layers as L
from gpunet.layers import conv as conv_layer

RNG = np.random.default_rng(0)


def a(*shape):
    return RNG.standard_normal(shape)


X2, G3 = a(4, 3), a(3)
X4 = a(2, 3, 4, 4)
CONV_W, CONV_B = a(2, 3, 3, 3), a(2)
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
CONV = {"stride": 1, "pad": 1}
_, BN_CACHE = L.batchnorm_forward(X2, G3, G3, {"mode": "train"})
_, LN_CACHE = L.layernorm_forward(X2, G3, G3, {})
_, GN_CACHE = L.spatial_groupnorm_forward(X4, a(1, 3, 1, 1), a(1, 3, 1, 1), 3, {})
_, CONV_CACHE = L.conv_forward(X4, CONV_W, CONV_B, CONV)


def _bn_backward(backward):
    mode, _, xc, inv_std, gamma = BN_CACHE
    return lambda dout, xhat: backward(dout, (mode, xhat, xc, inv_std, gamma))


# name -> (call taking the checked arrays as keywords, those arrays (valid, float64))
CALLS = {
    "affine_forward": (lambda x, w, b: L.affine_forward(x, w, b), dict(x=a(2, 3), w=a(3, 4), b=a(4))),
    "affine_backward": (
        lambda dout, x, w: L.affine_backward(dout, (x, w, a(4))),
        dict(dout=a(2, 4), x=a(2, 3), w=a(3, 4)),
    ),
    "relu_forward": (L.relu_forward, dict(x=X2)),
    "relu_backward": (lambda dout, x: L.relu_backward(dout, x), dict(dout=X2, x=X2)),
    "leaky_relu_forward": (L.leaky_relu_forward, dict(x=X2)),
    "leaky_relu_backward": (lambda dout, x: L.leaky_relu_backward(dout, (x, 0.1)), dict(dout=X2, x=X2)),
    "sigmoid_forward": (L.sigmoid_forward, dict(x=X2)),
    "sigmoid_backward": (lambda dout, y: L.sigmoid_backward(dout, y), dict(dout=X2, y=X2)),
    "tanh_forward": (L.tanh_forward, dict(x=X2)),
    "tanh_backward": (lambda dout, y: L.tanh_backward(dout, y), dict(dout=X2, y=X2)),
    "batchnorm_forward": (
        lambda x, gamma, beta, running_mean, running_var: L.batchnorm_forward(
            x, gamma, beta, {"mode": "train", "running_mean": running_mean, "running_var": running_var}
        ),
        dict(x=X2, gamma=G3, beta=G3, running_mean=G3, running_var=G3**2),
    ),
    "batchnorm_backward": (_bn_backward(L.batchnorm_backward), dict(dout=X2, xhat=X2)),
    "batchnorm_backward_alt": (_bn_backward(L.batchnorm_backward_alt), dict(dout=X2, xhat=X2)),
    "spatial_batchnorm_forward": (lambda x: L.spatial_batchnorm_forward(x, G3, G3, {"mode": "train"}), dict(x=X4)),
    "spatial_batchnorm_backward": (
        lambda dout: L.spatial_batchnorm_backward(dout, L.spatial_batchnorm_forward(X4, G3, G3, {"mode": "train"})[1]),
        dict(dout=X4),
    ),
    "layernorm_forward": (
        lambda x, gamma, beta: L.layernorm_forward(x, gamma, beta, {}),
        dict(x=X2, gamma=G3, beta=G3),
    ),
    "layernorm_backward": (
        lambda dout, xhat: L.layernorm_backward(dout, (xhat,) + LN_CACHE[1:]),
        dict(dout=X2, xhat=X2),
    ),
    "spatial_groupnorm_forward": (
        lambda x, gamma, beta: L.spatial_groupnorm_forward(x, gamma, beta, 3, {}),
        dict(x=X4, gamma=a(1, 3, 1, 1), beta=a(1, 3, 1, 1)),
    ),
    "spatial_groupnorm_backward": (
        lambda dout, xhat: L.spatial_groupnorm_backward(dout, (xhat,) + GN_CACHE[1:]),
        dict(dout=X4, xhat=X4),
    ),
    "dropout_forward": (lambda x: L.dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 1}), dict(x=X2)),
    "dropout_backward": (
        lambda dout: L.dropout_backward(dout, L.dropout_forward(X2, {"p": 0.5, "mode": "train", "seed": 1})[1]),
        dict(dout=X2),
    ),
    "conv_forward": (lambda x, w, b: L.conv_forward(x, w, b, CONV), dict(x=X4, w=CONV_W, b=CONV_B)),
    "conv_backward": (lambda dout, w: L.conv_backward(dout, (w,) + CONV_CACHE[1:]), dict(dout=a(2, 2, 4, 4), w=CONV_W)),
    "max_pool_forward": (lambda x: L.max_pool_forward(x, POOL), dict(x=X4)),
    "max_pool_backward": (
        lambda dout, x: L.max_pool_backward(dout, (x,) + L.max_pool_forward(X4, POOL)[1][1:]),
        dict(dout=a(2, 3, 2, 2), x=X4),
    ),
    "avg_pool_forward": (lambda x: L.avg_pool_forward(x, POOL), dict(x=X4)),
    "avg_pool_backward": (
        lambda dout: L.avg_pool_backward(dout, L.avg_pool_forward(X4, POOL)[1]),
        dict(dout=a(2, 3, 2, 2)),
    ),
}

# sandwich layers report the checks of the layer they start with
SANDWICHES = {
    "affine_relu_forward": (
        "affine_relu_forward",
        lambda x, w, b: L.affine_relu_forward(x, w, b),
        dict(x=a(2, 3), w=a(3, 4), b=a(4)),
    ),
    "affine_relu_backward": (
        "relu_backward",
        lambda dout, x: L.affine_relu_backward(dout, ((a(2, 3), a(3, 4), a(4)), x)),
        dict(dout=a(2, 4), x=a(2, 4)),
    ),
    "conv_relu_pool_forward": (
        "conv_forward",
        lambda x, w, b: L.conv_relu_pool_forward(x, w, b, CONV, POOL),
        dict(x=X4, w=CONV_W, b=CONV_B),
    ),
    "conv_relu_pool_backward": (
        "max_pool_backward",
        lambda dout, x: L.conv_relu_pool_backward(
            dout, (lambda c: (c[0], x, c[2]))(L.conv_relu_pool_forward(X4, CONV_W, CONV_B, CONV, POOL)[1])
        ),
        dict(dout=a(2, 2, 2, 2), x=a(2, 2, 4, 4)),
    ),
}

ALL = {name: (name, call, arrays) for name, (call, arrays) in CALLS.items()} | SANDWICHES


@pytest.mark.parametrize("name", list(ALL))
def test_every_array_argument_must_be_floating_and_share_one_dtype(name):
    fn, call, arrays = ALL[name]
    call(**arrays)  # the valid call works
    for arg in arrays:
        with pytest.raises(ValueError, match=rf"^{fn}: {arg} must be a real floating array .*, got int64"):
            call(**(arrays | {arg: arrays[arg].astype(np.int64)}))
        if len(arrays) > 1:
            with pytest.raises(ValueError, match=rf"^{fn}: all inputs must share one dtype .*{arg}=float32"):
                call(**(arrays | {arg: arrays[arg].astype(np.float32)}))


def _wrong(arrays, arg):
    return arrays | {arg: np.zeros(arrays[arg].shape + (1,))}


# (name, argument given one axis too many, the expected shape and why, as the message says it)
SHAPES = [
    ("affine_backward", "dout", r"\(2, 4\) \(N, M of the forward pass\)"),
    ("relu_backward", "dout", r"\(4, 3\) \(the shape of x\)"),
    ("leaky_relu_backward", "dout", r"\(4, 3\) \(the shape of x\)"),
    ("sigmoid_backward", "dout", r"\(4, 3\) \(the shape of x\)"),
    ("tanh_backward", "dout", r"\(4, 3\) \(the shape of x\)"),
    ("batchnorm_backward", "dout", r"\(4, 3\) \(\(N, D\) of the forward pass\)"),
    ("batchnorm_backward_alt", "dout", r"\(4, 3\) \(\(N, D\) of the forward pass\)"),
    ("spatial_batchnorm_backward", "dout", r"\(2, 3, 4, 4\) \(x of the forward pass\)"),
    ("layernorm_backward", "dout", r"\(4, 3\) \(\(N, D\) of the forward pass\)"),
    ("spatial_groupnorm_backward", "dout", r"\(2, 3, 4, 4\) \(x of the forward pass\)"),
    ("dropout_backward", "dout", r"\(4, 3\) \(the shape of x\)"),
    ("conv_backward", "dout", r"\(2, 2, 4, 4\) \(\(N, F, OH, OW\) of the forward pass\)"),
    ("max_pool_backward", "dout", r"\(2, 3, 2, 2\) \(\(N, C, OH, OW\) of the forward pass\)"),
    ("avg_pool_backward", "dout", r"\(2, 3, 2, 2\) \(\(N, C, OH, OW\) of the forward pass\)"),
    ("affine_relu_backward", "dout", r"\(2, 4\) \(the shape of x\)"),
    ("conv_relu_pool_backward", "dout", r"\(2, 2, 2, 2\) \(\(N, C, OH, OW\) of the forward pass\)"),
]


@pytest.mark.parametrize("name,arg,expected", SHAPES, ids=[s[0] for s in SHAPES])
def test_an_argument_of_the_wrong_shape_is_named_with_the_shape_expected(name, arg, expected):
    fn, call, arrays = ALL[name]
    with pytest.raises(ValueError, match=rf"^{fn}: {arg} must have shape {expected}, got"):
        call(**_wrong(arrays, arg))


# (name, keyword arrays that are wrong, the start of the message)
BAD = [
    ("affine_forward", dict(x=a(3)), r"affine_forward: x must have shape \(N, d_1, ..., d_k\)"),
    ("affine_forward", dict(w=a(4, 4)), r"affine_forward: w must have shape \(D, M\) with D = 3"),
    ("affine_forward", dict(w=a(3)), r"affine_forward: w must have 2 dimensions \(D, M\)"),
    ("affine_forward", dict(b=a(3)), r"affine_forward: b must have shape \(4,\) \(M = w.shape\[1\]\)"),
    ("affine_backward", dict(x=a(2, 4)), r"affine_backward: w must have shape \(D, M\) with D = 4"),
    ("affine_relu_forward", dict(x=a(2, 4)), r"affine_relu_forward: w must have shape \(D, M\) with D = 4"),
    ("batchnorm_forward", dict(x=a(2, 3, 1)), r"batchnorm_forward: x must have 2 dimensions \(N, D\); use spatial"),
    ("batchnorm_forward", dict(gamma=a(4)), r"batchnorm_forward: gamma must have shape \(3,\) \(D = x.shape\[1\]\)"),
    ("batchnorm_forward", dict(beta=a(4)), r"batchnorm_forward: beta must have shape \(3,\) \(D = x.shape\[1\]\)"),
    ("batchnorm_forward", dict(running_mean=a(4)), r"batchnorm_forward: bn_param\['running_mean'\] must have shape"),
    ("batchnorm_forward", dict(running_var=a(4)), r"batchnorm_forward: bn_param\['running_var'\] must have shape"),
    (
        "spatial_batchnorm_forward",
        dict(x=a(2, 3)),
        r"spatial_batchnorm_forward: x must have 4 dimensions \(N, C, H, W\)",
    ),
    ("layernorm_forward", dict(x=a(2, 3, 1)), r"layernorm_forward: x must have 2 dimensions \(N, D\), got"),
    ("layernorm_forward", dict(gamma=a(4)), r"layernorm_forward: gamma must have shape \(3,\) \(D = x.shape\[1\]\)"),
    ("layernorm_forward", dict(beta=a(4)), r"layernorm_forward: beta must have shape \(3,\) \(D = x.shape\[1\]\)"),
    (
        "spatial_groupnorm_forward",
        dict(x=a(2, 3)),
        r"spatial_groupnorm_forward: x must have 4 dimensions \(N, C, H, W\)",
    ),
    (
        "spatial_groupnorm_forward",
        dict(gamma=a(3)),
        r"spatial_groupnorm_forward: gamma must have shape \(1, 3, 1, 1\) \(\(1, C, 1, 1\) with C = x.shape\[1\]\)",
    ),
    (
        "spatial_groupnorm_forward",
        dict(beta=a(3)),
        r"spatial_groupnorm_forward: beta must have shape \(1, 3, 1, 1\) \(\(1, C, 1, 1\) with C = x.shape\[1\]\)",
    ),
    ("conv_forward", dict(x=a(2, 3, 4)), r"conv_forward: x must have 4 dimensions \(N, C, H, W\)"),
    ("conv_forward", dict(w=a(2, 3, 3)), r"conv_forward: w must have 4 dimensions \(F, C, HH, WW\)"),
    ("conv_forward", dict(b=a(3)), r"conv_forward: b must have shape \(2,\) \(F = w.shape\[0\]\)"),
    ("conv_forward", dict(w=a(2, 3, 7, 7)), r"conv_forward: the height is too small"),
    ("max_pool_forward", dict(x=a(2, 3, 4)), r"max_pool_forward: x must have 4 dimensions \(N, C, H, W\)"),
    ("avg_pool_forward", dict(x=a(2, 3, 4)), r"avg_pool_forward: x must have 4 dimensions \(N, C, H, W\)"),
    ("avg_pool_forward", dict(x=a(2, 3, 1, 4)), r"avg_pool_forward: the height 1 of x is smaller than the window 2"),
    ("conv_relu_pool_forward", dict(x=a(2, 3, 4)), r"conv_forward: x must have 4 dimensions"),
    (
        "conv_relu_pool_forward",
        dict(w=a(2, 3, 6, 6)),
        r"max_pool_forward: the height 1 of x is smaller than the window",
    ),
]


@pytest.mark.parametrize("name,bad,message", BAD, ids=[f"{b[0]}-{'-'.join(b[1])}" for b in BAD])
def test_wrong_dimensions_and_shapes_are_named(name, bad, message):
    fn, call, arrays = ALL[name]
    with pytest.raises(ValueError, match="^" + message):
        call(**(arrays | bad))


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: L.layernorm_forward(X2, G3, G3, {"momentum": 0.9}),
            r"layernorm_forward: unknown ln_param key\(s\) \['momentum'\]",
        ),
        (lambda: L.layernorm_forward(X2, G3, G3, {"eps": 0.0}), r"layernorm_forward: ln_param\['eps'\] must be"),
        (
            lambda: L.spatial_groupnorm_forward(X4, a(1, 3, 1, 1), a(1, 3, 1, 1), 3, {"foo": 1}),
            r"spatial_groupnorm_forward: unknown gn_param key\(s\) \['foo'\]",
        ),
        (
            lambda: L.spatial_groupnorm_forward(X4, a(1, 3, 1, 1), a(1, 3, 1, 1), 2, {}),
            r"spatial_groupnorm_forward: G = 2 groups must divide the C = 3 channels of x",
        ),
        (
            lambda: L.spatial_groupnorm_forward(X4, a(1, 3, 1, 1), a(1, 3, 1, 1), 0, {}),
            r"spatial_groupnorm_forward: G must be",
        ),
        (
            lambda: L.spatial_groupnorm_forward(X4, a(1, 3, 1, 1), a(1, 3, 1, 1), 3, {"eps": 0}),
            r"spatial_groupnorm_forward: gn_param\['eps'\] must be",
        ),
        (
            lambda: L.batchnorm_forward(X2, G3, G3, {"mode": "train", "eps": -1.0}),
            r"batchnorm_forward: bn_param\['eps'\]",
        ),
        (
            lambda: L.batchnorm_forward(X2, G3, G3, {"mode": "train", "momentum": 2.0}),
            r"batchnorm_forward: bn_param\['momentum'\] must be",
        ),
        (
            lambda: L.batchnorm_forward(X2[:1], G3, G3, {"mode": "train"}),
            r"batchnorm_forward: training mode needs at least 2 samples",
        ),
        (
            lambda: L.dropout_forward(X2, {"p": 0.5, "mode": "eval"}),
            r"dropout_forward: dropout_param\['mode'\] must be 'train' or 'test'",
        ),
        (
            lambda: L.dropout_forward(X2, {"p": 0.5, "mode": "train", "foo": 1}),
            r"dropout_forward: unknown dropout_param key",
        ),
        (
            lambda: L.dropout_forward(X2, {"p": 0.0, "mode": "train"}),
            r"dropout_forward: dropout_param\['p'\] \(the keep probability\) must be",
        ),
        (
            lambda: L.dropout_forward(X2, {"p": 0.5, "mode": "train", "seed": -1}),
            r"dropout_forward: dropout_param\['seed'\] must be",
        ),
        (
            lambda: L.dropout_forward(X2, {"p": 0.5, "mode": "train", "rng": 3}),
            r"dropout_forward: dropout_param\['rng'\] must be a numpy.random.Generator, got 3",
        ),
        (
            lambda: L.max_pool_forward(X4, {"pool_height": 0, "pool_width": 2}),
            r"max_pool_forward: pool_param\['pool_height'\] must be",
        ),
        (
            lambda: L.max_pool_forward(X4, {"pool_height": 2, "pool_width": 0}),
            r"max_pool_forward: pool_param\['pool_width'\] must be",
        ),
        (
            lambda: L.avg_pool_forward(X4, {"pool_height": 2, "pool_width": 2, "stride": 0}),
            r"avg_pool_forward: pool_param\['stride'\]",
        ),
        (lambda: L.conv_forward(X4, CONV_W, CONV_B, {"stride": 0}), r"conv_forward: conv_param\['stride'\] must be"),
        (lambda: L.conv_forward(X4, CONV_W, CONV_B, {"pad": -1}), r"conv_forward: conv_param\['pad'\] must be"),
        (
            lambda: L.conv_forward(X4, CONV_W, CONV_B, {"dilation": 0}),
            r"conv_forward: conv_param\['dilation'\] must be",
        ),
        (lambda: L.conv_forward(X4, CONV_W, CONV_B, {"padding": 1}), r"conv_forward: unknown conv_param key"),
        (lambda: L.leaky_relu_forward(X2, -0.1), r"leaky_relu_forward: negative_slope must be"),
        (lambda: conv_layer.set_column_budget(0), r"set_column_budget: nbytes must be an int >= 1"),
    ],
)
def test_parameter_errors_name_the_function_and_the_parameter(call, message):
    with pytest.raises(ValueError, match="^" + message):
        call()


def test_dropout_param_with_a_generator_draws_the_mask_from_it():
    x = np.ones((5, 8))
    out, _ = L.dropout_forward(x, {"p": 0.5, "mode": "train", "rng": np.random.default_rng(9)})
    np.testing.assert_array_equal(out, np.where(np.random.default_rng(9).random((5, 8)) < 0.5, 2.0, 0.0))


def test_compute_dx_defaults_to_true_in_every_backward_that_takes_it():
    # the sandwich layers pass compute_dx through; their default is to compute dx
    x, w, b = a(2, 3), a(3, 4), a(4)
    assert L.affine_relu_backward(a(2, 4), L.affine_relu_forward(x, w, b)[1])[0].shape == x.shape
    assert L.affine_backward(a(2, 4), L.affine_forward(x, w, b)[1])[0].shape == x.shape
    out, cache = L.conv_relu_forward(X4, CONV_W, CONV_B, CONV)
    assert L.conv_relu_backward(np.ones(out.shape), cache)[0].shape == X4.shape
    out, cache = L.conv_relu_pool_forward(X4, CONV_W, CONV_B, CONV, POOL)
    assert L.conv_relu_pool_backward(np.ones(out.shape), cache)[0].shape == X4.shape
    out, cache = L.conv_bn_relu_forward(X4, CONV_W, CONV_B, G3[:2], G3[:2], CONV, {"mode": "train"})
    assert L.conv_bn_relu_backward(np.ones(out.shape), cache)[0].shape == X4.shape


def test_a_column_budget_keeps_the_input_instead_of_the_columns():
    # the generic Ops' memory contract (ops.ConvSaved): a batch whose columns exceed the budget
    # is split and the forward pass keeps x, not the columns; the values do not change
    import gpunet

    with gpunet.use_backend("strict"):
        x, w, b = (gpunet.asarray(v) for v in (a(3, 2, 5, 5), a(2, 2, 3, 3), a(2)))
    whole, cache_whole = L.conv_forward(x, w, b, CONV)
    pooled_whole, pool_cache_whole = L.conv_relu_pool_forward(x, w, b, CONV, POOL)
    old = conv_layer.set_column_budget(1)
    try:
        split, cache_split = L.conv_forward(x, w, b, CONV)
        pooled_split, pool_cache_split = L.conv_relu_pool_forward(x, w, b, CONV, POOL)
    finally:
        conv_layer.set_column_budget(old)
    assert cache_whole[2].cols is not None and cache_whole[2].x is None
    assert cache_split[2].cols is None and cache_split[2].x is x
    assert pool_cache_whole[0][2].cols is not None and pool_cache_split[0][2].cols is None
    host = gpunet.to_numpy
    np.testing.assert_allclose(host(split), host(whole), rtol=1e-12)
    np.testing.assert_allclose(host(pooled_split), host(pooled_whole), rtol=1e-12)


def test_sandwich_backwards_skip_dx_when_asked():
    x, w, b = a(2, 3), a(3, 4), a(4)
    cases = [
        (L.affine_relu_backward, a(2, 4), L.affine_relu_forward(x, w, b)[1]),
        (L.conv_relu_backward, None, L.conv_relu_forward(X4, CONV_W, CONV_B, CONV)),
        (L.conv_relu_pool_backward, None, L.conv_relu_pool_forward(X4, CONV_W, CONV_B, CONV, POOL)),
        (
            L.conv_bn_relu_backward,
            None,
            L.conv_bn_relu_forward(X4, CONV_W, CONV_B, G3[:2], G3[:2], CONV, {"mode": "train"}),
        ),
    ]
    for backward, dout, cache in cases:
        if dout is None:
            out, cache = cache
            dout = np.linspace(-1, 1, out.size).reshape(out.shape)
        full = backward(dout, cache)
        skipped = backward(dout, cache, compute_dx=False)
        assert full[0] is not None and skipped[0] is None, backward.__name__
        for got, want in zip(skipped[1:], full[1:], strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan", "inf"])
def test_a_bad_column_budget_in_the_environment_is_refused_in_process(monkeypatch, value):
    # tests/test_numpy_ops.py checks this in a fresh interpreter; here in this one, so that
    # a mutation tester (which mutates this process only) sees it too
    monkeypatch.setenv(conv_layer.BUDGET_ENV, value)
    monkeypatch.setattr(conv_layer, "_column_budget", None)  # not read yet
    with pytest.raises(
        ValueError,
        match=rf"^environment variable {conv_layer.BUDGET_ENV} must be a number of "
        rf"MiB > 0 \(e.g. {conv_layer.BUDGET_ENV}=256\), got '{value}'; fix or unset it",
    ):
        conv_layer.get_column_budget()


def test_a_tiny_column_budget_in_the_environment_is_one_byte(monkeypatch):
    monkeypatch.setenv(conv_layer.BUDGET_ENV, "1e-7")  # 0.1 bytes: at least one
    monkeypatch.setattr(conv_layer, "_column_budget", None)
    assert conv_layer.get_column_budget() == 1


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: L.batchnorm_forward(X2, G3, G3, {"mode": "train", "foo": 1}),
         r"batchnorm_forward: unknown bn_param key\(s\) \['foo'\]"),
        (lambda: L.batchnorm_forward(X2, G3, G3, {"mode": "eval"}),
         r"batchnorm_forward: bn_param\['mode'\] must be 'train' or 'test'"),
        (lambda: L.max_pool_forward(X4, {"pool_height": 2, "pool_width": 2, "size": 2}),
         r"max_pool_forward: unknown pool_param key\(s\) \['size'\]"),
    ],
)
def test_unknown_keys_and_modes_name_the_parameter_dict(call, message):
    with pytest.raises(ValueError, match="^" + message):
        call()


def test_conv_defaults_are_stride_one_and_no_padding():
    from gpunet.reference import conv_forward_naive

    out, _ = L.conv_forward(X4, CONV_W, CONV_B, {})
    np.testing.assert_allclose(out, conv_forward_naive(X4, CONV_W, CONV_B, {"stride": 1, "pad": 0})[0], rtol=1e-12)
