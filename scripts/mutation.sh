#!/usr/bin/env bash
# Mutation testing of gpunet's math with mutmut: how many small planted bugs (a flipped
# operator, a changed constant, a dropped argument) the fast tests of each file catch.
# Not part of the normal test command; needs the `mutation` extra: pip install -e ".[mutation]"
#
#   scripts/mutation.sh                    # every target below, one after the other
#   scripts/mutation.sh losses optim       # only these targets
#   MUTATION_JOBS=2 scripts/mutation.sh    # more workers (default 1, run under nice)
#
# Targets (file mutated: the tests run against its mutants):
#   layers     gpunet/layers/*.py          layer, conv/pool, reference, NumPy Ops, scalar and sigmoid tests
#   losses     gpunet/losses.py            loss tests
#   optim      gpunet/optim.py             optimizer tests
#   ops        gpunet/backend/ops.py       the layer tests plus the loss and optimizer tests
#   numpy_ops  gpunet/backend/numpy_ops.py the same tests plus the fused-path and numba-kernel tests
#   gradcheck  gpunet/gradcheck.py         gradient-check tests
# (plus tests/test_<target>_mutants.py where present; test_every_override_is_tested is left out:
# it lists NumpyOps's methods, which mutmut's trampolines multiply). mutmut runs each mutant only against
# the selected tests that call the mutated function, in a fresh copy of gpunet and tests/.
#
# Time here (one worker, nice, a 2-core machine shared with others): gradcheck ~1 min,
# optim ~1.5, losses ~3, ops ~7, layers ~10 (~25 while many mutants survive, since a
# survivor runs all its tests); numpy_ops was not timed to the end (expect more than layers).
#
# Results: build/mutation/<target>/ (build/ is git-ignored): summary.txt (score per file,
# also printed), results.txt (every mutant and its status), survivors.txt (the diff of each
# surviving mutant), run.log (mutmut's output), mutants/ (mutmut's work copy and cache).
# The score is killed / (all mutants - those mutmut skipped); "no tests" (a function no
# selected test calls) and timeouts count as not killed. Exit status 0 whatever the score.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${PYTHON:-python}
jobs=${MUTATION_JOBS:-1}
out_root=${MUTATION_OUT:-$repo/build/mutation}

"$PY" -c "import mutmut" 2>/dev/null || {
  echo "mutation.sh: mutmut is not installed; pip install -e \".[mutation]\"" >&2; exit 2; }

layer_tests="tests/test_layer_gradients.py tests/test_layer_behaviour.py tests/test_conv_pool.py
  tests/test_reference.py tests/test_reference_values.py tests/test_scalars.py tests/test_sigmoid_accuracy.py
  tests/test_numpy_ops.py tests/test_layers_mutants.py"
declare -A mutate tests
mutate[layers]="gpunet/layers/*.py";          tests[layers]="$layer_tests"
mutate[losses]="gpunet/losses.py";            tests[losses]="tests/test_losses.py tests/test_scalars.py"
mutate[optim]="gpunet/optim.py";              tests[optim]="tests/test_optim.py tests/test_scalars.py"
mutate[ops]="gpunet/backend/ops.py";          tests[ops]="$layer_tests tests/test_losses.py tests/test_optim.py"
mutate[numpy_ops]="gpunet/backend/numpy_ops.py"; tests[numpy_ops]="${tests[ops]} tests/test_fusion.py tests/test_numba_kernels.py"
mutate[gradcheck]="gpunet/gradcheck.py";      tests[gradcheck]="tests/test_gradcheck.py"
order="gradcheck optim losses layers ops numpy_ops"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$order"
for t in "${targets[@]}"; do
  [ -n "${mutate[$t]+x}" ] || { echo "mutation.sh: unknown target '$t'; choose from: $order" >&2; exit 2; }
done

# One thread per process: the machine is shared and workers are forked.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 GPUNET_BACKEND=numpy

for t in "${targets[@]}"; do
  dir="$out_root/$t"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r gpunet tests "$dir/"
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  selected=""
  for f in ${tests[$t]} "tests/test_${t}_mutants.py"; do
    [ -f "$f" ] && [[ "$selected" != *"$f"* ]] && selected+=$'\n    '"$f"
  done
  cat >"$dir/setup.cfg" <<EOF
[mutmut]
source_paths = gpunet
only_mutate = ${mutate[$t]}
pytest_add_cli_args =
    -p
    no:cacheprovider
    --deselect
    tests/test_numpy_ops.py::test_every_override_is_tested
pytest_add_cli_args_test_selection =$selected

[tool:pytest]
testpaths = tests
markers =
    gpu: needs a usable CUDA device and CuPy (skipped otherwise)
    slow: takes more than a few seconds
EOF
  echo "== $t: mutating ${mutate[$t]}; tests:${selected//$'\n'    / }"
  start=$(date +%s)
  # PYTHONPATH: the work copy, never an installed or worktree gpunet.
  (cd "$dir" && PYTHONPATH= nice -n 10 "$PY" -m mutmut run --max-children "$jobs" >run.log 2>&1) || {
    echo "mutation.sh: mutmut failed for $t; see $dir/run.log" >&2; tail -20 "$dir/run.log" >&2; continue; }
  (cd "$dir" && PYTHONPATH= "$PY" -m mutmut results --all true >results.txt)
  (cd "$dir" && PYTHONPATH= "$PY" - "$t" "$(( $(date +%s) - start ))" <<'PYEOF')
import collections, sys
target, seconds = sys.argv[1], int(sys.argv[2])
by_file = collections.defaultdict(collections.Counter)
survivors = []
for line in open("results.txt"):
    name, _, status = line.strip().rpartition(": ")
    if not name:
        continue
    module = name.split("__mutmut_")[0].rsplit(".", 1)[0]  # gpunet.losses.x_fn__mutmut_3
    by_file[module.replace(".", "/") + ".py"][status] += 1
    if status not in ("killed", "skipped"):
        survivors.append((name, status))
lines = []
for path, c in sorted(by_file.items()):
    total = sum(c.values()) - c["skipped"]
    score = 100.0 * c["killed"] / total if total else 100.0
    rest = ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s not in ("killed",))
    lines.append(f"{path}: {c['killed']}/{total} killed = {score:.1f}%" + (f" ({rest})" if rest else ""))
lines.append(f"({target}: {seconds} s)")
open("summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant  # mutmut 3.8 (pinned)
with open("survivors.txt", "w") as f:
    for name, status in survivors:
        f.write(f"### {name} ({status})\n{get_diff_for_mutant(name, path=find_mutant(name).path)}\n")
PYEOF
done
