"""Training reliability (issue 10 items 4, 5, 8, 13 and Ctrl-C; issue 12 items 7 and the run
record): the resume rule, the NaN guard, a last batch of one, checkpoint retention, crafted
checkpoints through the Solver, and a clean stop on SIGINT."""

import os
import signal

import numpy as np
import pytest

import gpunet
from gpunet import checkpoint
from gpunet.checkpoint import load_npz, save_npz_atomic
from gpunet.models import FullyConnectedNet
from gpunet.solver import NonFiniteLossError, Solver
from gpunet.training import callbacks


def make_data(n_train=60, n_val=30, seed=0, d=6):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n_train + n_val, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return dict(X_train=X[:n_train], y_train=y[:n_train], X_val=X[n_train:], y_val=y[n_train:])


def net(seed=0, **kw):
    return FullyConnectedNet([8], input_dim=6, num_classes=3, dtype=np.float64, seed=seed, **kw)


RUN = dict(update_rule="adam", optim_config={"learning_rate": 0.02}, batch_size=8,
           lr_decay=0.9, num_epochs=4, verbose=False, seed=1)


def params(model):
    return {k: gpunet.to_numpy(v).copy() for k, v in model.params.items()}


@pytest.fixture
def ck(tmp_path):
    """Epoch 2 of a 4-epoch adam run (tmp_path/a_epoch_2.npz)."""
    Solver(net(0), make_data(), checkpoint_name=str(tmp_path / "a"), keep_every=1, **RUN).train()
    return tmp_path / "a_epoch_2.npz"


# --- item 4: the resume rule ----------------------------------------------------------------


def test_settings_not_passed_come_from_the_checkpoint(ck):
    """Resuming with nothing but the checkpoint continues the run exactly: update rule,
    learning rate, batch size, schedule and num_epochs are the checkpoint's."""
    straight = net(0)
    Solver(straight, make_data(), **RUN).train()
    resumed = net(5)
    s = Solver(resumed, make_data(), resume=ck, verbose=False)
    assert (s.update_rule_name, s.batch_size, s.num_epochs) == ("adam", 8, 4)
    assert s.resumed.epoch == 2 and s.resumed.changes == ()
    s.train()
    for k, w in params(straight).items():
        np.testing.assert_array_equal(params(resumed)[k], w, err_msg=k)


def test_a_passed_learning_rate_wins_and_is_reported(ck, capsys):
    s = Solver(net(5), make_data(), resume=ck, optim_config={"learning_rate": 0.5},
               verbose=True, progress=False)
    assert set(s.state.base_lr.values()) == {0.5}
    assert s.resumed.changes == (("optim_config['learning_rate']", 0.02, 0.5),)
    saved, _ = load_npz(ck)  # the moments are the checkpoint's
    np.testing.assert_array_equal(gpunet.to_numpy(s.optim_configs["W1"]["m"]), saved["optim/W1/m"])
    s.train()
    assert s.history["lr"][2:] == pytest.approx([0.5 * 0.9 ** 2, 0.5 * 0.9 ** 3])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"resumed from epoch 2 of {ck} (iteration 16); changed: "
                                   "optim_config['learning_rate'] 0.02 -> 0.5")


def test_other_hyperparameters_and_settings_win_and_are_reported(ck):
    s = Solver(net(5), make_data(), resume=ck, optim_config={"beta1": 0.5}, batch_size=4,
               num_epochs=3, verbose=False)
    assert all(c["beta1"] == 0.5 and c["t"] == 16 for c in s.optim_configs.values())
    assert set(s.state.base_lr.values()) == {0.02}
    assert dict((k, (a, b)) for k, a, b in s.resumed.changes) == {
        "optim_config['beta1']": (0.9, 0.5), "batch_size": (8, 4), "num_epochs": (4, 3)}
    assert s.iterations_per_epoch == 15
    s.train()
    assert s.epoch == 3 and s.iteration == 16 + 15


