"""Activation kernels: sigmoid forward/backward, ReLU and leaky-ReLU backward, fused
bias-add + ReLU forward.

Each is one ``cupy.ElementwiseKernel`` typed with ``T`` (float16, float32, float64);
float16 computes in float (see :data:`~gpunet.cuda.lazy.ACCUMULATOR_PREAMBLE`). The
generic versions in :class:`gpunet.backend.ops.Ops` are the reference.
"""

from .lazy import ACCUMULATOR_PREAMBLE, LazyKernel

SIGMOID_FORWARD = LazyKernel(
    "gpunet_sigmoid_forward",
    "T x", "T y",
    """
    typedef typename gpunet_acc<T>::type A;
    const A e = exp(-fabs(A(x)));
    y = T((A(x) >= A(0) ? A(1) : e) / (A(1) + e));
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    doc="y = sigmoid(x) = 1/(1+e) for x >= 0, e/(1+e) below, e = exp(-|x|): accurate relative "
        "to y on both tails, no overflow.",
)

SIGMOID_BACKWARD = LazyKernel(
    "gpunet_sigmoid_backward",
    "T dy, T y", "T dx",
    """
    typedef typename gpunet_acc<T>::type A;
    dx = T(A(dy) * A(y) * (A(1) - A(y)));
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    doc="dx = dy * y * (1 - y) from the saved output y = sigmoid(x).",
)

RELU_BACKWARD = LazyKernel(
    "gpunet_relu_backward",
    "T dy, T y", "T dx",
    """
    typedef typename gpunet_acc<T>::type A;
    dx = A(y) > A(0) ? dy : T(0);
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    doc="dx = dy where y > 0 else 0, from the saved output or input of ReLU (0 at the kink).",
)

LEAKY_RELU_BACKWARD = LazyKernel(
    "gpunet_leaky_relu_backward",
    "T dy, T x, T slope", "T dx",
    """
    typedef typename gpunet_acc<T>::type A;
    dx = A(x) > A(0) ? dy : T(A(dy) * A(slope));
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    scalars=("slope",),
    doc="dx = dy where x > 0 else slope*dy, from the saved input x (slope at x = 0).",
)

BIAS_RELU_FORWARD = LazyKernel(
    "gpunet_bias_relu_forward",
    "T x, T b", "T y",
    """
    typedef typename gpunet_acc<T>::type A;
    const A s = A(x) + A(b);
    y = T((s > A(0) || s != s) ? s : A(0));
    """,
    preamble=ACCUMULATOR_PREAMBLE,
    doc="y = max(x + b, 0), b broadcast against x (e.g. shape (D,) over (N, D)); NaN propagates.",
)
