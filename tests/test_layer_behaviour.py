"""Layer behaviour beyond gradients: kinks, overflow, dropout statistics and seeding,
batchnorm running averages, and the errors bad input gets."""

import math
import warnings

import numpy as np
import pytest

from gpunet import layers as L


def test_relu_kink_gets_zero_gradient(put, host):
    x = put(np.array([-1.0, 0.0, -0.0, 2.0]))
    _, cache = L.relu_forward(x)
    np.testing.assert_array_equal(host(L.relu_backward(put(np.ones(4)), cache)), [0, 0, 0, 1])


def test_leaky_relu_values_and_kink(put, host):
    x = put(np.array([-2.0, 0.0, 3.0]))
    out, cache = L.leaky_relu_forward(x, 0.2)
    np.testing.assert_allclose(host(out), [-0.4, 0.0, 3.0])
    np.testing.assert_allclose(host(L.leaky_relu_backward(put(np.ones(3)), cache)), [0.2, 0.2, 1.0])
    for bad in (-1, math.nan, math.inf, True, "0.1", None):
        with pytest.raises(ValueError, match="leaky_relu_forward: negative_slope must be a finite number >= 0.0"):
            L.leaky_relu_forward(x, bad)
    out, cache = L.leaky_relu_forward(x, np.float32(0.2))  # a NumPy scalar is a number too
    np.testing.assert_allclose(host(out), [-0.4, 0.0, 3.0], rtol=1e-7)
    assert type(cache[1]) is float


