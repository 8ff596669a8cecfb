"""The backend switch: names, env var, context manager (thread-local), lazy CuPy,
clear errors, moving data between backends, and the strict backend's guards."""

import logging
import subprocess
import sys
import threading

import numpy as np
import pytest

import gpunet
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
    import os

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


def test_env_var_with_an_unknown_name_says_so(fresh_switch):
    fresh_switch.setenv("GPUNET_BACKEND", "tpu")
    with pytest.raises(ValueError, match=r"GPUNET_BACKEND='tpu': unknown backend 'tpu'; expected one of"):
        gpunet.get_backend()


def test_function_call_sets_the_process_default(fresh_switch):
    fresh_switch.delenv("GPUNET_BACKEND", raising=False)
    assert gpunet.get_backend() == "numpy"
    gpunet.use_backend("strict")
    assert gpunet.get_backend() == "strict"
    seen = []
    t = threading.Thread(target=lambda: seen.append(gpunet.get_backend()))
    t.start()
    t.join()
    assert seen == ["strict"]


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


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; expected one of 'numpy', 'cupy', 'strict', 'auto'"):
        gpunet.use_backend("torch")


def test_cupy_not_installed_says_so_with_install_command(monkeypatch, fresh_probe):
    def no_cupy(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(cs.importlib, "import_module", no_cupy)
    with pytest.raises(gpunet.BackendUnavailableError) as err:
        gpunet.use_backend("cupy")
    msg = str(err.value)
    assert "CuPy is not installed" in msg
    assert "pip install gpunet[cuda12]" in msg and "gpunet[cuda13]" in msg


def test_cupy_without_device_says_so(monkeypatch, fresh_probe):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class FakeCupy:
        __version__ = "99.0"
        cuda = type("cuda", (), {"runtime": FakeRuntime})

    monkeypatch.setattr(cs.importlib, "import_module", lambda name: FakeCupy)
    with pytest.raises(gpunet.BackendUnavailableError) as err:
        gpunet.use_backend("cupy")
    msg = str(err.value)
    assert "CuPy 99.0 is installed but no CUDA device is usable" in msg
    assert "cudaErrorNoDevice" in msg and "pip install gpunet[cuda12]" in msg


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
    with pytest.raises(Exception):
        s[s > 0]  # boolean-mask indexing: a data-dependent shape
    with pytest.raises(Exception):
        xp.unique_values(s)
