"""The gradient-check utilities against functions whose gradients are known in closed form."""

import numpy as np
import pytest

from gpunet.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, grad_check_sparse, rel_error


def test_rel_error():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))


def test_numeric_gradient_of_a_known_function(put, host):
    x0 = np.random.default_rng(0).standard_normal((3, 4))
    x = put(x0)
    xp = __import__("gpunet").get_array_module(x)
    grad = eval_numerical_gradient(lambda v: xp.sum(v * v * v), x, verbose=False)
    np.testing.assert_allclose(grad, 3 * x0**2, rtol=1e-7, atol=1e-9)  # central-difference error h**2 = 1e-10
    np.testing.assert_array_equal(host(x), x0)  # restored exactly


def test_numeric_gradient_sees_in_place_perturbation_through_a_closure(put):
    w0 = np.array([1.0, -2.0, 0.5])
    params = {"w": put(w0)}
    xp = __import__("gpunet").get_array_module(params["w"])
    grad = eval_numerical_gradient(lambda _: xp.sum(params["w"] ** 2), params["w"], verbose=False)
    np.testing.assert_allclose(grad, 2 * w0, rtol=1e-8)


def test_numeric_gradient_array(put, host):
    x0 = np.random.default_rng(1).standard_normal((2, 3))
    df = np.random.default_rng(2).standard_normal((2, 3))
    x = put(x0)
    xp = __import__("gpunet").get_array_module(x)
    grad = eval_numerical_gradient_array(lambda v: xp.sin(v), x, put(df))
    np.testing.assert_allclose(grad, np.cos(x0) * df, rtol=1e-7)
    np.testing.assert_array_equal(host(x), x0)


def test_numeric_gradient_of_float32_device_array_restores_values(put, host):
    x0 = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    x = put(x0, "float32")
    xp = __import__("gpunet").get_array_module(x)
    eval_numerical_gradient(lambda v: xp.sum(v), x, verbose=False, h=1e-2)
    np.testing.assert_array_equal(host(x), x0)


def test_grad_check_sparse_reports_small_errors_for_a_right_gradient_and_large_for_a_wrong_one(put, capsys):
    x0 = np.random.default_rng(3).standard_normal(20)
    x = put(x0)
    xp = __import__("gpunet").get_array_module(x)
    f = lambda _: xp.sum(x * x)  # noqa: E731
    good = grad_check_sparse(f, x, put(2 * x0), num_checks=5, seed=0)
    bad = grad_check_sparse(f, x, put(3 * x0), num_checks=5, seed=0, verbose=False)
    assert max(good) < 1e-8 and min(bad) > 0.1
    assert capsys.readouterr().out.count("relative error") == 5
