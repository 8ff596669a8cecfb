"""The backend choice per thread: ``with use_backend(...)`` and a plain ``use_backend(...)``
touch only the calling thread; ``set_backend`` is what every other (and every new) thread sees."""

import sys
import threading

import pytest

import gpunet
from gpunet.backend import switch


@pytest.fixture
def fresh_switch(monkeypatch):
    """No choice made yet and no GPUNET_BACKEND: every thread starts on numpy."""
    monkeypatch.delenv("GPUNET_BACKEND", raising=False)
    switch._reset_for_tests()
    yield
    switch._reset_for_tests()


@pytest.fixture
def frequent_thread_switches():
    """Let the interpreter switch threads every microsecond, so a window between two
    statements of another thread is hit many times per run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(30)
    return out[0]


def test_a_with_block_is_never_seen_by_another_thread(fresh_switch, frequent_thread_switches):
    done = threading.Event()
    reads, wrong = [0], []

    def reader():
        while not done.is_set():
            b = gpunet.get_backend()
            reads[0] += 1
            if b != "numpy":
                wrong.append(b)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(20000):
            with gpunet.use_backend("strict"):
                assert gpunet.get_backend() == "strict"
            assert gpunet.get_backend() == "numpy"
    finally:
        done.set()
        t.join(30)
    assert reads[0] > 1000  # the reader really ran alongside
    assert wrong == [], f"{len(wrong)} of {reads[0]} reads in another thread saw the block's backend"


def test_plain_call_sets_only_the_calling_threads_choice(fresh_switch):
    def worker():
        gpunet.use_backend("strict")  # README style, without `with`
        return gpunet.get_backend()

    assert _in_thread(worker) == "strict"
    assert gpunet.get_backend() == "numpy"
    assert _in_thread(gpunet.get_backend) == "numpy"  # a new thread starts from the process default


def test_set_backend_is_what_other_and_new_threads_see(fresh_switch):
    gpunet.set_backend("strict")
    assert gpunet.get_backend() == "strict"
    assert _in_thread(gpunet.get_backend) == "strict"
    gpunet.use_backend("numpy")  # this thread's choice beats the process default
    gpunet.set_backend("strict")
    assert gpunet.get_backend() == "numpy"
    assert _in_thread(gpunet.get_backend) == "strict"


def test_with_block_restores_the_threads_previous_choice_also_on_error(fresh_switch):
    gpunet.use_backend("strict")
    with gpunet.use_backend("numpy") as chosen:
        assert chosen == "numpy" and gpunet.get_backend() == "numpy"
    assert gpunet.get_backend() == "strict"
    with pytest.raises(KeyError), gpunet.use_backend("numpy"):
        raise KeyError("inside")
    assert gpunet.get_backend() == "strict"


def test_arrays_made_in_concurrent_threads_land_on_each_threads_backend(fresh_switch):
    results = {}
    barrier = threading.Barrier(2)

    def make(name):
        with gpunet.use_backend(name):
            barrier.wait(10)  # both threads are inside their blocks now
            results[name] = [gpunet.backend.backend_of(gpunet.asarray([1.0])) for _ in range(200)]

    threads = [threading.Thread(target=make, args=(n,)) for n in ("numpy", "strict")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"numpy": ["numpy"] * 200, "strict": ["strict"] * 200}
