"""Every layer as a test case: how to build its inputs, run it forward and backward.

``make(rng)`` returns float64 NumPy inputs; ``forward(*inputs)`` returns ``(out, cache)``;
``backward(dout, cache)`` returns one gradient per entry of ``wrt`` (input indices).
Inputs are drawn away from kinks (ReLU at 0, max-pool ties, hinge margins) on purpose;
the kinks have their own tests.
"""

import zlib
from dataclasses import dataclass

import numpy as np

from gpunet import layers as L
from gpunet.gradcheck import eval_numerical_gradient_array


@dataclass
class Case:
    name: str
    make: object
    forward: object
    backward: object
    wrt: tuple = (0,)
    zero: tuple = ()  # inputs whose true gradient is 0 (checked absolutely, not relatively)

    def __repr__(self):
        return self.name

    def gradients(self, put, host):
        """``(inputs, analytic, numeric)``: the case's seeded float64 inputs, its backward
        pass for a random ``dout``, and central differences for each input in ``wrt``,
        computed on the backend that ``put`` moves arrays to."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        inputs = self.make(rng)
        dev = [put(a) for a in inputs]
        out, cache = self.forward(*dev)
        dout = put(rng.standard_normal(host(out).shape))
        analytic = self.backward(dout, cache)
        numeric = [eval_numerical_gradient_array(lambda _: self.forward(*dev)[0], dev[k], dout) for k in self.wrt]
        return inputs, analytic, numeric


def away_from_zero(rng, shape, gap=0.05):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * gap + x, x)


def distinct(rng, shape):
    """Values with no ties and pairwise gaps >> the finite-difference step."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * 0.01


def _single(backward):
    return lambda dout, cache: (backward(dout, cache),)


def _bn(mode):
    def forward(x, g, b, rm, rv):
        return L.batchnorm_forward(x, g, b, {"mode": mode, "running_mean": rm, "running_var": rv})
    return forward


def _bn_inputs(rng):
    return [rng.standard_normal((6, 4)) * 2 + 1, rng.standard_normal(4), rng.standard_normal(4),
            rng.standard_normal(4), rng.uniform(0.5, 2.0, 4)]


CONV_PARAM = {"stride": (2, 1), "pad": 1}
POOL_PARAM = {"pool_height": 2, "pool_width": 3, "stride": (2, 1)}
POOL_OVERLAP = {"pool_height": 3, "pool_width": 2, "stride": 1}

CASES = [
    Case("affine", lambda r: [r.standard_normal((3, 2, 4)), r.standard_normal((8, 5)), r.standard_normal(5)],
         L.affine_forward, L.affine_backward, wrt=(0, 1, 2)),
    Case("relu", lambda r: [away_from_zero(r, (4, 5))], L.relu_forward, _single(L.relu_backward)),
    Case("leaky_relu", lambda r: [away_from_zero(r, (4, 5))], lambda x: L.leaky_relu_forward(x, 0.1),
         _single(L.leaky_relu_backward)),
    Case("sigmoid", lambda r: [r.standard_normal((4, 5)) * 3], L.sigmoid_forward, _single(L.sigmoid_backward)),
    Case("tanh", lambda r: [r.standard_normal((4, 5))], L.tanh_forward, _single(L.tanh_backward)),
    Case("batchnorm_train", _bn_inputs, _bn("train"), L.batchnorm_backward, wrt=(0, 1, 2)),
    Case("batchnorm_train_alt", _bn_inputs, _bn("train"), L.batchnorm_backward_alt, wrt=(0, 1, 2)),
    Case("batchnorm_test", _bn_inputs, _bn("test"), L.batchnorm_backward, wrt=(0, 1, 2)),
    Case("spatial_batchnorm", lambda r: [r.standard_normal((3, 2, 4, 3)), r.standard_normal(2), r.standard_normal(2)],
         lambda x, g, b: L.spatial_batchnorm_forward(x, g, b, {"mode": "train"}),
         L.spatial_batchnorm_backward, wrt=(0, 1, 2)),
    Case("layernorm", lambda r: [r.standard_normal((4, 6)) * 3 - 1, r.standard_normal(6), r.standard_normal(6)],
         lambda x, g, b: L.layernorm_forward(x, g, b, {}), L.layernorm_backward, wrt=(0, 1, 2)),
    Case("dropout_train", lambda r: [r.standard_normal((5, 6))],
         lambda x: L.dropout_forward(x, {"p": 0.6, "mode": "train", "seed": 7}), _single(L.dropout_backward)),
    Case("dropout_test", lambda r: [r.standard_normal((5, 6))],
         lambda x: L.dropout_forward(x, {"p": 0.6, "mode": "test"}), _single(L.dropout_backward)),
    Case("conv", lambda r: [r.standard_normal((2, 3, 7, 6)), r.standard_normal((4, 3, 3, 2)), r.standard_normal(4)],
         lambda x, w, b: L.conv_forward(x, w, b, CONV_PARAM), L.conv_backward, wrt=(0, 1, 2)),
    Case("max_pool", lambda r: [distinct(r, (2, 2, 6, 7))], lambda x: L.max_pool_forward(x, POOL_PARAM),
         _single(L.max_pool_backward)),
    Case("max_pool_overlapping", lambda r: [distinct(r, (1, 2, 5, 4))], lambda x: L.max_pool_forward(x, POOL_OVERLAP),
         _single(L.max_pool_backward)),
    Case("avg_pool", lambda r: [r.standard_normal((2, 2, 6, 7))], lambda x: L.avg_pool_forward(x, POOL_PARAM),
         _single(L.avg_pool_backward)),
    Case("affine_relu", lambda r: [r.standard_normal((4, 6)), r.standard_normal((6, 5)), away_from_zero(r, (5,), 0.5)],
         L.affine_relu_forward, L.affine_relu_backward, wrt=(0, 1, 2)),
    Case("conv_relu",
         lambda r: [r.standard_normal((2, 2, 5, 5)), r.standard_normal((3, 2, 3, 3)), r.standard_normal(3)],
         lambda x, w, b: L.conv_relu_forward(x, w, b, {"stride": 1, "pad": 1}), L.conv_relu_backward, wrt=(0, 1, 2)),
    Case("conv_relu_pool",
         lambda r: [r.standard_normal((2, 2, 6, 6)), r.standard_normal((3, 2, 3, 3)), r.standard_normal(3)],
         lambda x, w, b: L.conv_relu_pool_forward(x, w, b, {"stride": 1, "pad": 1},
                                                  {"pool_height": 2, "pool_width": 2, "stride": 2}),
         L.conv_relu_pool_backward, wrt=(0, 1, 2)),
    Case("conv_bn_relu",
         lambda r: [r.standard_normal((2, 2, 5, 5)), r.standard_normal((3, 2, 3, 3)), r.standard_normal(3),
                                    r.standard_normal(3), r.standard_normal(3)],
         lambda x, w, b, g, bt: L.conv_bn_relu_forward(x, w, b, g, bt, {"stride": 1, "pad": 1}, {"mode": "train"}),
         L.conv_bn_relu_backward, wrt=(0, 1, 2, 3, 4), zero=(2,)),  # the conv bias is undone by the BN mean
]

CASE_IDS = [c.name for c in CASES]
