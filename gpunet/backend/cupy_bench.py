"""Time each CupyOps kernel against the generic ``Ops`` code on the same device arrays.

    python -m gpunet.backend.cupy_bench                 # float32
    python -m gpunet.backend.cupy_bench --dtype float16 --repeat 50

Needs a CUDA device. Prints one row per primitive: median GPU time of the kernel and of
the generic xp code (``cupyx.profiler.benchmark``), and their ratio.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .cupy_probe import cupy_status
from .dispatch import get_ops
from .geometry import ConvGeometry
from .ops import Ops


def _cases(cp, dtype, rng):
    """(name, kernel call, generic call) on arrays of realistic training sizes."""
    def arr(*shape):
        return cp.asarray(rng.standard_normal(shape).astype(dtype))

    n = 1 << 24
    x, y, dy = arr(n), cp.asarray(rng.random(n).astype(dtype)), arr(n)
    a2, b = arr(4096, 4096), arr(4096)
    img = arr(32, 64, 32, 32)
    geo = ConvGeometry(img.shape, (64, 64, 3, 3), (1, 1), (1, 1))
    cols = arr(64 * 9, 32 * 32 * 32)
    cases = [
        ("sigmoid", lambda o: o.sigmoid(x)),
        ("sigmoid_backward", lambda o: o.sigmoid_backward(dy, y)),
        ("relu_backward", lambda o: o.relu_backward(dy, x)),
        ("leaky_relu_backward", lambda o: o.leaky_relu_backward(dy, x, 0.01)),
        ("bias_relu", lambda o: o.bias_relu(a2, b)),
        ("im2col", lambda o: o.im2col(img, geo)),
        ("col2im", lambda o: o.col2im(cols, geo)),
    ]
    if dtype != np.float16:
        w, velocity = arr(n), cp.zeros(n, dtype)
        m, v = cp.zeros(n, dtype), cp.zeros(n, dtype)
        cases += [
            ("sgd_momentum", lambda o: o.sgd_momentum(w, dy, velocity, 1e-3, 0.9)),
            ("adam", lambda o: o.adam(w, dy, m, v, 1, 1e-3, 0.9, 0.999, 1e-8)),
        ]
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    cp, reason = cupy_status()
    if cp is None:
        print(f"gpunet.backend.cupy_bench needs a CUDA device: {reason}", file=sys.stderr)
        return 2
    from cupyx.profiler import benchmark

    dtype = np.dtype(args.dtype)
    kernels, generic = get_ops(cp), Ops(cp)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    print(f"{props['name'].decode()}  CuPy {cp.__version__}  {dtype}  "
          f"(median GPU ms of {args.repeat} runs)")
    print(f"{'primitive':<22}{'kernel':>10}{'generic':>10}{'speed-up':>10}")
    for name, call in _cases(cp, dtype, np.random.default_rng(0)):
        times = []
        for ops in (kernels, generic):
            r = benchmark(call, (ops,), n_repeat=args.repeat, n_warmup=3)
            times.append(float(np.median(r.gpu_times)) * 1e3)
        print(f"{name:<22}{times[0]:>10.3f}{times[1]:>10.3f}{times[1] / times[0]:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
