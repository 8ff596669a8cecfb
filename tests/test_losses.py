"""Losses: numeric gradients for every reduction, known values, stability at extreme
inputs, label validation, and float32 against float64."""

import math
import warnings

import numpy as np
import pytest
from tolerances import GRAD_REL_ERROR, assert_close

from gpunet import losses
from gpunet.gradcheck import eval_numerical_gradient, rel_error

N, C = 6, 4


def _class_case(rng):
    return rng.standard_normal((N, C)) * 2, rng.integers(0, C, N)


def _binary_probs(rng):
    return rng.uniform(0.05, 0.95, (N, 3)), rng.uniform(0, 1, (N, 3))


def _binary_logits(rng):
    return rng.standard_normal((N, 3)) * 3, rng.uniform(0, 1, (N, 3))


def _regression(rng):
    x, y = rng.standard_normal((N, 3)), rng.standard_normal((N, 3))
    return x, y + np.sign(y - x) * 0.05  # keep |x - y| away from the L1 kink


CASES = {
    "softmax_loss": (losses.softmax_loss, _class_case),
    "svm_loss": (losses.svm_loss, _class_case),
    "bce_loss": (losses.bce_loss, _binary_probs),
    "bce_with_logits_loss": (losses.bce_with_logits_loss, _binary_logits),
    "mse_loss": (losses.mse_loss, _regression),
    "l1_loss": (losses.l1_loss, _regression),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_numeric_for_each_reduction(name, reduction, put, host):
    fn, make = CASES[name]
    x, y = make(np.random.default_rng(11))
    xd, yd = put(x), put(y)
    loss, dx = fn(xd, yd, reduction=reduction)
    if reduction == "none":  # dx is the gradient of the sum of the per-item losses
        numeric = eval_numerical_gradient(lambda _: np.sum(host(fn(xd, yd, reduction="none")[0])), xd, verbose=False)
    else:
        numeric = eval_numerical_gradient(lambda _: fn(xd, yd, reduction=reduction)[0], xd, verbose=False)
    assert rel_error(dx, numeric) <= GRAD_REL_ERROR


@pytest.mark.parametrize("name", list(CASES))
def test_reductions_agree(name, put, host):
    fn, make = CASES[name]
    x, y = make(np.random.default_rng(12))
    each, d_each = fn(put(x), put(y), reduction="none")
    total, d_total = fn(put(x), put(y), reduction="sum")
    mean, d_mean = fn(put(x), put(y), reduction="mean")
    count = host(each).size
    np.testing.assert_allclose(host(total), host(each).sum(), rtol=1e-12)
    np.testing.assert_allclose(host(mean), host(each).sum() / count, rtol=1e-12)
    np.testing.assert_allclose(host(d_mean), host(d_total) / count, rtol=1e-12)
    np.testing.assert_allclose(host(d_each), host(d_total), rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_matches_float64(name, put, host):
    fn, make = CASES[name]
    x, y = make(np.random.default_rng(13))
    labels_are_classes = name in ("softmax_loss", "svm_loss")
    l64, d64 = fn(put(x), put(y))
    l32, d32 = fn(put(x, "float32"), put(y) if labels_are_classes else put(y, "float32"))
    assert str(l32.dtype).endswith("float32") and str(d32.dtype).endswith("float32")
    assert_close(l32, host(l64), dtype="float32")
    assert_close(d32, host(d64), dtype="float32")


def test_known_values(put, host):
    # uniform scores: softmax loss is log C; SVM loss is C - 1 (every margin is 1)
    x, y = put(np.zeros((3, 5))), put(np.array([0, 2, 4]))
    assert math.isclose(float(host(losses.softmax_loss(x, y)[0])), math.log(5), rel_tol=1e-12)
    assert math.isclose(float(host(losses.svm_loss(x, y)[0])), 4.0, rel_tol=1e-12)
    # BCE of p = 0.5 is log 2 for any target; MSE / L1 of a constant offset
    p = put(np.full((4,), 0.5))
    loss = float(host(losses.bce_loss(p, put(np.array([0.0, 1.0, 1.0, 0.3])))[0]))
    assert math.isclose(loss, math.log(2), rel_tol=1e-12)
    assert math.isclose(float(host(losses.mse_loss(put(np.ones(4) * 3), put(np.ones(4)))[0])), 4.0)
    assert math.isclose(float(host(losses.l1_loss(put(np.ones(4) * 3), put(np.ones(4)))[0])), 2.0)


def test_softmax_is_stable_for_huge_scores(put, host):
    x = put(np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]]), "float32")
    y = put(np.array([1, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dx = losses.softmax_loss(x, y, reduction="none")
    np.testing.assert_allclose(host(loss), [1e4, 2e4 + math.log(2)], rtol=1e-6)
    assert np.all(np.isfinite(host(dx)))


def test_bce_with_logits_is_stable_up_to_1e4(put, host):
    x = np.array([1e4, -1e4, 0.0, 50.0, -50.0])
    y = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    for dtype in ("float32", "float64"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss, dx = losses.bce_with_logits_loss(put(x, dtype), put(y, dtype), reduction="none")
        expected = [1e4, 1e4, math.log(2), math.log1p(math.exp(-50)), math.log1p(math.exp(-50))]
        np.testing.assert_allclose(host(loss), expected, rtol=1e-6)
        np.testing.assert_allclose(host(dx), [1.0, -1.0, -0.5, 0.0, 0.0], atol=1e-6)


def test_bce_clips_probabilities_of_exactly_0_and_1(put, host):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dx = losses.bce_loss(put(np.array([0.0, 1.0])), put(np.array([1.0, 0.0])), reduction="none")
    np.testing.assert_allclose(host(loss), [-math.log(1e-12)] * 2, rtol=1e-6)
    assert np.all(np.isfinite(host(dx)))


def test_bce_individual_losses_is_reduction_none(put, host):
    p, y = put(np.array([0.2, 0.9, 0.5])), put(np.array([0.0, 1.0, 1.0]))
    a, _ = losses.bce_loss(p, y, individual_losses=True)
    np.testing.assert_allclose(host(a), -np.log([0.8, 0.9, 0.5]), rtol=1e-12)


@pytest.mark.parametrize("fn", [losses.softmax_loss, losses.svm_loss])
def test_float_labels_are_rejected(fn, put):
    with pytest.raises(ValueError, match="integer array of class indices"):
        fn(put(np.zeros((2, 3))), put(np.array([0.0, 1.0])))


@pytest.mark.parametrize("fn", [losses.softmax_loss, losses.svm_loss])
def test_label_shape_mismatch_is_rejected(fn, put):
    with pytest.raises(ValueError, match=r"labels y must have shape \(2,\)"):
        fn(put(np.zeros((2, 3))), put(np.array([0, 1, 2])))


@pytest.mark.parametrize("bad", [-1, 3])
@pytest.mark.parametrize("fn", [losses.softmax_loss, losses.svm_loss])
def test_out_of_range_labels_raise_on_the_host(fn, bad):
    with pytest.raises(ValueError, match=rf"labels must be in \[0, 3\) for 3 classes, got {bad}"):
        fn(np.zeros((2, 3)), np.array([0, bad]))


@pytest.mark.parametrize("fn", [losses.softmax_loss, losses.svm_loss])
def test_out_of_range_labels_poison_the_loss_on_a_device(fn, host):
    import gpunet

    with gpunet.use_backend("strict"):
        x, y = gpunet.asarray(np.zeros((2, 3))), gpunet.asarray(np.array([0, 7]))
        loss, dx = fn(x, y, reduction="none")
    loss, dx = host(loss), host(dx)
    assert np.isfinite(loss[0]) and np.isnan(loss[1])
    assert np.all(np.isfinite(dx[0])) and np.all(np.isnan(dx[1]))


def test_check_labels():
    losses.check_labels(np.array([0, 2, 1]), 3)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        losses.check_labels(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="integers"):
        losses.check_labels(np.array([0.0]), 3)


@pytest.mark.parametrize("name", ["bce_loss", "bce_with_logits_loss", "mse_loss", "l1_loss"])
def test_elementwise_losses_reject_shape_mismatch(name, put):
    fn, _ = CASES[name]
    with pytest.raises(ValueError, match="must have the shape of"):
        fn(put(np.full((4, 1), 0.5)), put(np.full((4,), 0.5)))


def test_bad_reduction_and_targets(put):
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.mse_loss(put(np.zeros(2)), put(np.zeros(2)), reduction="avg")
    with pytest.raises(ValueError, match=r"targets y must lie in \[0, 1\]"):
        losses.bce_loss(np.full(2, 0.5), np.array([0.0, 2.0]))


@pytest.mark.parametrize("probs", [[-0.5, 0.5], [0.5, 1.5], [np.nan, 0.5]])
def test_bce_refuses_probabilities_outside_0_1_on_the_host(probs):
    """As PyTorch's binary_cross_entropy ("all elements of input should be between 0 and 1");
    -0.5 used to give a loss of 14.16 with a zero gradient for the bad entry."""
    with pytest.raises(ValueError, match=r"bce_loss: probabilities probs must lie in \[0, 1\] \(no NaN\)"):
        losses.bce_loss(np.array(probs), np.array([1.0, 0.0]))


@pytest.mark.parametrize("fn,name", [(losses.bce_loss, "bce_loss"),
                                     (losses.bce_with_logits_loss, "bce_with_logits_loss")])
def test_nan_targets_are_refused_on_the_host(fn, name):
    with pytest.raises(ValueError, match=rf"{name}: targets y must lie in \[0, 1\] \(no NaN\)"):
        fn(np.array([0.5, 0.5]), np.array([np.nan, 0.0]))


def test_values_outside_0_1_poison_the_loss_on_a_device(host):
    """On a device the check would be a host sync per step: the bad element's loss is NaN."""
    import gpunet

    with gpunet.use_backend("strict"):
        probs, y = gpunet.asarray(np.array([-0.5, 0.5, 0.5])), gpunet.asarray(np.array([1.0, 0.0, 2.0]))
        loss, _ = losses.bce_loss(probs, y, reduction="none")
        logit_loss, _ = losses.bce_with_logits_loss(probs, y, reduction="none")
    assert np.isnan(host(loss)[[0, 2]]).all() and np.isfinite(host(loss)[1])
    assert np.isnan(host(logit_loss)[2]) and np.isfinite(host(logit_loss)[:2]).all()


@pytest.mark.parametrize("fn,x,y", [
    (losses.softmax_loss, [[6e4, 6e4, -6e4]], [0]),  # the shift x - max(x) = -1.2e5 overflows float16
    (losses.bce_with_logits_loss, [6e4, 6e4, -6e4, 5e4], [0.0, 0.0, 1.0, 0.0]),  # their sum overflows
    (losses.mse_loss, [200.0, -200.0, 150.0], [0.0, 0.0, 0.0]),  # squares of 4e4: their sum overflows
])
def test_float16_losses_compute_in_float32(fn, x, y, put, host, backend):
    """Values of 6e4 fit float16 (max 65504) but their differences and sums do not: the
    loss is computed in float32 and returned in float16, close to float64's."""
    if backend == "strict":
        pytest.skip("array_api_strict has no float16")
    x16 = np.array(x, np.float16)
    y16 = np.array(y) if fn is losses.softmax_loss else np.array(y, np.float16)
    y64 = y16 if fn is losses.softmax_loss else y16.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dx = fn(put(x16), put(y16))
    want, dwant = fn(x16.astype(np.float64), y64)
    loss, dx = host(loss), host(dx)
    assert loss.dtype == np.float16 and dx.dtype == np.float16
    np.testing.assert_allclose(loss.astype(np.float64), want, rtol=1e-3)
    np.testing.assert_allclose(dx.astype(np.float64), dwant, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("fn", [losses.softmax_loss, losses.svm_loss, losses.mse_loss, losses.bce_with_logits_loss])
def test_arrays_of_two_backends_get_the_layers_error(fn):
    """Strict scores with NumPy labels: the same "arrays from two backends" TypeError the
    layers give, not an error from inside array_api_strict."""
    import gpunet

    with gpunet.use_backend("strict"):
        x = gpunet.asarray(np.zeros((3, 4)))
    y = np.array([0, 1, 2]) if fn in (losses.softmax_loss, losses.svm_loss) else np.zeros((3, 4))
    with pytest.raises(TypeError, match="arrays from two backends in one call: strict and numpy"):
        fn(x, y)


def test_softmax_shifts_each_row_by_its_own_maximum(put, host):
    # rows whose scores differ by 2000: one shift for the whole batch would underflow a row
    x = put(np.array([[1000.0, 0.0], [-1000.0, -1001.0]]))
    loss, dx = losses.softmax_loss(x, put(np.array([0, 1])), reduction="none")
    e = math.exp(-1.0)
    np.testing.assert_allclose(host(loss), [math.log1p(math.exp(-1000.0)), math.log1p(1 / e)], rtol=1e-12)
    np.testing.assert_allclose(host(dx), [[0.0, 0.0], [1 / (1 + e), -1 / (1 + e)]], rtol=1e-12, atol=1e-300)


def test_bce_gradient_flows_up_to_the_clip_bounds_and_not_beyond(put, host):
    # d/dp of -(t log c + (1-t) log(1-c)), c = clip(p, eps, 1-eps), eps = 1e-12 in float64:
    # (c - t) / (c (1 - c)) where eps <= p <= 1 - eps (bounds included, as PyTorch's clamp), else 0
    eps = 1e-12
    p = np.array([0.0, eps, 0.3, 1 - eps, 1.0])
    t = np.array([1.0, 1.0, 0.5, 0.0, 0.0])
    _, dx = losses.bce_loss(put(p), put(t), reduction="sum")
    dx = host(dx)
    assert dx[0] == 0 and dx[4] == 0
    np.testing.assert_allclose(dx[1:4], [-1 / eps, (0.3 - 0.5) / (0.3 * 0.7), 1 / eps], rtol=2e-4)
    torch = pytest.importorskip("torch")
    tp = torch.tensor(p, requires_grad=True)
    c = tp.clamp(eps, 1 - eps)
    tt = torch.tensor(t)
    (-(tt * c.log() + (1 - tt) * torch.log1p(-c))).sum().backward()
    np.testing.assert_allclose(dx, tp.grad.numpy(), rtol=1e-4)


LOSS_ARGS = {  # (name of the first argument, of the second, a valid pair)
    "softmax_loss": ("x", "y", lambda: (np.zeros((2, 3)), np.array([0, 2]))),
    "svm_loss": ("x", "y", lambda: (np.zeros((2, 3)), np.array([0, 2]))),
    "bce_loss": ("probs", "y", lambda: (np.full((2, 3), 0.5), np.zeros((2, 3)))),
    "bce_with_logits_loss": ("logits", "y", lambda: (np.zeros((2, 3)), np.zeros((2, 3)))),
    "mse_loss": ("x", "y", lambda: (np.zeros((2, 3)), np.zeros((2, 3)))),
    "l1_loss": ("x", "y", lambda: (np.zeros((2, 3)), np.zeros((2, 3)))),
}


@pytest.mark.parametrize("name", list(LOSS_ARGS))
def test_errors_name_the_loss_and_the_argument(name):
    fn = getattr(losses, name)
    first, second, make = LOSS_ARGS[name]
    a, b = make()
    with pytest.raises(ValueError, match=rf"^{name}: reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        fn(a, b, reduction="avg")
    with pytest.raises(ValueError, match=rf"^{name}: {first} must be a real floating array .* got int64"):
        fn(a.astype(np.int64), b)
    if second == "y" and name not in ("softmax_loss", "svm_loss"):
        with pytest.raises(ValueError, match=rf"^{name}: y must be a real floating array .* got int64"):
            fn(a, b.astype(np.int64))
        with pytest.raises(ValueError, match=rf"^{name}: y must have the shape of {first} \(2, 3\), got \(3, 2\)"):
            fn(a, b.reshape(3, 2))


@pytest.mark.parametrize("name", ["softmax_loss", "svm_loss"])
def test_class_loss_errors_say_what_was_expected(name):
    fn = getattr(losses, name)
    expected = rf"^{name}: x must have 2 dimensions \(N, C\) of class scores, got shape \(3,\)"
    with pytest.raises(ValueError, match=expected):
        fn(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"in \[0, 3\), got dtype list; convert with"):
        fn(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match=r"got dtype float64"):
        fn(np.zeros((2, 3)), np.zeros(2))


def test_check_labels_names_the_labels():
    with pytest.raises(ValueError, match=r"^y: labels must be in \[0, 3\)"):
        losses.check_labels(np.array([0, 5]), 3)
