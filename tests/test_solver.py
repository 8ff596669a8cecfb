"""Solver: CS231n behaviour with the course bugs fixed, resume-exact checkpoints, NaN guard."""

import re

import numpy as np
import pytest

import gpunet
from gpunet import optim
from gpunet.backend import backend_of, get_array_module
from gpunet.backend.namespace import arange, from_host
from gpunet.checkpoint import CheckpointError, load_npz
from gpunet.solver import NonFiniteLossError, Solver
from gpunet.training import device  # does the read-backs

D, H, C = 6, 10, 3


class TinyNet:
    """A 2-layer ReLU net with softmax loss, written in plain xp ops (CS231n contract).

    ``dropout`` (keep probability) draws its masks from ``self.rng`` on the host;
    ``buffers`` keeps a running mean of the hidden activations (like BatchNorm's running
    statistics) that only the test-mode forward pass uses; ``host_loss`` returns the loss
    as a Python float like the course models do.
    """

    def __init__(self, seed=0, dropout=None, buffers=False, host_loss=False, reg=0.0,
                 dtype=np.float64):
        r = np.random.default_rng(seed)
        like = gpunet.asarray(np.zeros(1, dtype))
        init = dict(W1=r.normal(0, 0.5, (D, H)), b1=np.zeros(H),
                    W2=r.normal(0, 0.5, (H, C)), b2=np.zeros(C))
        self.params = {k: from_host(v.astype(dtype), like) for k, v in init.items()}
        self.dropout, self.host_loss, self.reg = dropout, host_loss, reg
        if dropout is not None:
            self.rng = np.random.default_rng(seed + 100)
        self.has_buffers = buffers
        self.running_mean = from_host(np.zeros(H, dtype), like)
        self.test_batches = []  # sizes of the test-mode batches seen

    def get_buffers(self):
        if not self.has_buffers:
            raise AttributeError("no buffers")
        return {"running_mean": self.running_mean}

    def set_buffers(self, buffers):
        self.running_mean = buffers["running_mean"]

    def __getattribute__(self, name):  # models without buffers have no get/set_buffers
        if name in ("get_buffers", "set_buffers") and not object.__getattribute__(
                self, "has_buffers"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def loss(self, X, y=None):
        p = self.params
        xp = get_array_module(X, p["W1"])
        h = xp.maximum(X @ p["W1"] + p["b1"], 0.0)
        if y is None:
            self.test_batches.append(X.shape[0])
            if self.has_buffers:
                h = h - 0.5 * self.running_mean
            return h @ p["W2"] + p["b2"]
        if self.has_buffers:
            self.running_mean = 0.9 * self.running_mean + 0.1 * xp.mean(h, axis=0)
        mask = None
        if self.dropout is not None:
            m = (self.rng.random(h.shape) < self.dropout) / self.dropout
            mask = from_host(m.astype(np.dtype(str(h.dtype).rsplit(".", 1)[-1])), h)
            h = h * mask
        s = h @ p["W2"] + p["b2"]
        s = s - xp.max(s, axis=1, keepdims=True)
        e = xp.exp(s)
        prob = e / xp.sum(e, axis=1, keepdims=True)
        onehot = xp.astype(xp.reshape(y, (-1, 1)) == arange(C, like=X), X.dtype)
        n = X.shape[0]
        loss = xp.sum(xp.log(xp.sum(e, axis=1)) - xp.sum(s * onehot, axis=1)) / n
        loss = loss + 0.5 * self.reg * (xp.sum(p["W1"] ** 2) + xp.sum(p["W2"] ** 2))
        ds = (prob - onehot) / n
        dh = ds @ p["W2"].T
        if mask is not None:
            dh = dh * mask
            h = h / xp.where(mask > 0, mask, 1.0)  # undo for the ReLU gate below
        dh = xp.where(h > 0, dh, 0.0)
        grads = dict(W1=X.T @ dh + self.reg * p["W1"], b1=xp.sum(dh, axis=0),
                     W2=(h * (mask if mask is not None else 1.0)).T @ ds + self.reg * p["W2"],
                     b2=xp.sum(ds, axis=0))
        if self.host_loss:
            loss = float(gpunet.to_numpy(loss))
        return loss, grads


def make_data(n_train=60, n_val=30, seed=1):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n_train + n_val, D))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return dict(X_train=X[:n_train], y_train=y[:n_train], X_val=X[n_train:], y_val=y[n_train:])


