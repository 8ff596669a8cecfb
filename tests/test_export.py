"""PyTorch state_dict export and DLPack exchange, checked against PyTorch itself: the
equivalent torch.nn.Sequential, built here by hand, loads the export strictly and computes
the same scores as the gpunet model (skipped without PyTorch)."""

import numpy as np
import pytest

import gpunet
from gpunet import models, nn
from gpunet.export import save_torch_state_dict, torch_state_dict

torch = pytest.importorskip("torch")
tnn = torch.nn


def _randomize(model, seed=0):
    """Non-trivial parameters and buffers (running statistics with variance > 0)."""
    rng = np.random.default_rng(seed)
    for name, w in model.params.items():
        model.params[name] = gpunet.asarray(rng.standard_normal(w.shape) * 0.5, dtype=w.dtype)
    buffers = {name: gpunet.asarray(rng.uniform(0.5, 2.0, b.shape) if name.endswith("var")
                                    else rng.standard_normal(b.shape), dtype=b.dtype)
               for name, b in model.get_buffers().items()}
    if buffers:
        model.set_buffers(buffers)
    return model


def _torch_scores(module, state, X):
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(X)).numpy()


def _check(model, module, X, rtol=1e-10):
    ours = gpunet.to_numpy(model.loss(X))
    theirs = _torch_scores(module.double(), torch_state_dict(model), X)
    np.testing.assert_allclose(theirs, ours, rtol=rtol, atol=rtol)


F64 = np.float64


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_fully_connected_net_matches_torch(normalization, keep):
    model = _randomize(models.FullyConnectedNet([7, 5], input_dim=6, num_classes=4, normalization=normalization,
                                                dropout_keep_ratio=keep, dtype=F64, seed=0))
    layers = []
    for d_in, d_out in ((6, 7), (7, 5)):
        layers.append(tnn.Linear(d_in, d_out))
        if normalization:
            layers.append(tnn.BatchNorm1d(d_out) if normalization == "batchnorm" else tnn.LayerNorm(d_out))
        layers.append(tnn.ReLU())
        if keep < 1:
            layers.append(tnn.Dropout(1 - keep))
    layers.append(tnn.Linear(5, 4))
    X = np.random.default_rng(1).standard_normal((9, 6))
    _check(model, tnn.Sequential(*layers), X)


@pytest.mark.parametrize("activation,torch_activation", [("relu", tnn.ReLU), ("sigmoid", tnn.Sigmoid)])
def test_two_layer_net_matches_torch(activation, torch_activation):
    model = _randomize(models.TwoLayerNet(input_dim=5, hidden_dim=6, num_classes=3, activation=activation,
                                          dtype=F64, seed=0))
    module = tnn.Sequential(tnn.Linear(5, 6), torch_activation(), tnn.Linear(6, 3))
    _check(model, module, np.random.default_rng(2).standard_normal((4, 5)))


