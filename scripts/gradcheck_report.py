"""Print the largest relative error between each layer's (and loss's) analytic gradient and
a central-difference numeric gradient, in float64, on the numpy and strict backends.

It uses the same cases as the test suite (tests/layer_cases.py, tests/test_losses.py):

    python scripts/gradcheck_report.py          # a Markdown table, a few seconds
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import gpunet  # noqa: E402
from gpunet.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error  # noqa: E402

BACKENDS = ("numpy", "strict")


def layer_error(case) -> float:
    """Max rel_error over the inputs ``case.wrt`` of one layer case, on the current backend."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    inputs = [gpunet.asarray(a) for a in case.make(rng)]
    out, cache = case.forward(*inputs)
    dout = gpunet.asarray(rng.standard_normal(gpunet.to_numpy(out).shape))
    grads = case.backward(dout, cache)
    errors = [rel_error(g, eval_numerical_gradient_array(lambda _: case.forward(*inputs)[0], inputs[k], dout))
              for k, g in zip(case.wrt, grads) if k not in case.zero]
    return max(errors)


def loss_error(fn, make) -> float:
    """rel_error of a loss's dx on the current backend."""
    x, y = (gpunet.asarray(a) for a in make(np.random.default_rng(11)))
    _, dx = fn(x, y)
    return rel_error(dx, eval_numerical_gradient(lambda _: fn(x, y)[0], x, verbose=False))


def main() -> None:
    from layer_cases import CASES
    from test_losses import CASES as LOSS_CASES

    rows = [(case.name, lambda case=case: layer_error(case)) for case in CASES]
    rows += [(f"loss: {name}", lambda fn=fn, make=make: loss_error(fn, make)) for name, (fn, make) in LOSS_CASES.items()]
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