def test_another_update_rule_starts_its_state_afresh(ck):
    s = Solver(net(5), make_data(), resume=ck, update_rule="sgd_momentum",
               optim_config={"learning_rate": 0.01}, verbose=False)
    assert ("update_rule", "adam", "sgd_momentum") in s.resumed.changes
    assert all(set(c) == {"learning_rate", "momentum"} for c in s.optim_configs.values())
    s.train()
    assert all("velocity" in c for c in s.optim_configs.values())


def test_nothing_to_train_warns(ck):
    s = Solver(net(5), make_data(), resume=ck, num_epochs=2, verbose=False)
    with pytest.warns(UserWarning, match="nothing to train: 2 epochs are done and num_epochs=2"):
        s.train()
    assert (s.epoch, s.iteration) == (2, 16)


def test_run_info_is_recorded_and_resumed(tmp_path):
    info = {"data": {"name": "toy", "seed": 0}, "model": "mlp"}
    Solver(net(0), make_data(), checkpoint_name=str(tmp_path / "r"), run_info=info,
           **{**RUN, "num_epochs": 1}).train()
    assert load_npz(tmp_path / "r_last.npz")[1]["run"] == info
    s = Solver(net(0), make_data(), resume=tmp_path / "r_last.npz", verbose=False)
    assert s.run_info == info
    with pytest.raises(TypeError, match="run_info must be JSON"):
        Solver(net(0), make_data(), run_info={"f": object()})


# --- item 13 through the Solver: one error type, the Solver unchanged ------------------------


@pytest.mark.parametrize("corrupt", [
    lambda m: m.update(history={**m["history"], "loss": ["x"]}),
    lambda m: m.update(optim_scalars=[1, 2]),
    lambda m: m.update(base_lr="fast"),
    lambda m: m.update(batch_size=0),
    lambda m: m.update(schedule={"type": "Nope"}),
    lambda m: m.update(param_names="W1"),
    lambda m: m.update(kind="model"),
])
def test_crafted_metadata_raises_checkpoint_error(ck, tmp_path, corrupt):
    arrays, meta = load_npz(ck)
    corrupt(meta)
    save_npz_atomic(tmp_path / "bad.npz", arrays, meta)
    s = Solver(net(3), make_data(), verbose=False)
    before = params(s.model)
    with pytest.raises(checkpoint.CheckpointError, match="bad.npz"):
        s.load_checkpoint(tmp_path / "bad.npz")
    assert s.epoch == 0
    for k, w in before.items():
        np.testing.assert_array_equal(params(s.model)[k], w)


# --- item 5: the NaN guard ----------------------------------------------------------------------


class BlowUpOnce(FullyConnectedNet):
    """Training calls number ``bad`` give a NaN loss and NaN gradients; the rest are fine."""

    def __init__(self, bad, **kw):
        super().__init__([8], input_dim=6, num_classes=3, dtype=np.float64, seed=0, **kw)
        self.bad, self.calls = set(bad), 0

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        self.calls += 1
        if self.calls in self.bad:
            return out[0] * np.nan, {k: g * np.nan for k, g in out[1].items()}
        return out


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_training_again_after_the_guard_fired_works():
    model = BlowUpOnce(bad={10})
    s = Solver(model, make_data(), update_rule="adam", batch_size=8, num_epochs=3,
               verbose=False, print_every=1)
    with pytest.raises(NonFiniteLossError, match="optimizer state was reset"):
        s.train()
    for cfg in s.optim_configs.values():
        assert set(cfg) == {"learning_rate", "beta1", "beta2", "epsilon"}
    assert all(np.isfinite(w).all() for w in params(model).values())
    s.train()  # continues from the best epoch with fresh moments
    assert s.epoch == 3 and np.isfinite(s.history["loss"][-8:]).all()
    assert all(np.isfinite(w).all() for w in params(model).values())