def test_sigmoid_does_not_overflow_in_float32(put, host):
    x = put(np.array([-1000.0, -88.0, 0.0, 88.0, 1000.0]), "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = L.sigmoid_forward(x)
        dx = L.sigmoid_backward(put(np.ones(5), "float32"), cache)
    out = host(out)
    assert out.dtype == np.float32 and np.all(np.isfinite(out)) and np.all(np.isfinite(host(dx)))
    np.testing.assert_allclose(out, [0.0, 1 / (1 + np.exp(88.0)), 0.5, 1 / (1 + np.exp(-88.0)), 1.0], atol=1e-7)


def test_dropout_keeps_p_in_expectation_and_scales(put, host):
    x = put(np.ones((200, 500)))
    out, (_, mask) = L.dropout_forward(x, {"p": 0.3, "mode": "train", "seed": 1})
    out = host(out)
    kept = out != 0
    assert abs(kept.mean() - 0.3) < 0.01  # 100000 draws: 5 sigma is about 0.007
    np.testing.assert_allclose(out[kept], 1 / 0.3)
    assert abs(out.mean() - 1.0) < 0.04


def test_dropout_seed_is_deterministic_across_backends_and_leaves_global_rng_alone(put, host):
    x = np.random.default_rng(0).standard_normal((4, 5))
    state = np.random.get_state()[1].copy()
    a, _ = L.dropout_forward(put(x), {"p": 0.5, "mode": "train", "seed": 42})
    b, _ = L.dropout_forward(np.asarray(x), {"p": 0.5, "mode": "train", "seed": 42})
    np.testing.assert_array_equal(host(a), b)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_dropout_rng_generator_advances(put, host):
    rng = np.random.default_rng(3)
    x = put(np.ones((10, 10)))
    a, _ = L.dropout_forward(x, {"p": 0.5, "mode": "train", "rng": rng})
    b, _ = L.dropout_forward(x, {"p": 0.5, "mode": "train", "rng": rng})
    assert not np.array_equal(host(a), host(b))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_seeded_uniform_stays_below_one_after_the_cast(dtype, put, host):
    from gpunet.backend import get_array_module, get_backend, get_ops

    if dtype == "float16" and get_backend() == "strict":
        pytest.skip("array_api_strict has no float16")
    like = put(np.zeros(1), dtype)
    n, seed = 1 << 20, 24
    reference = np.random.default_rng(seed).random(n)  # the float64 draws the backend casts
    assert np.any(reference.astype(dtype) == 1)  # this seed does produce the rounding case
    u = host(get_ops(get_array_module(like)).uniform((n,), like=like, seed=seed))
    below = np.nextafter(np.dtype(dtype).type(1), np.dtype(dtype).type(0))
    assert u.dtype == dtype and u.min() >= 0 and u.max() == below
    np.testing.assert_array_equal(u, np.minimum(reference.astype(dtype), below))


def test_dropout_test_mode_is_identity(put, host):
    x = put(np.arange(6.0))
    out, _ = L.dropout_forward(x, {"p": 0.5, "mode": "test"})
    np.testing.assert_array_equal(host(out), np.arange(6.0))


@pytest.mark.parametrize("param,fragment", [
    ({"p": 0.0, "mode": "train"}, "(the keep probability) must be a finite number in (0.0, 1.0]"),
    ({"p": 1.5, "mode": "train"}, "keep probability"),
    ({"p": 0.5}, "missing required key(s) ['mode']"),
    ({"p": 0.5, "mode": "eval"}, "must be 'train' or 'test'"),
    ({"p": 0.5, "mode": "train", "keep": 1}, "unknown dropout_param key(s) ['keep']"),
    ({"p": True, "mode": "train"}, "(the keep probability) must be a finite number in (0.0, 1.0], got True"),
    ({"p": float("nan"), "mode": "train"}, "(the keep probability) must be a finite number"),
    ({"p": 0.5, "mode": "train", "seed": "a"}, "dropout_param['seed'] must be an int >= 0, got 'a'"),
    ({"p": 0.5, "mode": "train", "seed": -1}, "dropout_param['seed'] must be an int >= 0, got -1"),
    ({"p": 0.5, "mode": "train", "rng": 42}, "dropout_param['rng'] must be a numpy.random.Generator, got 42; "
                                             "for the same mask on every call use dropout_param['seed']"),
])
def test_dropout_param_errors(param, fragment, put):
    with pytest.raises(ValueError) as err:
        L.dropout_forward(put(np.ones(3)), param)
    assert fragment in str(err.value)


def test_batchnorm_running_averages_follow_cs231n(put, host):
    rng = np.random.default_rng(0)
    gamma, beta = put(np.full(3, 2.0)), put(np.array([0.0, -1.0, 3.0]))
    bn_param = {"mode": "train", "momentum": 0.9}
    rm, rv = np.zeros(3), np.ones(3)
    for _ in range(60):
        x = rng.standard_normal((100, 3)) * [1.0, 3.0, 0.5] + [5.0, -2.0, 0.0]
        out, _ = L.batchnorm_forward(put(x), gamma, beta, bn_param)
        rm, rv = 0.9 * rm + 0.1 * x.mean(0), 0.9 * rv + 0.1 * x.var(0)
        np.testing.assert_allclose(host(out).mean(0), [0.0, -1.0, 3.0], atol=1e-10)
        np.testing.assert_allclose(host(out).std(0), [2.0, 2.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose(host(bn_param["running_mean"]), rm, rtol=1e-12)
    np.testing.assert_allclose(host(bn_param["running_var"]), rv, rtol=1e-12)
    bn_param["mode"] = "test"
    x = rng.standard_normal((2000, 3)) * [1.0, 3.0, 0.5] + [5.0, -2.0, 0.0]
    out, _ = L.batchnorm_forward(put(x), gamma, beta, bn_param)
    np.testing.assert_allclose(host(out).mean(0), [0.0, -1.0, 3.0], atol=0.15)
    np.testing.assert_allclose(host(out).std(0), [2.0, 2.0, 2.0], rtol=0.1)


def test_dropout_accepts_numpy_scalars(put, host):
    out, _ = L.dropout_forward(put(np.ones((50, 40))), {"p": np.float32(0.5), "mode": "train", "seed": np.int64(3)})
    assert set(np.unique(host(out))) == {0.0, 2.0}


@pytest.mark.parametrize("forward,param,fragment", [
    ("batchnorm", {"mode": "train", "eps": -1e-5}, "bn_param['eps'] must be a finite number > 0.0, got -1e-05"),
    ("batchnorm", {"mode": "train", "eps": 0.0}, "bn_param['eps'] must be a finite number > 0.0"),
    ("batchnorm", {"mode": "test", "eps": float("nan")}, "bn_param['eps'] must be a finite number > 0.0"),
    ("batchnorm", {"mode": "train", "momentum": 5},
     "bn_param['momentum'] must be a finite number in [0.0, 1.0], got 5"),
    ("batchnorm", {"mode": "train", "momentum": True}, "bn_param['momentum'] must be a finite number"),
    ("layernorm", {"eps": -1.0}, "ln_param['eps'] must be a finite number > 0.0"),
])
def test_normalization_parameter_errors(forward, param, fragment, put):
    x, g, b = put(np.random.default_rng(0).standard_normal((4, 3))), put(np.ones(3)), put(np.zeros(3))
    with pytest.raises(ValueError) as err:
        getattr(L, f"{forward}_forward")(x, g, b, param)
    assert fragment in str(err.value)


def test_batchnorm_accepts_numpy_scalar_parameters(put, host):
    bn_param = {"mode": "train", "momentum": np.float32(0.5), "eps": np.float64(1e-3)}
    x = np.random.default_rng(1).standard_normal((6, 2))
    L.batchnorm_forward(put(x), put(np.ones(2)), put(np.zeros(2)), bn_param)
    np.testing.assert_allclose(host(bn_param["running_mean"]), 0.5 * x.mean(axis=0), rtol=1e-12)


def _group_norm_loops(x, gamma, beta, G, eps=1e-5):
    """Group normalization from its definition, one (sample, group) at a time."""
    n, c = x.shape[:2]
    out = np.empty_like(x)
    for i in range(n):
        for g in range(G):
            ch = slice(g * c // G, (g + 1) * c // G)
            block = x[i, ch]
            out[i, ch] = (block - block.mean()) / np.sqrt(block.var() + eps)
    return gamma * out + beta


@pytest.mark.parametrize("shape,G", [((2, 6, 4, 5), 2), ((3, 4, 3, 3), 4), ((1, 3, 2, 5), 1)])
def test_spatial_groupnorm_matches_its_definition_and_pytorch(shape, G, put, host):
    rng = np.random.default_rng(2)
    x = 3 * rng.standard_normal(shape) + 2
    gamma, beta = rng.standard_normal((1, shape[1], 1, 1)), rng.standard_normal((1, shape[1], 1, 1))
    out, _ = L.spatial_groupnorm_forward(put(x), put(gamma), put(beta), G, {})
    np.testing.assert_allclose(host(out), _group_norm_loops(x, gamma, beta, G), rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.group_norm(torch.tensor(x), G, torch.tensor(gamma.ravel()), torch.tensor(beta.ravel()),
                                         eps=1e-5)
    np.testing.assert_allclose(host(out), ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,G", [((2, 6, 4, 5), 2), ((3, 4, 3, 3), 4), ((2, 3, 2, 2), 1), ((2, 4, 1, 1), 4)])
def test_spatial_groupnorm_gradients_match_numeric(shape, G, put):
    from tolerances import GRAD_REL_ERROR

    from gpunet.gradcheck import eval_numerical_gradient_array, rel_error

    rng = np.random.default_rng(3)
    x = 5 * rng.standard_normal(shape) + 12
    gamma, beta = rng.standard_normal((1, shape[1], 1, 1)), rng.standard_normal((1, shape[1], 1, 1))
    dout = rng.standard_normal(shape)
    inputs = [put(a) for a in (x, gamma, beta)]
    _, cache = L.spatial_groupnorm_forward(*inputs, G, {"eps": 1e-5})
    analytic = L.spatial_groupnorm_backward(put(dout), cache)
    host_inputs = [x.copy(), gamma.copy(), beta.copy()]
    for k, got in enumerate(analytic):
        num = eval_numerical_gradient_array(lambda _: L.spatial_groupnorm_forward(*host_inputs, G, {})[0],
                                            host_inputs[k], dout)
        # dx sums to 0 over each group, so small entries carry the numeric side's round-off:
        # up to 2e-7 here (CS231n's notebook expects 1e-12 to 1e-7)
        assert rel_error(got, num) < (GRAD_REL_ERROR if k else 1e-6)


def test_spatial_groupnorm_errors(put):
    x, g = put(np.ones((2, 6, 2, 2))), put(np.ones((1, 6, 1, 1)))
    with pytest.raises(ValueError, match="G = 4 groups must divide the C = 6 channels of x"):
        L.spatial_groupnorm_forward(x, g, g, 4, {})
    with pytest.raises(ValueError, match="G must be an int >= 1, got 0"):
        L.spatial_groupnorm_forward(x, g, g, 0, {})
    with pytest.raises(ValueError, match=r"gamma must have shape \(1, 6, 1, 1\)"):
        L.spatial_groupnorm_forward(x, put(np.ones(6)), g, 2, {})
    with pytest.raises(ValueError, match=r"unknown gn_param key\(s\) \['momentum'\]"):
        L.spatial_groupnorm_forward(x, g, g, 2, {"momentum": 0.9})


def test_batchnorm_errors(put):
    x, g, b = put(np.ones((4, 3))), put(np.ones(3)), put(np.ones(3))
    with pytest.raises(ValueError, match="missing required key"):
        L.batchnorm_forward(x, g, b, {})
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        L.batchnorm_forward(x, put(np.ones(4)), b, {"mode": "train"})
    with pytest.raises(ValueError, match="at least 2 samples"):
        L.batchnorm_forward(put(np.ones((1, 3))), g, b, {"mode": "train"})
    with pytest.raises(ValueError, match="spatial_batchnorm_forward"):
        L.batchnorm_forward(put(np.ones((2, 3, 4, 4))), g, b, {"mode": "train"})


def test_layernorm_normalizes_each_row(put, host):
    x = np.random.default_rng(1).standard_normal((5, 8)) * 4 + 3
    out, _ = L.layernorm_forward(put(x), put(np.ones(8)), put(np.zeros(8)), {"mode": "train"})
    np.testing.assert_allclose(host(out).mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(host(out).std(1), 1, rtol=1e-4)


def test_float_dtype_required_and_no_silent_upcast(put):
    with pytest.raises(ValueError, match=r"x must be a real floating array .* got .*int"):
        L.relu_forward(put(np.arange(3)))
    with pytest.raises(ValueError, match=r"all inputs must share one dtype .*x=float32, w=float64"):
        L.affine_forward(put(np.ones((2, 3)), "float32"), put(np.ones((3, 2))), put(np.ones(2)))


def test_backward_rejects_dout_of_the_wrong_shape(put):
    x, w, b = put(np.ones((2, 3))), put(np.ones((3, 4))), put(np.ones(4))
    _, cache = L.affine_forward(x, w, b)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 4\)"):
        L.affine_backward(put(np.ones((2, 5))), cache)
    _, cache = L.relu_forward(x)
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\)"):
        L.relu_backward(put(np.ones((3, 2))), cache)


def test_affine_needs_a_batch_axis(put):
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*x\[None\]"):
        L.affine_forward(put(np.ones(3)), put(np.ones((3, 2))), put(np.ones(2)))


def test_first_layer_can_skip_dx(put, host):
    x, w, b = put(np.ones((2, 1, 4, 4))), put(np.ones((3, 1, 3, 3))), put(np.ones(3))
    out, cache = L.conv_forward(x, w, b, {"stride": 1, "pad": 1})
    dx, dw, db = L.conv_backward(put(np.ones(host(out).shape)), cache, compute_dx=False)
    assert dx is None and host(dw).shape == (3, 1, 3, 3)
    out, cache = L.affine_forward(x, put(np.ones((16, 2))), put(np.ones(2)))
    dx, dw, db = L.affine_backward(put(np.ones((2, 2))), cache, compute_dx=False)
    assert dx is None and host(dw).shape == (16, 2)