def quiet(**kw):
    base = dict(verbose=False, seed=0, batch_size=8, num_epochs=3)
    base.update(kw)
    return base


def params_np(model):
    return {k: gpunet.to_numpy(v) for k, v in model.params.items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- training ---------------------------------------------------------------------------


class LossLogNet(TinyNet):
    """Also reads every training loss back itself (a sync the Solver must not need)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is not None:
            self.losses.append(float(gpunet.to_numpy(out[0])))
        return out


@pytest.mark.parametrize("rule", ["sgd_momentum", "adam"])
def test_trains_and_records_history(backend, rule):
    data = make_data()
    model = LossLogNet()
    s = Solver(model, data, **quiet(update_rule=rule, num_epochs=4,
                                    optim_config={"learning_rate": 0.05}))
    s.train()
    h = s.history
    ipe = -(-60 // 8)
    assert s.iterations_per_epoch == ipe and len(h["loss"]) == 4 * ipe
    assert all(len(h[k]) == 4 for k in ("train_acc", "val_acc", "val_loss", "lr"))
    assert s.loss_history is h["loss"] and s.val_acc_history is h["val_acc"]
    # The losses read back in bulk are the model's per-step losses, in order.
    assert h["loss"] == model.losses
    assert np.mean(h["loss"][-ipe:]) < np.mean(h["loss"][:ipe])
    assert all(type(v) is float for v in h["loss"] + h["val_acc"])
    assert all(backend_of(v) == backend for v in model.params.values())


def test_plain_cs231n_model_with_host_float_loss():
    model = TinyNet(host_loss=True)
    s = Solver(model, make_data(), **quiet(update_rule="sgd", optim_config={"learning_rate": 0.1}))
    s.train()
    assert len(s.loss_history) == 3 * 8 and np.isfinite(s.loss_history).all()


class RecordingNet(TinyNet):
    """Records which training rows it is given (column 0 of X carries the row id)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def loss(self, X, y=None):
        if y is not None:
            self.seen.append(gpunet.to_numpy(X)[:, 0].astype(int).tolist())
        return super().loss(X, y)


def test_each_epoch_is_a_permutation_without_replacement(backend):
    data = make_data(n_train=30)
    data["X_train"] = data["X_train"].copy()
    data["X_train"][:, 0] = np.arange(30)
    model = RecordingNet()
    Solver(model, data, **quiet(batch_size=8, num_epochs=3, optim_config={"learning_rate": 0.0})
           ).train()
    assert [len(b) for b in model.seen] == [8, 8, 8, 6] * 3  # last batch of an epoch is short
    epochs = [sum(model.seen[i:i + 4], []) for i in (0, 4, 8)]
    for ids in epochs:
        assert sorted(ids) == list(range(30))
    assert epochs[0] != epochs[1] != epochs[2]

    model2 = RecordingNet()  # same seed, same order; another seed, another order
    Solver(model2, data, **quiet(batch_size=8, num_epochs=3, optim_config={"learning_rate": 0.0})
           ).train()
    assert model2.seen == model.seen
    model3 = RecordingNet()
    Solver(model3, data, **quiet(seed=5, batch_size=8, num_epochs=1,
                                 optim_config={"learning_rate": 0.0})).train()
    assert model3.seen != model.seen[:4]


def test_drop_last():
    s = Solver(TinyNet(), make_data(n_train=30), **quiet(drop_last=True, num_epochs=1))
    assert s.iterations_per_epoch == 3
    s.train()
    assert len(s.loss_history) == 3


def test_optimizer_configs_are_per_parameter_and_user_dict_untouched():
    user_cfg = {"learning_rate": 0.05}
    model = TinyNet()
    s = Solver(model, make_data(), **quiet(update_rule="sgd_momentum", optim_config=user_cfg,
                                           num_epochs=1))
    s.train()
    assert user_cfg == {"learning_rate": 0.05}
    velocities = [s.optim_configs[k]["velocity"] for k in model.params]
    assert len({id(v) for v in velocities}) == len(velocities)
    for k, w in model.params.items():
        assert s.optim_configs[k]["velocity"].shape == w.shape


def test_best_params_are_deep_copies_and_the_best_epoch_is_restored(backend):
    data = make_data()
    kw = quiet(update_rule="sgd", optim_config={"learning_rate": 0.3}, num_epochs=5,
               num_train_samples=None)
    model = TinyNet()
    s = Solver(model, data, **kw)
    s.train()
    best_epoch = int(np.argmax(s.history["val_acc"])) + 1  # first maximum, strict ">"
    assert s.best_epoch == best_epoch and s.best_val_acc == max(s.history["val_acc"])
    for k, w in model.params.items():
        assert s.best_params[k] is not w
    assert_same_params(params_np(model), {k: gpunet.to_numpy(v) for k, v in s.best_params.items()})
    # Independent reference: the same run stopped at the best epoch, without restoring.
    ref = TinyNet()
    Solver(ref, data, **{**kw, "num_epochs": best_epoch, "restore_best": False}).train()
    assert_same_params(params_np(model), params_np(ref))
    # Mutating the model in place does not touch the stored best copy.
    before = gpunet.to_numpy(s.best_params["W1"]).copy()
    model.params["W1"][...] = model.params["W1"] + 1.0
    np.testing.assert_array_equal(gpunet.to_numpy(s.best_params["W1"]), before)


def test_params_dict_is_updated_in_place_not_replaced():
    model = TinyNet()
    params, w1 = model.params, model.params["W1"]
    Solver(model, make_data(), **quiet(num_epochs=2)).train()
    assert model.params is params and model.params["W1"] is w1


class ConstantWrongNet(TinyNet):
    """Always predicts a class that is never the label: val accuracy stays 0."""

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is not None:
            return out
        xp = get_array_module(out)
        return out * 0.0 + xp.astype(arange(C, like=out) == C - 1, out.dtype)


def test_zero_accuracy_run_still_keeps_a_best_epoch():
    """CS231n's best_val_acc = 0 with '>' left best_params empty and wiped model.params."""
    data = make_data()
    data["y_val"] = np.zeros_like(data["y_val"])
    model = ConstantWrongNet()
    s = Solver(model, data, **quiet(num_epochs=2))
    s.train()
    assert s.history["val_acc"] == [0.0, 0.0] and s.best_epoch == 1
    assert set(model.params) == {"W1", "b1", "W2", "b2"}


@pytest.mark.parametrize("monitor", ["val_acc", "val_loss"])
def test_patience_stops_when_the_monitored_metric_stalls(monitor, tmp_path):
    # learning_rate 0: the metric never changes, so it improves only in epoch 1.
    s = Solver(TinyNet(), make_data(), **quiet(
        optim_config={"learning_rate": 0.0}, num_epochs=10, patience=2, monitor=monitor,
        checkpoint_name=str(tmp_path / "run")))
    s.train()
    assert s.stopped_early and s.epoch == 3 and s.best_epoch == 1
    assert len(s.history["val_acc"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_best.npz", "run_last.npz"]


def test_val_loss_is_the_mean_softmax_cross_entropy_of_the_scores():
    data = make_data()
    model = TinyNet()
    s = Solver(model, data, **quiet(num_epochs=1, restore_best=False))
    s.train()
    scores = model.loss(data["X_val"])
    scores = scores - scores.max(axis=1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    expected = -logp[np.arange(len(data["y_val"])), data["y_val"]].mean()
    assert s.history["val_loss"][0] == pytest.approx(expected, rel=1e-12)


# --- learning rate ------------------------------------------------------------------------


def lr_recorder(seen):
    def recording_sgd(w, dw, config):
        seen.append(config["learning_rate"])
        return optim.sgd(w, dw, config)

    return recording_sgd


def test_lr_decay_per_epoch_as_cs231n():
    seen = []
    s = Solver(TinyNet(), make_data(n_train=16), **quiet(
        update_rule=lr_recorder(seen), optim_config={"learning_rate": 0.1}, lr_decay=0.5,
        batch_size=8, num_epochs=3))
    s.train()
    per_step = seen[::4]  # 4 parameters per step
    assert per_step == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert s.history["lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_warmup_per_iteration_then_cosine_per_epoch():
    seen = []
    s = Solver(TinyNet(), make_data(n_train=16), **quiet(
        update_rule=lr_recorder(seen), optim_config={"learning_rate": 0.1},
        lr_schedule="cosine", warmup_iters=3, batch_size=8, num_epochs=4))
    s.train()
    cos = [0.1 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    expected = [cos[it // 2] * min(1.0, (it + 1) / 3) for it in range(8)]
    assert seen[::4] == pytest.approx(expected, rel=1e-14)


def test_default_learning_rate_comes_from_the_rule():
    s = Solver(TinyNet(), make_data(), **quiet(update_rule="adam", lr_decay=0.5, num_epochs=2))
    s.train()
    assert s.history["lr"] == pytest.approx([1e-3, 5e-4])


# --- evaluation -----------------------------------------------------------------------------


def test_check_accuracy_is_batched_and_matches_a_reference(backend):
    data = make_data()
    model = TinyNet()
    s = Solver(model, data, **quiet())
    X, y = data["X_val"], data["y_val"]
    expected = np.mean(np.argmax(gpunet.to_numpy(model.loss(gpunet.asarray(X))), axis=1) == y)
    model.test_batches.clear()
    assert s.check_accuracy(X, y, batch_size=7) == pytest.approx(expected)
    assert model.test_batches == [7, 7, 7, 7, 2]
    model.test_batches.clear()
    s.check_accuracy(X, y)
    assert max(model.test_batches) <= s.eval_batch_size


def test_check_accuracy_subsamples_without_replacement():
    data = make_data(n_train=50)
    X = data["X_train"].copy()
    X[:, 0] = np.arange(50)

    class IdNet(TinyNet):
        def loss(self, X, y=None):
            if y is None:
                self.ids = getattr(self, "ids", []) + gpunet.to_numpy(X)[:, 0].astype(int).tolist()
            return super().loss(X, y)

    model = IdNet()
    s = Solver(model, data, **quiet())
    s.check_accuracy(X, data["y_train"], num_samples=40, batch_size=16)
    assert len(model.ids) == 40 and len(set(model.ids)) == 40


def test_device_resident_data_gives_the_same_result(backend):
    data = make_data()
    m1, m2 = TinyNet(dropout=0.8), TinyNet(dropout=0.8)
    Solver(m1, data, **quiet(update_rule="adam")).train()
    dev = {k: gpunet.asarray(v) for k, v in data.items()}
    assert backend_of(dev["X_train"]) == backend
    Solver(m2, dev, **quiet(update_rule="adam")).train()
    assert_same_params(params_np(m1), params_np(m2))


def test_no_host_sync_per_step(monkeypatch):
    """The loss is read back at print_every and epoch ends only, not once per step."""
    calls = []
    real = device.to_numpy

    def counting(x, *a, **k):
        calls.append(getattr(x, "shape", None))
        return real(x, *a, **k)

    monkeypatch.setattr(device, "to_numpy", counting)
    with gpunet.use_backend("strict"):  # strict also raises on any float()/bool() of the loss
        s = Solver(TinyNet(), make_data(n_train=80), **quiet(batch_size=8, num_epochs=2,
                                                              print_every=1000))
        s.train()
    steps = 2 * 10
    # X_train and X_val checked for NaN once; epoch 1: first step + epoch end; epoch 2:
    # epoch end; 2 evaluations per epoch.
    assert len(calls) == 2 + 3 + 2 * 2 < steps
    assert len(s.loss_history) == steps


# --- reporting ------------------------------------------------------------------------------


def test_verbose_false_prints_nothing(capsys, tmp_path):
    Solver(TinyNet(), make_data(), **quiet(checkpoint_name=str(tmp_path / "r"), print_every=1,
                                           progress=True)).train()
    out, err = capsys.readouterr()
    assert out == "" and err == ""


EPOCH_LINE = (r"epoch (\d+)/(\d+)  [\d,]+ samples/s  [\d.]+ s  loss (\d+\.\d{4})  "
              r"train_acc \d\.\d{4}  val_acc \d\.\d{4}  val_loss \d+\.\d{4}(  \(best\))?")


def test_plain_progress_is_one_line_per_epoch(capsys):
    """Not a terminal: one summary line per epoch, 4 decimals, no carriage returns; the
    loss shown is the epoch's mean training loss."""
    s = Solver(TinyNet(), make_data(n_train=16), **quiet(verbose=True, progress=False,
                                                         batch_size=8, num_epochs=2))
    s.train()
    out, err = capsys.readouterr()
    assert err == "" and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines):
        m = re.fullmatch(EPOCH_LINE, line)
        assert m and m.group(1) == str(k + 1) and m.group(2) == "2", line
        assert float(m.group(3)) == pytest.approx(np.mean(s.history["loss"][2 * k:2 * k + 2]),
                                                  abs=5e-5)


def test_print_every_keeps_cs231n_iteration_lines(capsys):
    Solver(TinyNet(), make_data(n_train=16), **quiet(verbose=True, progress=False,
                                                     batch_size=8, num_epochs=2,
                                                     print_every=3)).train()
    out = capsys.readouterr().out
    assert re.findall(r"^iteration (\d+)/4  loss \d+\.\d{4}  [\d,]+ samples/s$", out,
                      re.M) == ["1", "4"]
    assert len(re.findall(EPOCH_LINE, out)) == 2


def test_live_progress_line_ends_as_the_summary(capsys):
    """In place on stderr: every redraw starts with a carriage return, and each epoch's
    line is completed (newline) by its summary; nothing on stdout."""
    Solver(TinyNet(), make_data(), **quiet(verbose=True, progress=True, num_epochs=2)).train()
    out, err = capsys.readouterr()
    assert out == ""
    finished = err.split("\n")[:-1]
    assert len(finished) == 2 and err.endswith("\n")
    for k, line in enumerate(finished):
        last = line.split("\r")[-1].replace("\x1b[K", "")
        assert re.fullmatch(rf"epoch {k + 1}/2  \[=+\]  60/60  " + EPOCH_LINE[19:], last), last


def test_plot_writes_an_image(tmp_path):
    pytest.importorskip("matplotlib")
    s = Solver(TinyNet(), make_data(), **quiet(num_epochs=2))
    s.train()
    s.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- checkpoints and resume ----------------------------------------------------------------------


def resume_kwargs(tmp_path, name, **kw):
    base = quiet(update_rule="adam", optim_config={"learning_rate": 0.02}, lr_decay=0.9,
                 warmup_iters=5, num_train_samples=20, num_val_samples=25, num_epochs=4,
                 checkpoint_name=str(tmp_path / name), keep_every=1)
    base.update(kw)
    return base


def full_state(model, s):
    return dict(params=params_np(model), buf=gpunet.to_numpy(model.running_mean),
                history=s.history, rng=model.rng.bit_generator.state,
                m={k: gpunet.to_numpy(c["m"]) for k, c in s.optim_configs.items()},
                t=[c["t"] for c in s.optim_configs.values()], epoch=s.epoch,
                best=(s.best_epoch, s.best_val_acc))


def assert_same_state(a, b):
    assert_same_params(a["params"], b["params"])
    np.testing.assert_array_equal(a["buf"], b["buf"])
    assert_same_params(a["m"], b["m"])
    assert a["history"] == b["history"] and a["rng"] == b["rng"]
    assert (a["t"], a["epoch"], a["best"]) == (b["t"], b["epoch"], b["best"])


@pytest.mark.parametrize("restore_best", [False, True])
def test_resume_after_epoch_k_is_bitwise_exact(backend, tmp_path, restore_best):
    data = make_data()
    straight = TinyNet(dropout=0.7, buffers=True)
    s = Solver(straight, data, **resume_kwargs(tmp_path, "a", restore_best=restore_best))
    s.train()

    # A differently initialised model: everything must come from the checkpoint.
    resumed = TinyNet(seed=42, dropout=0.7, buffers=True)
    r = Solver(resumed, data, **resume_kwargs(tmp_path, "b", restore_best=restore_best,
                                              resume=tmp_path / "a_epoch_2.npz"))
    assert r.epoch == 2 and r.iteration == 2 * 8
    r.train()
    assert_same_state(full_state(straight, s), full_state(resumed, r))


def test_resume_from_a_finished_shorter_run(tmp_path):
    data = make_data()
    straight = TinyNet(dropout=0.7, buffers=True)
    Solver(straight, data, **resume_kwargs(tmp_path, "a", restore_best=False)).train()
    short = TinyNet(dropout=0.7, buffers=True)
    Solver(short, data, **resume_kwargs(tmp_path, "s", restore_best=False, num_epochs=2)).train()
    cont = TinyNet(seed=3, dropout=0.7, buffers=True)
    r = Solver(cont, data, **resume_kwargs(tmp_path, "c", restore_best=False))
    r.load_checkpoint(tmp_path / "s_epoch_2.npz")
    r.train()
    assert_same_params(params_np(straight), params_np(cont))


def test_resume_without_rng_restore_would_differ(tmp_path):
    """Guards the exactness test: the dropout generator's state matters."""
    data = make_data()
    straight = TinyNet(dropout=0.7, buffers=True)
    Solver(straight, data, **resume_kwargs(tmp_path, "a", restore_best=False)).train()
    resumed = TinyNet(seed=42, dropout=0.7, buffers=True)
    r = Solver(resumed, data, **resume_kwargs(tmp_path, "b", restore_best=False,
                                              resume=tmp_path / "a_epoch_2.npz"))
    resumed.rng = np.random.default_rng(999)
    r.train()
    assert not np.array_equal(params_np(straight)["W1"], params_np(resumed)["W1"])


@pytest.mark.parametrize("src,dst", [("strict", "numpy"), ("numpy", "strict")])
def test_checkpoint_loads_onto_another_backend(tmp_path, src, dst):
    data = make_data()
    with gpunet.use_backend(src):
        m1 = TinyNet(dropout=0.7, buffers=True)
        s1 = Solver(m1, data, **resume_kwargs(tmp_path, "a", num_epochs=2, restore_best=False))
        s1.train()
    with gpunet.use_backend(dst):
        m2 = TinyNet(seed=9, dropout=0.7, buffers=True)
        s2 = Solver(m2, data, **resume_kwargs(tmp_path, "b", resume=tmp_path / "a_epoch_2.npz"))
        assert all(backend_of(v) == dst for v in m2.params.values())
        assert all(backend_of(c["m"]) == dst for c in s2.optim_configs.values())
        assert backend_of(m2.running_mean) == dst
        assert_same_params(params_np(m1), params_np(m2))
        s2.train()  # and training continues there
    assert s2.epoch == 4 and len(s2.history["val_acc"]) == 4


def test_checkpoint_contents(tmp_path):
    data = make_data()
    model = TinyNet(dropout=0.7, buffers=True)
    s = Solver(model, data, **resume_kwargs(tmp_path, "a", num_epochs=1, restore_best=False))
    s.train()
    arrays, meta = load_npz(tmp_path / "a_last.npz")
    assert {"param/W1", "buffer/running_mean", "best_param/W1", "optim/W1/m",
            "optim/W1/v"} <= set(arrays)
    np.testing.assert_array_equal(arrays["param/W1"], params_np(model)["W1"])
    assert meta["epoch"] == 1 and meta["update_rule"] == "adam"
    assert meta["optim_scalars"]["W1"]["t"] == 8
    assert meta["model_rng"] == model.rng.bit_generator.state
    assert meta["history"]["val_acc"] == s.history["val_acc"]


def test_resume_into_a_model_of_another_shape_raises(tmp_path):
    data = make_data()
    Solver(TinyNet(), data, **quiet(num_epochs=1, checkpoint_name=str(tmp_path / "a"))).train()
    model = TinyNet()
    model.params["W1"] = gpunet.asarray(np.zeros((D, H + 1)))
    with pytest.raises(CheckpointError, match=r"param/W1.*shape \(6, 10\)"):
        Solver(model, data, **quiet(resume=tmp_path / "a_last.npz"))
    # Nothing was half-loaded.
    np.testing.assert_array_equal(gpunet.to_numpy(model.params["W1"]), 0.0)


def test_failed_best_checkpoint_write_keeps_the_previous_best(tmp_path, monkeypatch):
    from gpunet import checkpoint

    data = make_data()
    s = Solver(TinyNet(), data, **quiet(monitor="val_loss", num_epochs=1,
                                        optim_config={"learning_rate": 0.1},
                                        checkpoint_name=str(tmp_path / "run")))
    s.train()
    before = (tmp_path / "run_best.npz").read_bytes()
    real = checkpoint._write_npz
    writes = []

    def crash_on_best(f, payload):
        writes.append(f.name)
        if len(writes) == 1:  # the best file first, then the last one
            f.write(b"PK\x03\x04 partial")
            raise OSError("disk full")
        real(f, payload)

    monkeypatch.setattr(checkpoint, "_write_npz", crash_on_best)
    s.num_epochs = 2
    with pytest.raises(OSError, match="disk full"):
        s.train()
    assert s.history["val_loss"][1] < s.history["val_loss"][0]  # epoch 2 was a new best
    assert (tmp_path / "run_best.npz").read_bytes() == before
    assert load_npz(tmp_path / "run_best.npz")[1]["epoch"] == 1
    assert load_npz(tmp_path / "run_last.npz")[1]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_best.npz", "run_last.npz"]


# --- NaN / inf guard ---------------------------------------------------------------------------


class PoisonNet(TinyNet):
    """Returns a non-finite loss (and gradients) from training call ``at`` (1-based) on."""

    def __init__(self, at, value=float("nan")):
        super().__init__()
        self.at, self.value, self.calls = at, value, 0

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        self.calls += 1
        if self.calls >= self.at:
            loss, grads = out
            return loss * self.value, {k: g * self.value for k, g in grads.items()}
        return out


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_with_the_iteration_and_keeps_the_best(backend, tmp_path, value):
    data = make_data()  # 8 iterations per epoch
    model = PoisonNet(at=13, value=value)
    s = Solver(model, data, **quiet(num_epochs=4, print_every=5,
                                    checkpoint_name=str(tmp_path / "run")))
    with pytest.raises(FloatingPointError) as info:
        s.train()
    err = info.value
    assert isinstance(err, NonFiniteLossError)
    msg = str(err)
    assert "at iteration 13 of 32 (epoch 2 of 4)" in msg
    assert "training stopped at iteration 16" in msg  # detected at the epoch-2 read-back
    assert str(tmp_path / "run_best.npz") in msg and "kept" in msg
    assert err.iteration == 13 and err.epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_best.npz", "run_last.npz"]
    arrays, meta = load_npz(tmp_path / "run_best.npz")
    assert meta["epoch"] == 1 and all(np.isfinite(a).all() for a in arrays.values())
    # The model holds the best (epoch 1) parameters again.
    assert_same_params(params_np(model), {k[len("param/"):]: v for k, v in arrays.items()
                                          if k.startswith("param/")})
    # Every loss before the first non-finite one is recorded, and nothing after it.
    assert len(s.history["loss"]) == 12 and np.isfinite(s.history["loss"]).all()


def test_nonfinite_loss_detected_at_the_next_report_point():
    model = PoisonNet(at=3)
    s = Solver(model, make_data(), **quiet(print_every=2))
    with pytest.raises(NonFiniteLossError, match="at iteration 3 of 24 .*stopped at iteration 3 "
                                                 ".*no best checkpoint yet"):
        s.train()


# --- communicator --------------------------------------------------------------------------------
# (training with a real communicator, 1 and 2 ranks, is tested in tests/test_distributed.py)


class PartialComm:
    rank, size = 0, 2

    def allreduce_mean(self, arrays):
        return arrays


def test_comm_must_be_a_whole_communicator():
    with pytest.raises(TypeError, match="PartialComm has no allreduce_sum, bcast, barrier"):
        Solver(TinyNet(), make_data(), **quiet(comm=PartialComm()))


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,exc,match", [
    (dict(learning_rate=0.1), ValueError, "Unrecognized arguments 'learning_rate'"),
    (dict(update_rule="adagrad"), ValueError, "invalid update_rule"),
    (dict(optim_config={"lr": 0.1}), ValueError, "did you mean 'learning_rate'"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(monitor="train_acc"), ValueError, "monitor"),
    (dict(lr_schedule="cosine", lr_decay=0.5), ValueError, "pass one of them"),
])
def test_bad_arguments_raise(kw, exc, match):
    with pytest.raises(exc, match=match):
        Solver(TinyNet(), make_data(), **{**quiet(), **kw})


def test_bad_data_and_model_raise():
    data = make_data()
    with pytest.raises(KeyError, match="X_val"):
        Solver(TinyNet(), {k: v for k, v in data.items() if k != "X_val"})
    with pytest.raises(ValueError, match="X_train has 60 rows and y_train has 59"):
        Solver(TinyNet(), {**data, "y_train": data["y_train"][:-1]})
    with pytest.raises(TypeError, match="params"):
        Solver(object(), data)
    s = Solver(TinyNet(), data, **quiet())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        s.check_accuracy(data["X_val"], data["y_val"] + 5)


# --- with the library's own models -----------------------------------------------------------


def test_resume_is_exact_with_fully_connected_net_batchnorm_dropout(backend, tmp_path):
    models = pytest.importorskip("gpunet.models")
    r = np.random.default_rng(0)
    X = r.normal(size=(100, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    data = dict(X_train=X[:70], y_train=y[:70], X_val=X[70:], y_val=y[70:])

    def net(seed):
        return models.FullyConnectedNet([12, 12], input_dim=8, num_classes=3, reg=1e-3,
                                        dropout_keep_ratio=0.8, normalization="batchnorm",
                                        seed=seed)

    kw = quiet(update_rule="adamw", optim_config={"learning_rate": 1e-2}, batch_size=16,
               num_epochs=3, num_train_samples=30)
    m1 = net(0)
    Solver(m1, data, checkpoint_name=str(tmp_path / "a"), keep_every=1, **kw).train()
    m2 = net(1)
    Solver(m2, data, resume=tmp_path / "a_epoch_1.npz", **kw).train()
    assert_same_params(params_np(m1), params_np(m2))
    assert_same_params({k: gpunet.to_numpy(v) for k, v in m1.get_buffers().items()},
                       {k: gpunet.to_numpy(v) for k, v in m2.get_buffers().items()})