class ValNaNAfter(FullyConnectedNet):
    """Test-mode scores turn NaN once ``after`` training steps have run (weights 'blown up'
    although each training loss read back was finite)."""

    def __init__(self, after):
        super().__init__([8], input_dim=6, num_classes=3, dtype=np.float64, seed=0)
        self.after, self.steps = after, 0

    def loss(self, X, y=None):
        if y is not None:
            self.steps += 1
            return super().loss(X, y)
        scores = super().loss(X)
        return scores * np.nan if self.steps >= self.after else scores


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_nonfinite_validation_loss_is_never_a_best_epoch(tmp_path):
    s = Solver(ValNaNAfter(after=16), make_data(), batch_size=8, num_epochs=4, verbose=False,
               monitor="val_loss", checkpoint_name=str(tmp_path / "run"))
    with pytest.raises(NonFiniteLossError, match="validation loss is nan after epoch 2"):
        s.train()
    assert s.best_epoch == 1
    assert load_npz(tmp_path / "run_best.npz")[1]["epoch"] == 1
    assert load_npz(tmp_path / "run_last.npz")[1]["epoch"] == 1


def test_nan_in_the_inputs_is_reported_before_training():
    data = make_data()
    data["X_val"] = data["X_val"].copy()
    data["X_val"][3, 2] = np.nan
    model = BlowUpOnce(bad=set())
    s = Solver(model, data, verbose=False)
    with pytest.raises(ValueError, match=r"data\['X_val'\] holds 1 NaN or infinite value"):
        s.train()
    assert model.calls == 0


# --- item 8: a last batch of one example -------------------------------------------------


def test_a_last_batch_of_one_is_merged_so_batchnorm_trains():
    data = make_data(n_train=17)
    model = net(0, normalization="batchnorm")
    seen = []
    real = model.loss

    def loss(X, y=None):
        if y is not None:
            seen.append(X.shape[0])
        return real(X, y)

    model.loss = loss
    s = Solver(model, data, batch_size=8, num_epochs=2, verbose=False)
    assert s.iterations_per_epoch == 2
    s.train()
    assert seen == [8, 9, 8, 9]
    seen.clear()
    Solver(model, data, batch_size=8, num_epochs=1, drop_last=True, verbose=False).train()
    assert seen == [8, 8]


def test_a_batch_of_one_names_drop_last():
    s = Solver(net(0, normalization="batchnorm"), make_data(), batch_size=1, num_epochs=1,
               verbose=False)
    with pytest.raises(ValueError, match="batch_size >= 2.*drop_last"):
        s.train()


# --- issue 12.7: which checkpoint files are written ------------------------------------------


def test_last_and_best_by_default_epoch_files_when_asked(tmp_path):
    Solver(net(0), make_data(), checkpoint_name=str(tmp_path / "run.npz"), keep_every=2,
           **{**RUN, "num_epochs": 5}).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_best.npz", "run_epoch_2.npz", "run_epoch_4.npz", "run_last.npz"]
    assert load_npz(tmp_path / "run_last.npz")[1]["epoch"] == 5
    assert load_npz(tmp_path / "run_epoch_4.npz")[1]["epoch"] == 4


# --- Ctrl-C ---------------------------------------------------------------------------------


class InterruptAt(FullyConnectedNet):
    """Sends this process SIGINT during training call ``at``."""

    def __init__(self, at):
        super().__init__([8], input_dim=6, num_classes=3, dtype=np.float64, seed=0)
        self.at, self.calls = at, 0

    def loss(self, X, y=None):
        if y is not None:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGINT)
        return super().loss(X, y)


def test_sigint_stops_after_the_running_step(tmp_path):
    model = InterruptAt(at=11)  # epoch 2, step 3 (8 steps per epoch)
    s = Solver(model, make_data(), batch_size=8, num_epochs=5, verbose=False,
               checkpoint_name=str(tmp_path / "run"))
    with pytest.raises(callbacks.TrainingInterrupted) as info:
        s.train()
    err = info.value
    assert isinstance(err, KeyboardInterrupt)
    assert s.iteration == 11 and s.epoch == 1 and model.calls == 11  # the step finished
    assert (err.epoch, err.finished, err.checkpoint) == (2, 1, tmp_path / "run_last.npz")
    assert "the last finished epoch (1) is in" in str(err)
    assert load_npz(tmp_path / "run_last.npz")[1]["epoch"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