def test_three_layer_convnet_matches_torch():
    model = _randomize(models.ThreeLayerConvNet(input_dim=(3, 8, 6), num_filters=4, filter_size=5,
                                                hidden_dim=7, num_classes=3, dtype=F64, seed=0))
    module = tnn.Sequential(tnn.Conv2d(3, 4, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                            tnn.Linear(4 * 4 * 3, 7), tnn.ReLU(), tnn.Linear(7, 3))
    _check(model, module, np.random.default_rng(3).standard_normal((2, 3, 8, 6)))


def test_logistic_classifier_matches_torch():
    model = _randomize(models.LogisticClassifier(4, dtype=F64, seed=0))
    X = np.random.default_rng(4).standard_normal((6, 4))
    theirs = _torch_scores(tnn.Sequential(tnn.Linear(4, 1), tnn.Sigmoid()).double(), torch_state_dict(model), X)
    np.testing.assert_allclose(theirs[:, 0], model.predict_proba(X), rtol=1e-12)


def test_classifier_over_layers_matches_torch_layer_for_layer():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False, dtype=F64), nn.BatchNorm(4, dtype=F64), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 3, 8, dtype=F64)),
                        nn.LayerNorm(8, dtype=F64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3, bias=False, dtype=F64))
    model = _randomize(nn.Classifier(net, seed=0))
    module = tnn.Sequential(tnn.Conv2d(1, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
                            tnn.MaxPool2d(2), tnn.Sequential(tnn.Flatten(), tnn.Linear(36, 8)), tnn.LayerNorm(8),
                            tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(8, 3, bias=False))
    _check(model, module, np.random.default_rng(5).standard_normal((3, 1, 6, 6)))


def test_float32_export_keeps_the_dtype_and_matches_torch_defaults():
    model = _randomize(models.FullyConnectedNet([8], input_dim=5, num_classes=3, seed=0))
    state = torch_state_dict(model)
    assert {k: v.dtype for k, v in state.items()} == dict.fromkeys(["0.weight", "0.bias", "2.weight", "2.bias"],
                                                                    np.dtype(np.float32))
    assert state["0.weight"].shape == (8, 5) and state["0.weight"].flags.c_contiguous
    X = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    theirs = _torch_scores(tnn.Sequential(tnn.Linear(5, 8), tnn.ReLU(), tnn.Linear(8, 3)), state, X)
    np.testing.assert_allclose(theirs, model.loss(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_saved_state_dict_loads_into_torch(tmp_path, suffix):
    model = _randomize(models.ThreeLayerConvNet(input_dim=(1, 4, 4), num_filters=2, filter_size=3, hidden_dim=5,
                                                num_classes=2, seed=0))
    path = save_torch_state_dict(model, tmp_path / f"cnn{suffix}")
    if suffix == ".npz":
        with np.load(path) as z:
            state = {k: torch.from_numpy(z[k]) for k in z.files}
    else:
        state = torch.load(path, weights_only=True)
    expected = torch_state_dict(model)
    assert sorted(state) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(state[k].numpy(), v)


def test_models_without_a_torch_equivalent_are_refused(tmp_path):
    class Scale(nn.Module):
        param_names = ("s",)

        def __init__(self):
            super().__init__()
            self.s = np.ones(2, np.float32)

    with pytest.raises(TypeError, match="no PyTorch equivalent known for Scale"):
        torch_state_dict(nn.Classifier(nn.Sequential(nn.Linear(2, 2), Scale())))
    with pytest.raises(TypeError, match="supports FullyConnectedNet, .*Classifier; got dict"):
        torch_state_dict({"W": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"writes \.npz, \.pt or \.pth files"):
        save_torch_state_dict(models.TwoLayerNet(4, 3, 2), tmp_path / "model.bin")


# --- DLPack ---------------------------------------------------------------------------------


def test_from_dlpack_shares_a_cpu_tensors_memory_under_numpy():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    with gpunet.use_backend("numpy"):
        a = gpunet.from_dlpack(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (2, 3)
    t[1, 2] = 42.0  # one buffer: the write shows through
    assert a[1, 2] == 42.0


def test_from_dlpack_places_data_on_the_current_backend(backend, host):
    t = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
    a = gpunet.from_dlpack(t)
    assert gpunet.backend.backend_of(a) == backend
    np.testing.assert_array_equal(host(a), t.numpy())


def test_gpunet_arrays_go_to_torch_without_a_copy():
    a = np.arange(4, dtype=np.float32)
    t = torch.from_dlpack(a)
    a[0] = 7.0
    assert t[0].item() == 7.0


def test_from_dlpack_errors_say_what_to_do():
    with pytest.raises(TypeError, match="needs an object with __dlpack__.*got list.*gpunet.asarray"):
        gpunet.from_dlpack([1.0, 2.0])
    with pytest.raises(BufferError, match="detach"):  # PyTorch's own message
        gpunet.from_dlpack(torch.zeros(2, requires_grad=True))

    class OnDevice:  # an array in CUDA memory whose library cannot copy it to the host
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kwargs):
            raise BufferError("cannot export to the CPU")

    with gpunet.use_backend("numpy"), pytest.raises(BufferError, match=r"device \(2, 0\).*cupy backend.*cpu\(\)"):
        gpunet.from_dlpack(OnDevice())
