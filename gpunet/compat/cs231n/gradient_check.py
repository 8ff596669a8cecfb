"""CS231n's ``cs231n/gradient_check.py``: gpunet's numeric gradients (host float64; the
array is perturbed in place and restored, as in CS231n)."""

from ...gradcheck import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
    rel_error,
)

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "grad_check_sparse", "rel_error"]
