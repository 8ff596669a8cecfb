"""Fused optimizer updates: one kernel reads the gradient and updates the parameter and
its state in place (SGD with momentum, Adam). float32/float64 only: in float16 the
state and ``eps`` lose too much (such parameters take the generic path).

The hyper-parameters arrive as scalars of type ``T`` computed on the host exactly as
the generic :class:`gpunet.backend.ops.Ops` computes them (``1 - beta1``, the bias
corrections ``1 - beta**t``), so both paths do the same arithmetic.
"""

from .lazy import FLOATS_32_64, LazyKernel

SGD_MOMENTUM = LazyKernel(
    "gpunet_sgd_momentum",
    "T dw, T lr, T momentum", "T w, T v",
    """
    v = momentum * v - lr * dw;
    w = w + v;
    """,
    dtypes=FLOATS_32_64,
    scalars=("lr", "momentum"),
    doc="v = momentum*v - lr*dw; w = w + v (w and v updated in place).",
)

ADAM = LazyKernel(
    "gpunet_adam",
    "T dw, T lr, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, "
    "T correction1, T correction2, T eps",
    "T w, T m, T v",
    """
    m = beta1 * m + one_minus_beta1 * dw;
    v = beta2 * v + one_minus_beta2 * (dw * dw);
    const T mhat = m / correction1;
    const T vhat = v / correction2;
    w = w - lr * mhat / (sqrt(vhat) + eps);
    """,
    dtypes=FLOATS_32_64,
    scalars=("lr", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2",
             "correction1", "correction2", "eps"),
    doc="One Adam step with bias corrections 1 - beta**t; w, m, v updated in place.",
)


def sgd_momentum(w, dw, v, lr: float, momentum: float):
    """Fused ``v = momentum*v - lr*dw; w += v`` in place; returns w."""
    SGD_MOMENTUM(dw, lr, momentum, w, v)
    return w


def adam(w, dw, m, v, t: int, lr: float, beta1: float, beta2: float, eps: float):
    """Fused Adam step ``t`` (>= 1) on w, m, v in place; returns w."""
    ADAM(dw, lr, beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1**t, 1 - beta2**t, eps, w, m, v)
    return w
