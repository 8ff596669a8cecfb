"""``nn.Sequential`` runs Conv2d -> ReLU [-> MaxPool2d] and Linear -> ReLU as one fused
primitive: the same outputs, gradients and dx as calling each layer on its own (the
reference), with and without biases, and a numeric gradient check of a fused net."""

import numpy as np
import pytest
from tolerances import GRAD_REL_ERROR, assert_close, model_grad_error

import gpunet
from gpunet import nn
from gpunet.gradcheck import eval_numerical_gradient
from gpunet.nn.module import fused_blocks

BACKENDS = ["numpy", "strict"]


def _net(dtype, bias=True):
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, pad=1, dtype=dtype, rng=0), nn.ReLU(),
        nn.Conv2d(3, 4, 3, pad=1, dtype=dtype, rng=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5, dtype=dtype, rng=2), nn.ReLU(), nn.Linear(5, 3, dtype=dtype, rng=3),
    )
    if not bias:  # as a layer built without a bias: no "b" parameter
        for layer in (net[0], net[2], net[6]):
            layer.b = None
            layer.param_names = ("W",)
    return net


def _layer_by_layer(net, x, dout, compute_dx=True):
    """The reference: every layer's own forward and backward, in order (no fusion)."""
    for layer in net.layers:
        x = layer.forward(x)
    out = x
    for i in range(len(net.layers) - 1, -1, -1):
        dout = net.layers[i].backward(dout, compute_dx=compute_dx or i > 0)
    grads = {f"{i}.{k}": g for i, layer in enumerate(net.layers) for k, g in layer.grads.items()}
    return out, dout, grads


def _biased_copy(net, dtype):
    """A layer-by-layer reference for a net without biases: the same weights, zero biases."""
    ref = _net(dtype)
    for i in (0, 2, 6, 8):
        ref[i].W = net[i].W
        if getattr(net[i], "b", None) is None:
            ref[i].b = ref[i].b * 0
        else:
            ref[i].b = net[i].b
    return ref


def test_the_runs_that_are_fused():
    net = _net("float64")
    kinds = [b.kind if hasattr(b, "kind") else type(b.layer).__name__ for b in fused_blocks(net.layers)]
    assert kinds == ["conv_relu", "conv_relu_pool", "Flatten", "linear_relu", "Linear"]

    class MyReLU(nn.ReLU):  # a subclass may do something else: not fused
        pass

    assert [type(b).__name__ for b in fused_blocks([nn.Linear(2, 2), MyReLU()])] == ["_Single", "_Single"]
    assert [getattr(b, "kind", None) for b in fused_blocks([nn.Conv2d(1, 1, 1), nn.ReLU(), nn.AvgPool2d(2)])] \
        == ["conv_relu", None]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("compute_dx", [True, False])
def test_fused_sequential_matches_the_layers_one_by_one(backend, bias, compute_dx):
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((4, 2, 6, 6)) * 2) / 2  # ReLU kinks and pooling ties
    dout = rng.standard_normal((4, 3))
    with gpunet.use_backend(backend):
        net = _net("float64", bias).to(backend)
        ref = _biased_copy(net, "float64").to(backend)
        xb, db = gpunet.asarray(x), gpunet.asarray(dout)
        out = net.forward(xb)
        dx = net.backward(db, compute_dx=compute_dx)
        want_out, want_dx, want_grads = _layer_by_layer(ref, xb, db, compute_dx)
    assert_close(out, gpunet.to_numpy(want_out))
    if compute_dx:
        assert_close(dx, gpunet.to_numpy(want_dx))
    else:
        assert dx is None
    expected = {k: g for k, g in want_grads.items() if bias or k not in ("0.b", "2.b", "6.b")}
    assert set(net.grads) == expected.keys()
    for k, g in expected.items():
        assert_close(net.grads[k], gpunet.to_numpy(g))
    if backend == "numpy" and bias:  # the same NumPy primitives in the same order: bit for bit
        np.testing.assert_array_equal(out, want_out)
        for k, g in expected.items():
            np.testing.assert_array_equal(net.grads[k], g)


def test_fused_classifier_passes_a_numeric_gradient_check():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 2, 6, 6))
    y = np.array([0, 2, 1])
    model = nn.Classifier(_net("float64"), reg=0.1)
    _, grads = model.loss(X, y)
    for name, p in model.params.items():
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], p, verbose=False)
        assert model_grad_error(grads[name], num) < GRAD_REL_ERROR, name


def test_fused_backward_before_forward_is_an_error():
    net = _net("float64")
    net.forward(np.ones((1, 2, 6, 6)))
    net.backward(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        net.backward(np.ones((1, 3)))


def test_fused_layers_keep_their_errors():
    net = _net("float64")
    with pytest.raises(ValueError, match="conv_forward: w must have shape"):
        net.forward(np.ones((1, 5, 6, 6)))
    with pytest.raises(ValueError, match="float"):
        net.forward(np.ones((1, 2, 6, 6), np.float32))
