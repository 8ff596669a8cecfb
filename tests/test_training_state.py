"""gpunet.training.state: the checkpoint schema round-trips, and a checkpoint that does not
fit changes nothing (issue 10 item 3); labels are checked once before training."""

import json

import numpy as np
import pytest

import gpunet
from gpunet.checkpoint import load_npz, save_npz_atomic
from gpunet.models import FullyConnectedNet
from gpunet.solver import Solver


def make_data(seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(80, 6))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return dict(X_train=X[:60], y_train=y[:60], X_val=X[60:], y_val=y[60:])


def net(seed):
    """Parameters, BatchNorm buffers and a dropout generator: every part of the schema."""
    return FullyConnectedNet([8], input_dim=6, num_classes=3, normalization="batchnorm",
                             dropout_keep_ratio=0.8, dtype=np.float64, seed=seed)


KW = dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=16,
          num_epochs=3, verbose=False, seed=3, restore_best=False, lr_decay=0.9)


def contents(path):
    """A checkpoint file as comparable host data: {array name: array}, meta."""
    arrays, meta = load_npz(path)
    return arrays, json.loads(json.dumps(meta, default=repr))


def assert_same_file_contents(a, b):
    (arrays_a, meta_a), (arrays_b, meta_b) = a, b
    assert meta_a == meta_b
    assert arrays_a.keys() == arrays_b.keys()
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
        assert arrays_a[k].dtype == arrays_b[k].dtype, k


@pytest.fixture
def trained(tmp_path):
    """A 3-epoch run with a checkpoint after every epoch."""
    Solver(net(0), make_data(), checkpoint_name=str(tmp_path / "a"), keep_every=1, **KW).train()
    return tmp_path


def test_schema_on_disk_is_unchanged(trained):
    """The keys of a Solver checkpoint (the format old files have, so they keep loading)."""
    arrays, meta = load_npz(trained / "a_epoch_2.npz")
    assert set(meta) == {
        "format", "version", "kind", "update_rule", "optim_scalars", "optim_arrays", "base_lr",
        "schedule", "batch_size", "drop_last", "num_train", "epoch", "iteration", "num_epochs",
        "monitor", "best_epoch", "best_val_acc", "best_val_loss", "epochs_since_best",
        "stopped_early", "history", "param_names", "buffer_names", "best_buffer_names", "rng",
        "eval_rng", "model_rng", "backend", "world_size", "patience", "run", "model"}
    model = net(0)
    params, buffers = list(model.params), list(model.get_buffers())
    assert params and buffers
    assert sorted(meta["param_names"]) == sorted(params)
    assert sorted(meta["buffer_names"]) == sorted(buffers)
    expected = ({f"param/{k}" for k in params} | {f"best_param/{k}" for k in params}
                | {f"buffer/{k}" for k in buffers} | {f"best_buffer/{k}" for k in buffers}
                | {f"optim/{k}/{s}" for k in params for s in ("m", "v")})
    assert set(arrays) == expected
    assert meta["world_size"] == 1 and meta["epoch"] == 2 and meta["kind"] == "solver"


def test_state_round_trip(trained):
    """Loading a checkpoint into a differently initialised Solver and saving it again
    writes the same checkpoint: to_arrays(load(x)) == x for every array and key."""
    s = Solver(net(7), make_data(), resume=trained / "a_epoch_2.npz", **KW)
    assert (s.epoch, s.iteration) == (2, 8)
    s.save_checkpoint(trained / "again.npz")
    assert_same_file_contents(contents(trained / "a_epoch_2.npz"), contents(trained / "again.npz"))


def _garbage_rng(meta):
    meta["rng"] = {"bit_generator": "PCG64", "state": {"state": "not a number", "inc": 1},
                   "has_uint32": 0, "uinteger": 0}


def _wrong_kind_of_model_rng(meta):
    meta["model_rng"] = np.random.Generator(np.random.MT19937(0)).bit_generator.state


def _shape(arrays, key):
    arrays[key] = np.zeros(arrays[key].shape + (1,), arrays[key].dtype)


CORRUPTIONS = {
    "rng state": lambda arrays, meta: _garbage_rng(meta),
    "model rng state": lambda arrays, meta: _wrong_kind_of_model_rng(meta),
    "missing key": lambda arrays, meta: meta.pop("eval_rng"),
    "history": lambda arrays, meta: meta.update(history={**meta["history"], "loss": 3}),
    "negative epoch": lambda arrays, meta: meta.update(epoch=-1),
    "optimizer array shape": lambda arrays, meta: _shape(arrays, "optim/W1/m"),
    "best parameter dtype": lambda arrays, meta: arrays.update(
        {"best_param/b1": arrays["best_param/b1"].astype(np.float32)}),
    "missing array": lambda arrays, meta: arrays.pop("best_buffer/bn1.running_var"),
    "stopped_early": lambda arrays, meta: meta.update(stopped_early="yes"),
}


@pytest.mark.parametrize("piece", CORRUPTIONS)
def test_a_failed_load_changes_nothing(trained, piece):
    """Everything a checkpoint holds (parameters, buffers, optimizer state, counters,
    history, generators, the model's dropout generator) is as before a failed load."""
    s = Solver(net(0), make_data(), checkpoint_name=str(trained / "b"), **dict(KW, num_epochs=1))
    s.train()
    s.save_checkpoint(trained / "before.npz")
    best_checkpoint = s.best_checkpoint

    arrays, meta = load_npz(trained / "a_epoch_2.npz")  # another epoch: loading would change all
    CORRUPTIONS[piece](arrays, meta)
    save_npz_atomic(trained / "bad.npz", arrays, meta)
    with pytest.raises(ValueError, match="checkpoint .*bad.npz"):
        s.load_checkpoint(trained / "bad.npz")

    s.save_checkpoint(trained / "after.npz")
    assert_same_file_contents(contents(trained / "before.npz"), contents(trained / "after.npz"))
    assert s.best_checkpoint == best_checkpoint
    s.load_checkpoint(trained / "a_epoch_2.npz")  # the guard: the uncorrupted file does load
    assert s.epoch == 2


def test_labels_are_checked_once_on_the_host_before_training():
    """Device labels out of range would poison the loss with NaN on the device (losses
    docstring); the Solver refuses them before the first step instead."""
    data = make_data()
    data["y_train"] = data["y_train"].copy()
    data["y_train"][5] = 3  # 3 classes: labels in [0, 2]
    steps = []

    class Net(FullyConnectedNet):
        def loss(self, X, y=None):
            if y is not None:
                steps.append(1)
            return super().loss(X, y)

    with gpunet.use_backend("strict"):
        model = Net([8], input_dim=6, num_classes=3, dtype=np.float64, seed=0)
        device = {k: gpunet.asarray(v) for k, v in data.items()}
        s = Solver(model, device, **KW)
        with pytest.raises(ValueError, match=r"data\['y_train'\].*lie in \[0, 2\]"):
            s.train()
    assert steps == [] and s.iteration == 0
