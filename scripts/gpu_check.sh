#!/usr/bin/env bash
# For a machine with an NVIDIA GPU: everything that needs a device, then the GPU benchmarks.
#
#   scripts/gpu_check.sh            # gpu tests + kernel benchmark + scripts/bench.py --quick
#   PYTHON=/path/to/python scripts/gpu_check.sh -x   # extra arguments go to pytest
#
# 1. `pytest -m gpu`: the whole layer/loss/optimizer parity suite on CuPy against NumPy
#    (the `cupy` parameter of the `backend` fixture) and tests/cuda/test_gpu.py (kernels
#    vs generic code, multi-block and 64-bit sizes, cached_code vs the NVRTC-checked
#    source, a Solver epoch under cupyx.allow_synchronize(False)).
# 2. `python -m gpunet.backend.cupy_bench`: each kernel against the generic xp code.
# 3. `scripts/bench.py --backend cupy --quick` when present: gpunet CuPy against PyTorch.
# Exits 2 without running anything when no CUDA device is usable (and says why).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

"$PY" - <<'PYEOF' || exit 2
import sys
from gpunet.backend import cupy_status
cupy, reason = cupy_status()
if cupy is None:
    sys.exit(f"gpu_check: no usable CUDA device: {reason}")
dev = cupy.cuda.Device()
name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
free, total = cupy.cuda.runtime.memGetInfo()
print(f"gpu_check: {name} (compute capability {dev.compute_capability}), "
      f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free, CuPy {cupy.__version__}")
PYEOF

echo "== pytest -m gpu"
"$PY" -m pytest -m gpu -q -rs "$@"

echo "== kernel benchmark"
for dtype in float32 float16; do
    "$PY" -m gpunet.backend.cupy_bench --dtype "$dtype"
done

if [ -f scripts/bench.py ]; then
    echo "== scripts/bench.py --backend cupy --quick"
    "$PY" scripts/bench.py --backend cupy --quick
fi
