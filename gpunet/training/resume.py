"""What a resumed run takes from a checkpoint, and how it reports it.

One rule (the Solver's ``resume`` keyword): a keyword the caller passed wins, and if it
differs from the checkpoint's it is reported (:class:`Resumed`); a setting not passed is
the checkpoint's. Taking over another process's state applies the same rule strictly: any
difference is an error. The functions here act on a Solver and change it only after
everything is checked; :mod:`.state` owns the arrays and their schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import optim, schedules
from .._validate import boolean, choice, integer
from ..checkpoint import CheckpointError, load_npz
from .options import MONITORS, check_checkpoint_directory
from .state import TrainingState, buffers_of, check_meta

#: Solver keywords that set the learning-rate schedule.
_SCHEDULE_KEYWORDS = ("lr_schedule", "lr_decay", "warmup_iters")
#: Recorded settings a resumed Solver takes from the checkpoint unless they were passed.
_ADOPTED = ("batch_size", "drop_last", "num_epochs", "monitor", "patience")


@dataclass(frozen=True)
class Resumed:
    """What a resume took from a checkpoint: the file, its epoch and iteration, and the
    settings that differ from the checkpoint's, ``(keyword, checkpoint's, now)``."""

    path: str
    epoch: int
    iteration: int
    changes: tuple = ()

    def describe(self, names: Mapping | None = None) -> str:
        """One line for the user; ``names`` maps keywords to the names to show (CLI flags)."""
        names = names or {}
        line = f"resumed from epoch {self.epoch} of {self.path} (iteration {self.iteration})"
        if self.changes:
            line += "; changed: " + ", ".join(
                f"{names.get(k, k)} {_show(old)} -> {_show(new)}" for k, old, new in self.changes)
        return line


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings(solver) -> dict:
    """The settings a checkpoint of ``solver`` records (a resume takes those not passed again)."""
    return {"update_rule": solver.update_rule_name, "schedule": solver.schedule.to_config(),
            "batch_size": solver.batch_size, "drop_last": solver.drop_last,
            "num_train": int(solver.X_train.shape[0]), "num_epochs": solver.num_epochs,
            "monitor": solver.monitor, "patience": solver.patience,
            **solver.parallel.settings(), "run": solver.run_info}


def load_file(solver, path) -> None:
    """Resume ``solver`` from the checkpoint file ``path`` (all or nothing; a
    :class:`~gpunet.checkpoint.CheckpointError` naming the file if it does not fit)."""
    check_checkpoint_directory(solver.checkpoint_name)
    arrays, meta = load_npz(path)
    where = f"checkpoint {str(path)!r}"
    try:
        changes = _take(solver, arrays, meta, where)
        solver.parallel.check_settings(meta, solver.batch_size, where)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError,
            OverflowError) as exc:
        text = str(exc) if where in str(exc) else f"{where}: {exc}"
        raise CheckpointError(text) from None
    solver.resumed = Resumed(str(path), solver.state.epoch, solver.state.iteration,
                             tuple(changes))
    if solver.checkpoint_name is not None:
        best = Path(f"{solver.checkpoint_name}_best.npz")
        solver.best_checkpoint = best if best.exists() else None


def export(solver) -> tuple[dict, dict]:
    """The state of ``solver`` to share with other processes: arrays and JSON data."""
    arrays, meta = solver.state.to_arrays(solver.model, settings(solver))
    best = str(solver.best_checkpoint) if solver.best_checkpoint is not None else None
    resumed = None if solver.resumed is None else [
        solver.resumed.path, solver.resumed.epoch, solver.resumed.iteration]
    return arrays, {"meta": meta, "best_checkpoint": best, "resumed": resumed}


def take_over(solver, arrays: dict, info: dict, where: str) -> None:
    """Give ``solver`` the state :func:`export` gave (all or nothing)."""
    _take(solver, arrays, info["meta"], where, warn=False, same=True)
    best = info["best_checkpoint"]
    solver.best_checkpoint = Path(best) if best is not None else None
    if info["resumed"] is not None:
        solver.resumed = Resumed(*info["resumed"])


def _take(solver, arrays: dict, meta: dict, where: str, warn: bool = True,
          same: bool = False) -> list:
    """Load ``(arrays, meta)`` and the recorded settings into ``solver`` by the resume rule:
    passed keywords win, the others are the checkpoint's. Returns the differences
    ``(keyword, checkpoint's, now)``. ``same``: a passed keyword that differs is an error
    (another process's state). All or nothing."""
    check_meta(meta, list(solver.model.params), list(buffers_of(solver.model) or {}), where)
    explicit, changes, updates = solver.passed_keywords, [], {}

    def setting(key, saved, mine, same=lambda a, b: a == b):
        if saved is None or same(saved, mine):
            return
        if key in explicit:
            changes.append((key, saved, mine))
        else:
            updates[key] = saved

    for key in _ADOPTED:
        setting(key, meta.get(key), getattr(solver, key))
    rule = meta.get("update_rule")
    setting("update_rule", rule, solver.update_rule_name)
    if "update_rule" in updates and rule not in optim.UPDATE_RULES:
        raise ValueError(f"{where} was trained with update rule {rule!r} (a function); "
                         f"pass it as update_rule to resume")
    saved_schedule, mine = meta.get("schedule"), solver.schedule.to_config()
    recorded = None if saved_schedule is None else _schedule(saved_schedule)  # checked even if unused
    if recorded is not None and mine is not None and recorded.to_config() != mine:
        if any(k in explicit for k in _SCHEDULE_KEYWORDS):
            changes.append(("lr_schedule", recorded, solver.schedule))
        else:
            updates["schedule"] = recorded
    if meta.get("num_train") not in (None, solver.X_train.shape[0]):
        changes.append(("num_train", meta["num_train"], int(solver.X_train.shape[0])))
    if "run_info" not in explicit and meta.get("run") is not None:
        updates["run_info"] = meta["run"]
    for key, value in updates.items():  # checked like the keywords they stand for
        if key in ("batch_size", "num_epochs", "patience"):
            integer(key, value, low=1 if key != "num_epochs" else 0,
                    allow_none=key == "patience", fn=where)
        elif key == "drop_last":
            boolean(key, value, fn=where)
        elif key == "monitor":
            choice(key, value, MONITORS, fn=where)

    rule_name = updates.get("update_rule", solver.update_rule_name)
    if rule_name in optim.UPDATE_RULES:
        optim.check_config(rule_name, solver.optim_config)
    configs = None
    if rule_name != rule:  # another rule (passed): its optimizer state starts afresh
        configs = TrainingState.fresh(solver.model.params, solver.optim_config,
                                      solver.update_rule_name, solver.update_rule,
                                      solver.seed).optim_configs
    override = solver.optim_config
    first = _first_value(meta.get("optim_scalars"))
    saved = dict(first) if isinstance(first, Mapping) else {}
    saved["learning_rate"] = _first_value(meta.get("base_lr"))  # the base rate
    if configs is None:
        for key, value in override.items():
            old = saved.get(key)
            if old != value:
                changes.append((f"optim_config[{key!r}]", old, value))
    if same and "run_info" in explicit:  # another process's state: its run must be this one
        changes += _run_differences(meta.get("run"), solver.run_info)
    if same and changes:
        raise ValueError(f"{where} has " + ", ".join(
            f"{k}={_brief(old)}" for k, old, _ in changes) + " but this process has " + ", ".join(
            f"{k}={_brief(new)}" for k, _, new in changes) + "; build the same Solver (and data) "
            "on every process")
    batch_size = updates.get("batch_size", solver.batch_size)
    drop_last = updates.get("drop_last", solver.drop_last)
    steps = solver.parallel.steps_per_epoch(solver.X_train.shape[0], batch_size, drop_last)

    solver.state.load(arrays, meta, solver.model, where, configs=configs,
                      override=override if configs is None else None, warn=warn)
    # Loaded: now the settings.
    for key, value in updates.items():
        setattr(solver, key, value)
    if "update_rule" in updates:
        solver.update_rule_name, solver.update_rule = optim.get_update_rule(rule_name)
    if "batch_size" in updates and "eval_batch_size" not in explicit:
        solver.eval_batch_size = max(batch_size, 100)
    solver.iterations_per_epoch = steps
    return changes


def _schedule(cfg: Mapping) -> schedules.Schedule:
    """The schedule a checkpoint's config describes (see ``Schedule.to_config``)."""
    kind = cfg.get("type") if isinstance(cfg, Mapping) else None
    if kind == "Constant":
        return schedules.Constant()
    if kind == "StepDecay":
        return schedules.StepDecay(cfg["decay"], cfg["step_size"])
    if kind == "Cosine":
        return schedules.Cosine(cfg["num_epochs"], cfg["min_factor"])
    if kind == "Warmup":
        return schedules.Warmup(cfg["warmup_iters"], after=_schedule(cfg["after"]))
    raise ValueError(f"unknown learning-rate schedule {cfg!r}")


def _run_differences(saved, mine) -> list:
    """``(key, saved, mine)`` for each entry of two ``run_info`` values that differs (one level
    into ``"args"``, the command line's flags)."""
    if not (isinstance(saved, Mapping) and isinstance(mine, Mapping)):
        return [] if saved == mine else [("run_info", saved, mine)]
    out = []
    for key in sorted(set(saved) | set(mine), key=str):
        a, b = saved.get(key), mine.get(key)
        if key == "args" and isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [(f"run_info['args'][{f!r}]", a.get(f), b.get(f))
                    for f in sorted(set(a) | set(b), key=str) if a.get(f) != b.get(f)]
        elif a != b:
            out.append((f"run_info[{key!r}]", a, b))
    return out


def _brief(value) -> str:
    """``repr(value)``, cut to 60 characters (a run's mean and std are long lists)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_value(mapping):
    """The first value of ``mapping`` (None if it is not a non-empty mapping)."""
    return next(iter(mapping.values()), None) if isinstance(mapping, Mapping) else None
