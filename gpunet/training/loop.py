"""The training loop: epochs of steps, with the Solver's callbacks called at named points.

A step places its rows on the model's device (:func:`gpunet.data.batches.rows`), runs
forward and backward (``model.loss(X, y)``), averages gradients and loss over processes
(``solver.parallel``) and updates every parameter. No host sync per step: each step's loss
stays where it was computed (:class:`~gpunet.training.device.LossWindow`) and is read back
(one transfer) every ``print_every`` iterations and at the end of each epoch, which is
also where non-finite losses are detected (so detection may lag by up to ``print_every``
iterations; the error still names the first bad iteration).
"""

from __future__ import annotations

from ..backend.host_memory import keep_freed_memory
from ..data.batches import rows
from .device import LossWindow
from .evaluate import check_class_labels, evaluate, num_classes
from .state import first_param


def train(solver) -> None:
    """Check the labels once, then run epochs until ``solver.num_epochs`` (or early
    stopping); then, with ``restore_best``, put the best epoch's parameters (and buffers)
    into the model. The process keeps freed host memory for reuse from then on
    (:func:`gpunet.backend.host_memory.keep_freed_memory`)."""
    keep_freed_memory()
    classes = num_classes(solver.model, solver.X_val)
    check_class_labels(solver.y_train, classes, "data['y_train']")
    check_class_labels(solver.y_val, classes, "data['y_val']")
    state = solver.state
    while state.epoch < solver.num_epochs and not state.stopped_early:
        train_epoch(solver)
    if solver.restore_best:
        state.restore_best(solver.model)


def train_epoch(solver) -> None:
    """One epoch: a fresh permutation of the training rows in steps of ``batch_size``, the
    loss read back at report points, then the evaluation and the epoch-end callbacks."""
    state, parallel = solver.state, solver.parallel
    bs, steps = solver.batch_size, solver.iterations_per_epoch
    perm = parallel.shard(state.rng.permutation(solver.X_train.shape[0]))
    window = LossWindow(steps)
    _call(solver, "epoch_start", parallel.samples(steps * bs if solver.drop_last else len(perm)))
    error = None
    try:
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            _call(solver, "step_start")
            window.put(i, step(solver, idx))
            state.iteration += 1
            _call(solver, "step_end", parallel.samples(len(idx)))
            report = (state.iteration - 1) % solver.print_every == 0
            if report or i == steps - 1:  # the only read-backs of the loss
                losses = window.read(i + 1)
                _call(solver, "read_back", losses, report)
                state.history["loss"].extend(losses.tolist())
        state.epoch += 1
        _call(solver, "epoch_end", end_of_epoch(solver))
    except BaseException as exc:
        error = exc
        raise
    finally:
        _call(solver, "epoch_close", error)


def step(solver, idx):
    """Forward/backward on the training rows ``idx`` (host int array) and one update of
    every parameter. Returns the loss as the model gave it (device 0-d array or float)."""
    model = solver.model
    like = first_param(model)
    out = model.loss(rows(solver.X_train, idx, like), rows(solver.y_train, idx, like))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("model.loss(X, y) must return (loss, grads) when y is given; got "
                        f"{type(out).__name__}")
    loss, grads = out
    missing = [p for p in model.params if p not in grads]
    if missing:
        raise KeyError(f"model.loss returned no gradient for parameter(s) {missing}; "
                       "grads must have the same keys as model.params")
    grads, loss = solver.parallel.reduce(list(model.params), grads, loss)
    configs = solver.state.optim_configs
    for p, w in model.params.items():
        next_w, configs[p] = solver.update_rule(w, grads[p], configs[p])
        if next_w is not w:
            model.params[p] = next_w
    return loss


def end_of_epoch(solver) -> tuple[float, float, float]:
    """Record the rate, average buffers over processes, evaluate; ``(train_acc, val_acc,
    val_loss)`` (also appended to the history)."""
    state, model, parallel = solver.state, solver.model, solver.parallel
    state.history["lr"].append(state.learning_rate())
    parallel.average_buffers(model)
    kw = dict(batch_size=solver.eval_batch_size, parallel=parallel, rng=state.eval_rng,
              check=False)
    train_acc, _ = evaluate(model, solver.X_train, solver.y_train,
                            num_samples=solver.num_train_samples, **kw)
    val_acc, val_loss = evaluate(model, solver.X_val, solver.y_val,
                                 num_samples=solver.num_val_samples, with_loss=True, **kw)
    for key, value in (("train_acc", train_acc), ("val_acc", val_acc), ("val_loss", val_loss)):
        state.history[key].append(value)
    parallel.reseed(model)
    return train_acc, val_acc, val_loss


def _call(solver, point: str, *args) -> None:
    """Call ``point`` of every callback, in the Solver's order."""
    for callback in solver.callbacks:
        getattr(callback, point)(solver, *args)
