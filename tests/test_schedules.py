"""Learning-rate schedules against their closed forms."""

import math

import numpy as np
import pytest

from gpunet import schedules as S


def test_step_decay_is_cs231n_lr_decay_per_epoch():
    # CS231n multiplies the rate by lr_decay at every epoch end.
    lr = 0.1
    for epoch in range(6):
        assert S.step_decay(0.1, epoch, 0.5) == pytest.approx(lr, rel=1e-15)
        assert S.StepDecay(0.5).factor(epoch, 123) == pytest.approx(lr / 0.1, rel=1e-15)
        lr *= 0.5
    assert [S.StepDecay(0.1, step_size=2).factor(e, 0) for e in range(5)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01])


def test_cosine_endpoints_and_midpoint():
    c = S.Cosine(10, min_factor=0.2)
    assert c.factor(0, 0) == 1.0
    assert c.factor(5, 0) == pytest.approx(0.6)  # (1 + 0.2) / 2
    assert c.factor(10, 0) == pytest.approx(0.2)
    assert c.factor(25, 0) == pytest.approx(0.2)  # stays at the floor after num_epochs
    for e in range(10):
        expected = 0.2 + 0.8 * (1 + math.cos(math.pi * e / 10)) / 2
        assert c.factor(e, 0) == pytest.approx(expected, rel=1e-14)
    factors = [c.factor(e, 0) for e in range(11)]
    assert all(a > b for a, b in zip(factors, factors[1:]))


def test_linear_warmup_ramps_per_iteration_then_hands_over():
    w = S.Warmup(4, after=S.StepDecay(0.5))
    assert w.per_iteration and not S.StepDecay(0.5).per_iteration
    assert [w.factor(0, it) for it in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    assert w.factor(2, 10) == pytest.approx(0.25)  # warm-up done, step decay of epoch 2
    assert S.linear_warmup(0.1, 0, 10) == pytest.approx(0.01)
    assert S.linear_warmup(0.1, 5, 0) == 0.1


def test_make_schedule_from_solver_keywords():
    assert isinstance(S.make_schedule(None, lr_decay=0.9), S.StepDecay)
    assert S.make_schedule(None, lr_decay=0.9).factor(2, 0) == pytest.approx(0.81)
    cos = S.make_schedule("cosine", num_epochs=4)
    assert cos.to_config() == {"type": "Cosine", "num_epochs": 4, "min_factor": 0.0}
    warm = S.make_schedule("cosine", num_epochs=4, warmup_iters=3)
    assert isinstance(warm, S.Warmup) and warm.factor(0, 0) == pytest.approx(1 / 3)
    fn = S.make_schedule(lambda e: 1.0 / (1 + e))
    assert fn.factor(3, 0) == 0.25 and fn.to_config() is None


def test_numpy_scalars_are_numbers_too():
    assert S.StepDecay(np.float32(0.5), step_size=np.int64(2)).factor(4, 0) == 0.25
    assert S.make_schedule("cosine", num_epochs=np.int32(4), warmup_iters=np.int64(2)).factor(0, 0) == 0.5
    assert S.make_schedule(lambda e: np.float32(0.5)).factor(1, 0) == 0.5
    assert S.Cosine(np.int64(2), min_factor=np.float64(0.5)).to_config()["num_epochs"] == 2


def test_to_config_distinguishes_schedules():
    assert S.StepDecay(0.5).to_config() != S.StepDecay(0.9).to_config()
    assert S.Warmup(3, S.Cosine(5)).to_config() == S.Warmup(3, S.Cosine(5)).to_config()
    assert "decay=0.5" in repr(S.StepDecay(0.5))


@pytest.mark.parametrize("call,match", [
    (lambda: S.make_schedule("cosine", lr_decay=0.5), "pass one of them"),
    (lambda: S.make_schedule("linear"), "invalid lr_schedule"),
    (lambda: S.make_schedule(None, lr_decay=-1), "lr_decay"),
    (lambda: S.make_schedule(None, warmup_iters=-2), "warmup_iters"),
    (lambda: S.Cosine(0), "num_epochs"),
    (lambda: S.Cosine(3, min_factor=2.0), "min_factor"),
    (lambda: S.make_schedule(lambda e: float("nan")).factor(0, 0), r"lr_schedule\(0\) must be a finite number"),
    (lambda: S.make_schedule(lambda e: True).factor(0, 0), r"lr_schedule\(0\) must be a finite number"),
    (lambda: S.make_schedule(None, lr_decay=math.inf), "lr_decay must be a finite number >= 0.0, got inf"),
    (lambda: S.StepDecay(math.inf), r"decay \(lr_decay\) must be a finite number >= 0.0, got inf"),
    (lambda: S.StepDecay(0.5, step_size=True), "step_size must be an int >= 1, got True"),
    (lambda: S.Warmup(2.0), "warmup_iters must be an int >= 1, got 2.0"),
    (lambda: S.Cosine(3, min_factor=math.nan), "min_factor must be a finite number in"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
