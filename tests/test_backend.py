"""The backend switch: names, env var, context manager (thread-local), lazy CuPy,
clear errors, moving data between backends, and the strict backend's guards."""

import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gpunet
from gpunet._install import pip_install
from gpunet.backend import cupy_probe as cs
from gpunet.backend import switch


@pytest.fixture
def fresh_switch(monkeypatch):
    """Forget the resolved default so GPUNET_BACKEND is read again."""
    switch._reset_for_tests()
    yield monkeypatch
    switch._reset_for_tests()


@pytest.fixture
def fresh_probe():
    """Forget the cached CuPy probe before and after a test that fakes CuPy."""
    cs._reset_for_tests()
    yield
    cs._reset_for_tests()


def _run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_import_does_not_import_cupy():
    r = _run_python("import sys, gpunet, gpunet.layers, gpunet.losses, gpunet.gradcheck; "
                    "x = gpunet.asarray([1.0]); print('cupy' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_env_var_sets_the_default(fresh_switch):
    fresh_switch.setenv("GPUNET_BACKEND", "strict")
    assert gpunet.get_backend() == "strict"
    fresh_switch.setenv("GPUNET_BACKEND", "numpy")  # resolved once, not per call
    assert gpunet.get_backend() == "strict"


def test_env_var_with_an_unknown_name_says_so_when_it_is_used(fresh_switch):
    fresh_switch.setenv("GPUNET_BACKEND", "tpu")
    with pytest.raises(ValueError, match=r"GPUNET_BACKEND must be one of 'numpy', 'cupy', 'strict', 'auto', "
                                         r"got 'tpu'; unset GPUNET_BACKEND, or choose in code with gpunet.set_backend"):
        gpunet.get_backend()


@pytest.fixture
def cupy_without_device(monkeypatch, fresh_probe):
    """CuPy 99.0 installed, no CUDA device."""

    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class FakeCupy:
        __version__ = "99.0"
        cuda = type("cuda", (), {"runtime": FakeRuntime})

    monkeypatch.setattr(cs.importlib, "import_module", lambda name: FakeCupy)


@pytest.mark.parametrize("env", ["bogus", "cupy"])
def test_an_explicit_choice_beats_a_bad_env_var(env, fresh_switch, cupy_without_device):
    fresh_switch.setenv("GPUNET_BACKEND", env)
    with pytest.raises((ValueError, gpunet.BackendUnavailableError), match=f"GPUNET_BACKEND.*{env}"):
        gpunet.get_backend()
    with gpunet.use_backend("strict"):
        assert gpunet.backend.backend_of(gpunet.asarray(np.ones(2))) == "strict"
    with gpunet.use_backend("numpy"):
        assert isinstance(gpunet.asarray([1.0]), np.ndarray)
    assert gpunet.set_backend("numpy") == "numpy"
    assert gpunet.get_backend() == "numpy"
    assert isinstance(gpunet.asarray([1.0]), np.ndarray)


@pytest.mark.parametrize("env", ["bogus", "cupy"])
def test_gpunet_train_with_an_explicit_backend_ignores_a_bad_env_var(env, fresh_switch, cupy_without_device, capsys):
    from gpunet.cli import main

    fresh_switch.setenv("GPUNET_BACKEND", env)
    assert main(["train", "--backend", "numpy", "--epochs", "1", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("test accuracy: ")


def test_set_backend_replaces_the_env_default(fresh_switch):
    fresh_switch.setenv("GPUNET_BACKEND", "strict")
    assert gpunet.get_backend() == "strict"
    gpunet.set_backend("numpy")
    assert gpunet.get_backend() == "numpy"


def test_info_reports_a_bad_env_var_as_a_line(fresh_switch):
    from gpunet.backend.info import report

    fresh_switch.setenv("GPUNET_BACKEND", "bogus")
    lines = report()
    assert any("GPUNET_BACKEND must be one of" in line and "'bogus'" in line for line in lines), lines


@pytest.mark.parametrize("env", ["bogus", "cupy"])
def test_info_command_and_explicit_choices_work_with_a_bad_env_var_in_a_fresh_process(env):
    if env == "cupy" and cs.cupy_status()[0] is not None:
        pytest.skip("a CUDA device is usable here: GPUNET_BACKEND=cupy is not bad")
    r = subprocess.run([sys.executable, "-m", "gpunet", "info"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "GPUNET_BACKEND": env})
    assert r.returncode == 0, r.stderr
    last = r.stdout.splitlines()[-1]
    assert last.startswith("default backend") and "GPUNET_BACKEND" in last and repr(env) in last
    r = _run_python("import gpunet\n"
                    "with gpunet.use_backend('numpy'):\n"
                    "    a = gpunet.asarray([1.0])\n"
                    "gpunet.set_backend('numpy')\n"
                    "print(type(a).__name__, type(gpunet.asarray([2.0])).__name__)",
                    GPUNET_BACKEND=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ndarray", "ndarray"]


def test_cupy_that_fails_to_import_is_reported_not_raised(monkeypatch, fresh_probe):
    def broken(name):
        raise OSError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(cs.importlib, "import_module", broken)
    cupy, reason = cs.cupy_status()
    assert cupy is None and "fails to import (OSError: libcudart.so.12" in reason
    from gpunet.backend.info import report

    assert any("libcudart" in line for line in report())


def test_plain_call_sets_this_threads_choice_and_set_backend_the_process_default(fresh_switch):
    fresh_switch.delenv("GPUNET_BACKEND", raising=False)
    assert gpunet.get_backend() == "numpy"
    gpunet.use_backend("strict")
    assert gpunet.get_backend() == "strict"
    seen = []
    t = threading.Thread(target=lambda: seen.append(gpunet.get_backend()))
    t.start()
    t.join()
    assert seen == ["numpy"]
    gpunet.set_backend("strict")
    t = threading.Thread(target=lambda: seen.append(gpunet.get_backend()))
    t.start()
    t.join()
    assert seen == ["numpy", "strict"]


def test_context_manager_is_thread_local_and_restores(fresh_switch):
    fresh_switch.delenv("GPUNET_BACKEND", raising=False)
    inside, other = [], []
    entered, release = threading.Event(), threading.Event()

    def worker():
        with gpunet.use_backend("strict"):
            inside.append(gpunet.get_backend())
            entered.set()
            release.wait(10)
            inside.append(gpunet.get_backend())

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(10)
    other.append(gpunet.get_backend())
    release.set()
    t.join()
    assert inside == ["strict", "strict"]
    assert other == ["numpy"]
    assert gpunet.get_backend() == "numpy"


def test_nested_context_managers(fresh_switch):
    fresh_switch.delenv("GPUNET_BACKEND", raising=False)
    with gpunet.use_backend("strict"):
        with gpunet.use_backend("numpy"):
            assert gpunet.get_backend() == "numpy"
        assert gpunet.get_backend() == "strict"
    assert gpunet.get_backend() == "numpy"


@pytest.mark.parametrize("call", [gpunet.use_backend, gpunet.set_backend])
@pytest.mark.parametrize("name", ["torch", None, 1, True])
def test_unknown_backend_name(call, name, fresh_switch):
    fresh_switch.delenv("GPUNET_BACKEND", raising=False)
    with pytest.raises(ValueError, match=r"backend must be one of 'numpy', 'cupy', 'strict', 'auto', got "):
        call(name)
    assert gpunet.get_backend() == "numpy"  # nothing changed


def test_backend_names_are_case_insensitive(fresh_switch):
    assert gpunet.set_backend("NumPy") == "numpy"
    with gpunet.use_backend("STRICT") as chosen:
        assert chosen == gpunet.get_backend() == "strict"


def test_cupy_not_installed_says_so_with_install_command(monkeypatch, fresh_probe):
    def no_cupy(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(cs.importlib, "import_module", no_cupy)
    with pytest.raises(gpunet.BackendUnavailableError) as err:
        gpunet.use_backend("cupy")
    msg = str(err.value)
    assert "CuPy is not installed" in msg
    assert pip_install("cuda12") in msg and pip_install("cuda13") in msg


def test_cupy_without_device_says_so(cupy_without_device):
    with pytest.raises(gpunet.BackendUnavailableError) as err:
        gpunet.use_backend("cupy")
    msg = str(err.value)
    assert "CuPy 99.0 is installed but no CUDA device is usable" in msg
    assert "cudaErrorNoDevice" in msg and pip_install("cuda12") in msg


def test_auto_chooses_numpy_without_a_device_and_says_so_once(fresh_switch, caplog, monkeypatch):
    monkeypatch.setattr(switch, "cupy_status", lambda: (None, "no device here"))
    with caplog.at_level(logging.INFO, logger="gpunet"):
        for _ in range(3):
            with gpunet.use_backend("auto") as chosen:
                assert chosen == "numpy"
    reports = [r for r in caplog.records if "auto" in r.getMessage()]
    assert len(reports) == 1 and "numpy" in reports[0].getMessage() and "no device here" in reports[0].getMessage()


def test_mixing_backends_is_a_type_error_naming_both():
    with gpunet.use_backend("strict"):
        s = gpunet.asarray(np.ones(3))
    with pytest.raises(TypeError, match=r"two backends in one call: numpy and strict.*gpunet.asarray"):
        gpunet.layers.affine_forward(np.ones((1, 3)), np.ones((3, 2)), s[:2])


def test_get_array_module_ignores_scalars_and_none():
    assert gpunet.get_array_module(np.ones(2), 3.0, None, np.float32(1)) is np
    with pytest.raises(TypeError, match="convert it with gpunet.asarray"):
        gpunet.get_array_module([1.0, 2.0])


def test_asarray_and_to_numpy_round_trip_between_backends():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    with gpunet.use_backend("strict"):
        s = gpunet.asarray(a, dtype="float32")
        assert gpunet.get_array_module(s).__name__ == "array_api_strict"
        assert "float32" in str(s.dtype)
        assert gpunet.asarray(s) is s
    with gpunet.use_backend("numpy"):
        back = gpunet.asarray(s)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(gpunet.to_numpy(s), a)


def test_strict_backend_rejects_numpy_leaks_and_host_conversion():
    with gpunet.use_backend("strict"):
        s = gpunet.asarray(np.ones(3))
    with pytest.raises(RuntimeError, match="Can't convert array"):
        np.asarray(s)
    for convert in (float, int, bool):
        with pytest.raises(RuntimeError, match="hidden device-to-host sync"):
            convert(s[0])
    xp = gpunet.get_array_module(s)
    with pytest.raises(Exception):  # noqa: B017 (array_api_strict raises various types)
        s[s > 0]  # boolean-mask indexing: a data-dependent shape
    with pytest.raises(Exception):  # noqa: B017
        xp.unique_values(s)
