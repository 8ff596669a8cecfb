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


def test_rel_error_follows_the_cs231n_formula_for_small_values_and_empty_arrays():
    # max |x - y| / max(1e-8, |x| + |y|): the floor 1e-8 only matters below it
    assert rel_error(np.array([1e-3, 5.0]), np.array([2e-3, 5.0])) == pytest.approx(1 / 3, rel=1e-12)
    assert rel_error(np.array([1e-9]), np.array([0.0])) == pytest.approx(1e-9 / 1e-8, rel=1e-12)
    assert rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0  # e.g. the gradient of an empty bias


def test_gradient_checks_name_what_they_were_given():
    with pytest.raises(ValueError, match="array to perturb, got list"):
        eval_numerical_gradient(lambda v: 0.0, [1.0, 2.0], verbose=False)
    with pytest.raises(ValueError, match=r"analytic_grad has shape \(3,\), x has \(2,\)"):
        grad_check_sparse(lambda v: 0.0, np.zeros(2), np.zeros(3), verbose=False)


def test_numeric_gradient_of_an_identity_is_its_upstream_gradient(put):
    # f may return x itself: each evaluation must be copied before the next perturbation
    x0 = np.array([0.5, -1.0, 2.0])
    df = np.array([1.0, -3.0, 0.25])
    np.testing.assert_allclose(eval_numerical_gradient_array(lambda v: v, put(x0), put(df)), df, rtol=1e-9)


def test_numeric_gradient_of_a_low_precision_function_is_a_float64_quotient():
    # the host side works in float64 (the docstring's contract): central differences of the
    # float16 values f returns, divided in float64 (a float16 quotient would be 6.0 here)
    x, h = np.array([3.0]), 0.3
    grad = eval_numerical_gradient(lambda v: np.float16(v[0] * v[0]), x, verbose=False, h=h)
    assert grad.dtype == np.float64
    plus, minus = np.float16(3.3 * 3.3), np.float16(2.7 * 2.7)
    np.testing.assert_allclose(grad, [(np.float64(plus) - np.float64(minus)) / (2 * h)], rtol=1e-12)
    x32 = np.array([0.5, 2.0], dtype=np.float32)  # a float32 x: still a float64 gradient
    assert eval_numerical_gradient(lambda v: np.sum(v * v), x32, verbose=False).dtype == np.float64


def test_eval_numerical_gradient_prints_each_index_and_value_by_default(capsys):
    # CS231n's verbose default: one line "ix value" per element
    grad = eval_numerical_gradient(lambda v: np.sum(v * v), np.array([1.0, -2.0]))
    assert capsys.readouterr().out.splitlines() == [f"(0,) {grad[0]}", f"(1,) {grad[1]}"]


def test_grad_check_sparse_defaults_and_error_values(capsys):
    # CS231n's defaults: 10 checks with h = 1e-5; a cubic has a third derivative, so a
    # large h would show up as an error of about h**2 / x**2
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 2.0, 50)
    errors = grad_check_sparse(lambda v: np.sum(v**3), x, 3 * x**2)
    assert len(errors) == 10 and max(errors) < 1e-8
    # each error is |n - a| / (|n| + |a|) in float64, also for small gradients and a float32 analytic side
    small = np.full(4, 1e-3)
    analytic = np.full(4, 2e-3, dtype=np.float32)
    errors = grad_check_sparse(lambda v: np.sum(1e-3 * v), small, analytic, num_checks=3, verbose=False)
    expected = abs(1e-3 - np.float64(np.float32(2e-3))) / (1e-3 + np.float64(np.float32(2e-3)))
    assert all(isinstance(e, float) for e in errors)
    np.testing.assert_allclose(errors, [expected] * 3, rtol=1e-9)


def test_grad_check_sparse_seed_makes_the_checked_elements_reproducible():
    x = np.random.default_rng(5).standard_normal(200)
    wrong = 2 * x * (1 + np.arange(200) / 100)  # a different relative error for every element
    f = lambda v: np.sum(v * v)  # noqa: E731
    first = grad_check_sparse(f, x, wrong, num_checks=6, seed=11, verbose=False)
    assert grad_check_sparse(f, x, wrong, num_checks=6, seed=11, verbose=False) == first
