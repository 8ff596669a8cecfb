"""gpunet.training.parallel: one process is a no-op; shards and shares against naive loops;
only parallel.py knows about ranks; the RNG-state JSON crosses processes without the
checkpoint's private encoding. (Training under MPI: tests/test_distributed.py.)"""

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import gpunet.training
from gpunet.distributed import Communicator
from gpunet.training.parallel import DataParallel, SingleProcess, make_parallel

TRAINING = Path(gpunet.training.__file__).parent


class Model:
    """A model whose buffers must not be touched and whose generator must not move."""

    def __init__(self):
        self.params = {"w": np.ones(3)}
        self.rng = np.random.default_rng(5)

    def get_buffers(self):
        return {"running_mean": np.zeros(3)}

    def set_buffers(self, buffers):
        raise AssertionError("a single process has nothing to average")


def test_a_single_process_is_the_identity():
    p = make_parallel(None)
    assert type(p) is SingleProcess and p.is_root and p.world_size == 1
    perm = np.random.default_rng(0).permutation(10)
    assert p.shard(perm) is perm
    grads, loss = {"w": np.ones(3)}, np.float64(2.0)
    g2, l2 = p.reduce(["w"], grads, loss)
    assert g2 is grads and l2 is loss
    host = np.array([3.0, 1.5])
    assert p.total(host) is host
    assert p.share(7) == (0, 7) and p.samples(5) == 5

    model = Model()
    state = model.rng.bit_generator.state
    p.average_buffers(model)
    p.reseed(model)
    assert model.rng.bit_generator.state == state

    p.agree(None, "anything")
    with pytest.raises(KeyError, match="mine"):
        p.agree(KeyError("mine"), "anything")
    calls = []
    p.on_root(lambda: calls.append("write"), "write")
    p.from_root(lambda: calls.append("load"), lambda: calls.append("export"),
                lambda *a: calls.append("apply"), model, "load")
    p.from_root(None, lambda: calls.append("export"), lambda *a: calls.append("apply"),
                model, "share")
    assert calls == ["write", "load"]  # nothing exported or applied: no other process


@pytest.mark.parametrize("n,batch", [(60, 8), (64, 8), (7, 10), (1, 1)])
def test_steps_per_epoch(n, batch):
    p = SingleProcess()
    assert p.steps_per_epoch(n, batch, drop_last=False) == math.ceil(n / batch)
    if n >= batch:
        assert p.steps_per_epoch(n, batch, drop_last=True) == n // batch
    else:
        with pytest.raises(ValueError, match="drop_last=True .* would leave no batch"):
            p.steps_per_epoch(n, batch, drop_last=True)


class FakeComm:
    """Rank ``rank`` of ``size`` (no collective is called by the methods tested here)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def allreduce_mean(self, arrays):
        raise AssertionError("not called")

    allreduce_sum = bcast = allreduce_mean

    def barrier(self):
        raise AssertionError("not called")


@pytest.mark.parametrize("n,size", [(10, 2), (11, 3), (5, 5), (103, 4)])
def test_shards_and_shares_match_naive_loops(n, size):
    perm = np.random.default_rng(n).permutation(n)
    usable = n - n % size
    for rank in range(size):
        p = make_parallel(FakeComm(rank, size))
        assert isinstance(p, DataParallel) and p.is_root == (rank == 0)
        expected = [perm[i] for i in range(usable) if i % size == rank]
        assert p.shard(perm).tolist() == expected
        assert p.samples(3) == 3 * size
    starts_stops = [make_parallel(FakeComm(r, size)).share(n) for r in range(size)]
    covered = [i for start, stop in starts_stops for i in range(start, stop)]
    assert covered == list(range(n))  # every row once, in order


def test_only_parallel_py_knows_about_processes():
    """No name or attribute ``rank``, ``size`` or ``comm`` in the training package outside
    parallel.py (it only passes the parallel object along)."""
    found = []
    for path in sorted(TRAINING.glob("*.py")):
        if path.name == "parallel.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = (node.id if isinstance(node, ast.Name) else node.attr
                    if isinstance(node, ast.Attribute) else node.arg
                    if isinstance(node, ast.arg) else None)
            if name in ("size", "comm") or (name and "rank" in name):
                found.append(f"{path.name}:{node.lineno}: {name}")
    assert not found


class Pair(Communicator):
    """Two ranks of one process, called one after the other: rank 0's broadcasts are queued
    for rank 1."""

    def __init__(self, rank, queue):
        self.rank, self.size, self.queue = rank, 2, queue

    def _collective(self, arrays, op, kind, root):
        assert kind == "bcast" and root == 0
        if self.rank == 0:
            self.queue.append([a.copy() for a in arrays])
            return arrays
        return self.queue.pop(0)


def test_bcast_json_carries_generator_states_between_ranks():
    """PCG64 (128-bit ints) and MT19937 (an ndarray inside) states reach rank 1 intact."""
    queue = []
    states = {"pcg": np.random.default_rng(3).bit_generator.state,
              "mt": np.random.Generator(np.random.MT19937(4)).bit_generator.state}
    on_root = Pair(0, queue).bcast_json(states)
    got = Pair(1, queue).bcast_json(None)
    assert not queue
    for received in (on_root, got):
        assert received["pcg"] == states["pcg"]
        g = np.random.Generator(np.random.MT19937())
        g.bit_generator.state = received["mt"]
        assert g.random() == np.random.Generator(np.random.MT19937(4)).random()
