"""keep_freed_memory: after it, freeing and reallocating a large array reuses the process's
memory instead of faulting fresh pages in (checked by minor page-fault counts in a fresh
process, since the setting is process-wide)."""

import subprocess
import sys
import textwrap

import pytest

from gpunet.backend.host_memory import keep_freed_memory

PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from gpunet.backend.host_memory import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    def step():  # a training step's pattern: 8 MiB of temporaries, written, then freed
        a = np.ones(1 << 20); b = a * 2.0; return float(b[-1])
    step(); step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
""")


def _faults_per_step(mode, env=None):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt (Linux)")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    applied, kept = _faults_per_step("keep")
    _, default = _faults_per_step("default")
    if applied != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    assert default > 500  # two 8 MiB arrays: glibc maps and unmaps them every step (fewer faults with huge pages)
    assert kept < 20


def test_the_environment_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv("GPUNET_KEEP_HOST_MEMORY", "0")
    assert keep_freed_memory() is False


@pytest.mark.parametrize("bad", [-1, 1.5, "1G"])
def test_bad_threshold(bad):
    with pytest.raises(ValueError, match="trim_threshold must be an int >= 0"):
        keep_freed_memory(bad)
