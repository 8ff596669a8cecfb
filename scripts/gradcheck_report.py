"""Print the largest relative error between each layer's (and loss's) analytic gradient and
a central-difference numeric gradient, in float64, on the numpy and strict backends.

It uses the same cases as the test suite (tests/layer_cases.py, tests/test_losses.py):

    python scripts/gradcheck_report.py          # a Markdown table, a few seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import gpunet  # noqa: E402
from gpunet.gradcheck import eval_numerical_gradient, rel_error  # noqa: E402

BACKENDS = ("numpy", "strict")


def layer_error(case) -> float:
    """Max rel_error over the inputs ``case.wrt`` of one layer case, on the current backend."""
    _, analytic, numeric = case.gradients(gpunet.asarray, gpunet.to_numpy)
    return max(rel_error(g, n) for k, g, n in zip(case.wrt, analytic, numeric) if k not in case.zero)


def loss_error(fn, make) -> float:
    """rel_error of a loss's dx on the current backend."""
    x, y = (gpunet.asarray(a) for a in make(np.random.default_rng(11)))
    _, dx = fn(x, y)
    return rel_error(dx, eval_numerical_gradient(lambda _: fn(x, y)[0], x, verbose=False))


def main() -> None:
    from layer_cases import CASES
    from test_losses import CASES as LOSS_CASES

    rows = [(case.name, lambda case=case: layer_error(case)) for case in CASES]
    rows += [(f"loss: {name}", lambda fn=fn, make=make: loss_error(fn, make))
             for name, (fn, make) in LOSS_CASES.items()]
    print("| gradient | " + " | ".join(BACKENDS) + " |")
    print("|---|" + "---:|" * len(BACKENDS))
    for name, error in rows:
        values = []
        for backend in BACKENDS:
            with gpunet.use_backend(backend):
                values.append(f"{error():.1e}")
        print(f"| {name} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
