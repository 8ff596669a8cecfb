"""The hostile-input pass over the whole package: generated bad inputs for layers, losses,
optimizers, models and layer objects, the Solver, checkpoints, data loaders, the command
line, backends and MPI, each judged by an independent oracle; prints one table of outcomes
per family, the total, and every input that did not end well (its last traceback line).

    python scripts/hostile.py                  # the full pass (about a minute here)
    python scripts/hostile.py --quick          # the smaller pass tests/test_hostile.py runs
    python scripts/hostile.py --family cli --family data --examples 300 --seed 1
    python scripts/hostile.py --list           # the families

Every input is a :class:`Case`: a call and what must happen to it: ``Refuse`` (an invalid
input), ``Accept`` (a valid one, with a check of the result against a reference written
here or in tests/naive.py, never gpunet's own code) or ``Either`` (no rule decides; a
result must still pass the check). The rules (which inputs are valid, what the result is)
are written here from the documentation, independently of gpunet's checks. Outcomes:

- ``ok``: a valid input gave the right result;
- ``clear error``: an invalid input raised a documented error type (ValueError, TypeError,
  LookupError, OSError, FloatingPointError, RuntimeError and their gpunet subclasses)
  whose innermost traceback frame is in gpunet/ (not in NumPy, array_api_strict or the
  standard library), with a message that names the argument, flag or file and says what
  was expected (a word list: "must", "expected", "got", "use", ...); for the command line,
  exit status 1 or 2 and one ``gpunet: error:`` line (``gpunet: warning:`` lines aside);
- ``refused valid``: a valid input was refused;
- ``silent wrong``: no error, but a wrong result, an invalid input accepted, an input
  array mutated, or a refused call that left state half-changed;
- ``traceback``: any other exception (a NumPy or stdlib frame, an undocumented type, an
  unclear message), or a command line that printed a traceback;
- ``hang``: no result within the time limit (SIGALRM; a child that stops answering is
  killed, its current input counted, and the next family goes on in a new child);
- ``unbounded``: peak RSS grew by more than ``GROWTH_MB`` during the call, or a
  ``MemoryError`` (the child's address space is capped a few GiB above its start). Where
  the arguments themselves ask for more memory than a machine has (a convolution padded
  by 10**5, a 10**6 x 10**6 layer), a ``MemoryError`` raised before anything grew counts
  as a clear error: NumPy names the size, nothing was allocated.

The in-process families run in one child process started through ``/bin/sh`` (so that its
peak RSS does not start at this process's) that streams one JSON line per input; bombs and
launches (scripts/hostile_data.py's bombs, gpunet's own bombs, the CLI in a subprocess,
``mpiexec``) run in their own processes. Defects found in files another engineer is
changing are listed in :data:`KNOWN` and reported apart; the exit status is 1 when any
other input did not end well.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import copy
import dataclasses
import decimal
import fractions
import importlib.util
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import gpunet  # noqa: E402
from gpunet import layers as L  # noqa: E402
from gpunet.backend.switch import _reset_for_tests  # noqa: E402

GPUNET_DIR = str(ROOT / "gpunet") + os.sep

OUTCOMES = ("ok", "clear error", "refused valid", "silent wrong", "traceback", "hang", "unbounded")
BAD = OUTCOMES[2:]
GROWTH_MB = 256  # peak RSS growth of one call that counts as unbounded
TIME_LIMIT = 20.0  # seconds per in-process call
SILENCE_LIMIT = 180.0  # seconds without a line from the child before it is killed
ADDRESS_SPACE_GIB = 3  # the child's address space: its size at start plus this

# --- what must happen --------------------------------------------------------------------------


@dataclasses.dataclass
class Refuse:
    """The input is invalid: a clear error naming one of ``names`` (none: any name)."""

    names: tuple = ()

    def __init__(self, *names):
        self.names = tuple(str(n) for n in names)


@dataclasses.dataclass
class Accept:
    """The input is valid: ``check(result)`` returns None, or what is wrong."""

    check: Callable[[Any], str | None] | None = None


@dataclasses.dataclass
class Either:
    """No rule decides: a clear error, or a result that passes ``check``. ``huge``: the
    arguments ask for more memory than a machine has (a convolution padded by 10**6), so
    a ``MemoryError`` raised before anything grew counts as a clear error."""

    check: Callable[[Any], str | None] | None = None
    names: tuple = ()
    huge: bool = False


@dataclasses.dataclass
class Case:
    """One hostile input: ``run()`` and what must happen. ``inputs``: arrays that must not be
    mutated; ``after``: a check of state after a refusal (None, or what changed)."""

    label: str
    run: Callable[[], Any]
    expect: Refuse | Accept | Either
    inputs: tuple = ()
    after: Callable[[], str | None] | None = None
    timeout: float = TIME_LIMIT
    memory_mb: float = GROWTH_MB  # peak RSS growth allowed (a real dataset takes more)

    def __repr__(self):  # hypothesis prints cases it shrinks; keep it short
        return f"Case({self.label!r})"


@dataclasses.dataclass
class CommandRun:
    """How a ``gpunet`` command line ended (in this process or a subprocess)."""

    code: Any
    out: str
    err: str


@dataclasses.dataclass
class Verdict:
    """The outcome of a launch judged where it ran (a subprocess, a bomb), returned by a
    case's ``run`` as its result."""

    outcome: str
    detail: str = ""


class Hang(BaseException):
    """Raised by the alarm when a call outlives its time limit (a BaseException, so that
    ``except Exception`` in the code under test does not swallow it)."""


# --- judging -----------------------------------------------------------------------------------

_EXPECTED = re.compile(r"\b(must|expected|expects?|needs?|should|only|cannot|can't|not|no|unknown|"
                       r"invalid|got|use|lacks|missing|choose|accepts?|out of|too|holds?|claims?|"
                       r"refused?|differ\w*|before|after|exceeds?|damaged|give|move|convert|takes|goes in|unrecognized|"
                       r"build|reads|pass|set|remove|drop|check|declares?|mismatch|limit|call|at least|"
                       r"at most|make|download|install|is a|has a|smaller|larger|point|than|instead|"
                       r"truncated|empty|only|allowed|forbidden|unsafe|off the|required)\b", re.I)


def _names_one(message: str, names) -> bool:
    return not names or any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w])", message) for n in names)


def error_problem(exc: BaseException, names=()) -> str | None:
    """None if ``exc`` is a clear error (documented type, raised in gpunet, a message naming
    one of ``names`` and saying what was expected), else why not."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    message = str(exc)
    if isinstance(exc, MemoryError):
        return f"MemoryError at {where}"
    if not isinstance(exc, (ValueError, TypeError, LookupError, OSError, FloatingPointError,
                            RuntimeError)) or isinstance(exc, (RecursionError, NotImplementedError)):
        return f"undocumented type, at {where}"
    if not frames or not frames[-1].filename.startswith(GPUNET_DIR):
        return f"raised outside gpunet, at {where}"
    if len(message) < 20 or not _EXPECTED.search(message):
        return f"unclear message, at {where}"
    if not _names_one(message, names):
        return f"message names none of {list(names)}, at {where}"
    return None


def command_problem(run: CommandRun, names=()) -> str | None:
    """None if a command line ended in a clear error (exit 1 or 2, one ``gpunet: error:``
    line naming one of ``names``, no traceback), else why not."""
    lines = [line for line in run.err.splitlines() if line.strip() and not line.startswith("gpunet: warning: ")]
    errors = [line for line in lines if line.startswith("gpunet: error: ")]
    if "Traceback (most recent call last)" in run.err:
        return "printed a traceback"
    if run.code not in (1, 2):
        return f"exit status {run.code}"
    if len(errors) != 1 or len(lines) != 1:
        return f"stderr is not one error line: {lines[:3]}"
    if "run with --debug" in errors[0]:
        return f"an unexpected exception: {errors[0]}"
    if len(errors[0]) < 35 or not _EXPECTED.search(errors[0]):
        return f"unclear message: {errors[0]}"
    if not _names_one(errors[0], names):
        return f"message names none of {list(names)}: {errors[0]}"
    return None


def _snapshot(a):
    try:
        return np.array(gpunet.to_numpy(a), copy=True)
    except Exception:  # noqa: BLE001 - not an array: nothing to compare
        return None


def _same_array(a, b) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in this (main) thread after ``seconds``."""

    def alarm(signum, frame):
        raise Hang(f"no result within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def judge(case: Case) -> tuple[str, str]:
    """``(outcome, detail)`` of running ``case``."""
    before = [_snapshot(a) for a in case.inputs]
    start_peak = peak_mb()
    expect = case.expect
    names = getattr(expect, "names", ())
    outcome, detail = "ok", ""
    try:
        with time_limit(case.timeout):
            result = case.run()
    except Hang as exc:
        return "hang", str(exc)
    except MemoryError as exc:
        if getattr(expect, "huge", False) and peak_mb() - start_peak < GROWTH_MB:
            return "clear error", ""
        return "unbounded", f"MemoryError: {str(exc)[:120]}"
    except Exception as exc:  # noqa: BLE001 - judging every exception is the point
        problem = error_problem(exc, names)
        last = f"{type(exc).__name__}: {str(exc)[:200]}"
        if problem is not None:
            outcome, detail = "traceback", f"{last} ({problem})"
        elif isinstance(expect, Accept):
            outcome, detail = "refused valid", last
        else:
            outcome, detail = "clear error", ""
            changed = case.after() if case.after else None
            if changed:
                outcome, detail = "silent wrong", f"refused, but {changed} ({last})"
    else:
        if isinstance(result, Verdict):
            outcome, detail = result.outcome, result.detail
        elif isinstance(result, CommandRun):
            outcome, detail = _judge_command(result, expect)
        elif isinstance(expect, Refuse):
            outcome, detail = "silent wrong", f"accepted, returned {_short(result)}"
        elif expect.check is not None:
            try:
                wrong = expect.check(result)
            except Exception as exc:  # noqa: BLE001 - using the result failed: it is not right
                wrong = f"using the result raised {type(exc).__name__}: {str(exc)[:200]}"
            if wrong:
                outcome, detail = "silent wrong", wrong
    for i, (a, old) in enumerate(zip(case.inputs, before, strict=True)):
        new = _snapshot(a)
        if old is not None and new is not None and not _same_array(old, new):
            outcome, detail = "silent wrong", f"input {i} was mutated ({outcome}: {detail})"
    growth = peak_mb() - start_peak
    if growth > case.memory_mb:
        outcome, detail = "unbounded", f"peak RSS +{growth:.0f} MB ({outcome}: {detail})"
    return outcome, detail


def _judge_command(run: CommandRun, expect) -> tuple[str, str]:
    if run.code == 0:
        if isinstance(expect, Refuse):
            return "silent wrong", f"exit 0 for a bad command line; stdout ends {run.out[-120:]!r}"
        wrong = expect.check(run) if expect.check else None
        return ("silent wrong", wrong) if wrong else ("ok", "")
    problem = command_problem(run, getattr(expect, "names", ()))
    if problem is not None:
        return "traceback", f"exit {run.code}: {problem}; stderr ends {run.err[-300:]!r}"
    if isinstance(expect, Accept):
        return "refused valid", run.err.strip()[:200]
    return "clear error", ""


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# --- oracles: the documented rules, written here independently of gpunet's checks -------------


class Invalid(Exception):
    """Raised by a reference for an input the documented contract refuses; ``names`` are
    the arguments an error message may name."""

    def __init__(self, *names):
        super().__init__(*names)
        self.names = tuple(str(n) for n in names)


class Unspecified(Exception):
    """Raised by a reference where the contract does not say (refusing or computing are
    both right); ``huge``: the computation needs more memory than a machine has."""

    def __init__(self, huge: bool = False):
        super().__init__()
        self.huge = huge


NAN, INF = float("nan"), float("inf")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def int_arg(name, v, low):
    if not _is_int(v) or v < low:
        raise Invalid(name)
    return int(v)


def pair_arg(name, v, low):
    if _is_int(v):
        v = (v, v)
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(e) and e >= low for e in v)):
        raise Invalid(name)
    return int(v[0]), int(v[1])


def real_arg(name, v, low=None, high=None, low_open=False, high_open=False):
    if not _is_real(v) or not math.isfinite(v):
        raise Invalid(name)
    if low is not None and (v < low or (low_open and v == low)):
        raise Invalid(name)
    if high is not None and (v > high or (high_open and v == high)):
        raise Invalid(name)
    return float(v)


def param_dict(name, param, allowed, required=()):
    if not isinstance(param, dict):
        raise Invalid(name)
    unknown = set(param) - set(allowed)
    if unknown:
        raise Invalid(name, *map(str, unknown))
    missing = set(required) - set(param)
    if missing:
        raise Invalid(name, *missing)
    return param


def backend_name(a) -> str | None:
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a).__module__.startswith("array_api_strict"):
        return "strict"
    return None


def dtype_name(a) -> str:
    """"float32" etc. of an array of any backend (byte order aside)."""
    return np.dtype(a.dtype).name if isinstance(a, np.ndarray) else str(a.dtype).rsplit(".", 1)[-1]


def float_arrays(named: dict) -> dict:
    """The arrays of ``named`` (name -> value) as float64 host copies, after the rules every
    layer and loss states: arrays of one backend and one real floating dtype."""
    backends, dtypes, wrong = set(), set(), []
    for name, a in named.items():
        b = backend_name(a)
        kind = dtype_name(a) if b else None
        if kind not in ("float16", "float32", "float64") or isinstance(a, (np.matrix, np.ma.MaskedArray)):
            wrong.append(name)
        backends.add(b)
        dtypes.add(kind)
    if len(backends - {None}) > 1:
        wrong += ["numpy", "strict"]
    if wrong or len(dtypes) > 1:
        raise Invalid(*wrong, *named)
    return {name: gpunet.to_numpy(a).astype(np.float64) for name, a in named.items()}


def need_shape(name, a, shape):
    if a.shape != tuple(shape):
        raise Invalid(name)


def need_ndim(name, a, ndim):
    if a.ndim != ndim:
        raise Invalid(name)


TOLERANCE = {"float64": 1e-9, "float32": 2e-4, "float16": 3e-2}


def close(got, expected, dtype: str, what: str = "result") -> str | None:
    """None if ``got`` (any backend) matches the float64 ``expected``, else the difference."""
    try:
        host = gpunet.to_numpy(got)
    except Exception as exc:  # noqa: BLE001
        return f"{what} is not an array ({type(got).__name__}: {exc})"
    expected = np.asarray(expected)
    if host.shape != expected.shape:
        return f"{what} has shape {host.shape}, expected {expected.shape}"
    if host.dtype.name != dtype:
        return f"{what} has dtype {host.dtype}, expected {dtype}"
    h, e = host.astype(np.float64), expected
    if not np.array_equal(np.isnan(h), np.isnan(e)):
        return (f"{what} has NaN at other places than the reference ({int(np.isnan(h).sum())} vs "
                f"{int(np.isnan(e).sum())})")
    finite = np.isfinite(e)
    if not np.array_equal(h[~finite & ~np.isnan(e)], e[~finite & ~np.isnan(e)]):
        return f"{what}: infinities differ from the reference"
    tol = TOLERANCE[dtype]
    scale = max(1.0, float(np.max(np.abs(e[finite]), initial=0.0)))
    err = float(np.max(np.abs(h[finite] - e[finite]), initial=0.0))
    if err > tol * scale:
        return f"{what} differs from the reference by {err:.3g} (scale {scale:.3g}, {dtype})"
    return None


# --- family: layers ----------------------------------------------------------------------------

import naive  # noqa: E402 - tests/naive.py: loops written from the definitions

# Parameter values a user might pass: (value, valid). Each pool is for one kind of setting.
_NOT_NUMBERS = [True, False, np.bool_(True), None, "2", b"1", NAN, INF, -INF, [1], {}, 1 + 0j,
                np.float32("nan")]
_POS = [1, 2, np.int64(2), np.int32(1), np.uint8(2), np.int16(3)]
_PAIRS = [(1, 2), [2, 1], (np.int64(1), 2), (np.uint8(2), np.int32(1))]
_BAD_PAIRS = [(1,), (1, 2, 3), [], (1, 1.5), (True, 1), (1, None), "12", (2, -1)]
POOLS = {
    "stride": _POS + _PAIRS + [0, -1, 1.0, 2.5, np.float32(1.0), 2**70] + _BAD_PAIRS + _NOT_NUMBERS,
    "pad": [0, 1, np.int64(1), np.uint8(0), (0, 1), [1, 0], -1, 1.0, 10**6, 2**70] + _BAD_PAIRS
    + _NOT_NUMBERS,
    "dilation": [1, 2, np.int64(1), (1, 2), 0, -1, 1.5] + _BAD_PAIRS + _NOT_NUMBERS,
    "window": [1, 2, np.int64(2), np.int32(3), np.uint16(1), 0, -1, 2.0, (2, 2), 10**9, 2**70]
    + _NOT_NUMBERS,
    "p": [0.5, np.float32(0.5), np.float64(0.3), 1, 1.0, np.float16(0.25), 1e-300, 0, 0.0, -0.1,
          1.5, np.float32(1.5), 2] + _NOT_NUMBERS,
    "mode": ["train", "test", "Train", "eval", "", None, 1, b"train", ["train"], np.str_("test")],
    "seed": [0, 7, np.int64(3), np.uint32(5), 2**40, -1, 1.5, "a", True, np.float64(1.0), 2**70,
             [1]],
    "rng": [np.random.default_rng(0), 42, "x", np.random.RandomState(0), np.random.PCG64(0), True],
    "eps": [1e-5, np.float32(1e-3), 1, np.float64(1e-8), 5e-324, 0, -1e-5, 1e300] + _NOT_NUMBERS,
    "momentum": [0, 1, 0.9, np.float32(0.5), np.int64(0), 5, -0.1, 1.0001] + _NOT_NUMBERS,
    "slope": [0.01, 0, np.float32(0.2), np.float64(1.5), 3, -0.1, 1e3] + _NOT_NUMBERS,
    "G": [1, 2, np.int64(4), np.uint8(2), 3, 0, -1, 2.0, 8] + _NOT_NUMBERS,
}


def _conv_settings(conv_param):
    param_dict("conv_param", conv_param, {"stride", "pad", "dilation"})
    return (pair_arg("stride", conv_param.get("stride", 1), 1), pair_arg("pad", conv_param.get("pad", 0), 0),
            pair_arg("dilation", conv_param.get("dilation", 1), 1))


def _pool_settings(pool_param):
    param_dict("pool_param", pool_param, {"pool_height", "pool_width", "stride"},
               ("pool_height", "pool_width"))
    kh = int_arg("pool_height", pool_param["pool_height"], 1)
    kw = int_arg("pool_width", pool_param["pool_width"], 1)
    return kh, kw, pair_arg("stride", pool_param.get("stride", (kh, kw)), 1)


def _index_safe(*sizes):
    """Sizes past what an index holds (2**62) are refused or computed: the contract is silent."""
    if any(s >= 2**62 for s in sizes):
        raise Unspecified


def ref_conv(a, conv_param):
    x, w, b = a["x"], a["w"], a["b"]
    need_ndim("x", x, 4)
    need_ndim("w", w, 4)
    if min(w.shape[2:]) < 1:
        raise Invalid("w", "kernel")
    need_shape("b", b, (w.shape[0],))
    if x.shape[1] != w.shape[1]:
        raise Invalid("x", "w", "C")
    stride, pad, dil = _conv_settings(conv_param)
    _index_safe(*stride, *pad)
    oh = (x.shape[2] + 2 * pad[0] - dil[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] + 2 * pad[1] - dil[1] * (w.shape[3] - 1) - 1) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise Invalid("x", "w", "pad", "dilation", "window", "kernel", "filter")
    if oh * ow * x.shape[0] * w.shape[0] > 10**6:
        raise Unspecified(huge=oh * ow > 10**10)  # too large to compute here
    return naive.conv_forward(x, w, b, stride, pad, dil)


def ref_pool(x, pool_param, reduce):
    need_ndim("x", x, 4)
    kh, kw, (sh, sw) = _pool_settings(pool_param)
    _index_safe(kh, kw, sh, sw)
    if kh > x.shape[2] or kw > x.shape[3]:
        raise Invalid("x", "pool_height", "pool_width", "window")
    return reduce(x, kh, kw, sh, sw)


def ref_bn_rows(x, gamma, beta, bn_param, allowed=("mode", "eps", "momentum", "running_mean", "running_var")):
    param_dict("bn_param", bn_param, allowed, ("mode",))
    mode = bn_param["mode"]
    if not (isinstance(mode, str) and mode in ("train", "test")):
        raise Invalid("mode")
    eps = real_arg("eps", bn_param.get("eps", 1e-5), low=0.0, low_open=True)
    real_arg("momentum", bn_param.get("momentum", 0.9), low=0.0, high=1.0)
    d = x.shape[1]
    need_shape("gamma", gamma, (d,))
    need_shape("beta", beta, (d,))
    if mode == "train":
        if x.shape[0] < 2:
            raise Unspecified  # one sample has no variance: refusing is right, so is NaN-free output
        mean, var = x.mean(axis=0), x.var(axis=0)
    else:
        mean = bn_param.get("running_mean", np.zeros(d))
        var = bn_param.get("running_var", np.ones(d))
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def ref_batchnorm(a, bn_param):
    param_dict("bn_param", bn_param, ("mode", "eps", "momentum", "running_mean", "running_var"), ("mode",))
    extra = {k: bn_param[k] for k in ("running_mean", "running_var") if k in bn_param}
    checked = float_arrays({**a, **extra})
    need_ndim("x", checked["x"], 2)
    for k in extra:
        need_shape(k, checked[k], (checked["x"].shape[1],))
    return ref_bn_rows(checked["x"], checked["gamma"], checked["beta"], {**bn_param, **{k: checked[k] for k in extra}})


def ref_spatial_bn(x, gamma, beta, bn_param):
    need_ndim("x", x, 4)
    n, c, h, w = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)
    return ref_bn_rows(rows, gamma, beta, bn_param).reshape(n, h, w, c).transpose(0, 3, 1, 2)


def ref_layernorm(a, ln_param):
    x, gamma, beta = a["x"], a["gamma"], a["beta"]
    param_dict("ln_param", ln_param, {"eps", "mode"})
    eps = real_arg("eps", ln_param.get("eps", 1e-5), low=0.0, low_open=True)
    need_ndim("x", x, 2)
    need_shape("gamma", gamma, (x.shape[1],))
    need_shape("beta", beta, (x.shape[1],))
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def ref_groupnorm(a, G, gn_param):
    x, gamma, beta = a["x"], a["gamma"], a["beta"]
    param_dict("gn_param", gn_param, {"eps", "mode"})
    eps = real_arg("eps", gn_param.get("eps", 1e-5), low=0.0, low_open=True)
    need_ndim("x", x, 4)
    n, c, h, w = x.shape
    g = int_arg("G", G, 1)
    if c % g:
        raise Invalid("G")
    need_shape("gamma", gamma, (1, c, 1, 1))
    need_shape("beta", beta, (1, c, 1, 1))
    xg = x.reshape(n, g, c // g * h * w)
    out = (xg - xg.mean(axis=2, keepdims=True)) / np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    return out.reshape(x.shape) * gamma + beta


def ref_affine(a):
    x, w, b = a["x"], a["w"], a["b"]
    if x.ndim < 2:
        raise Invalid("x")
    need_ndim("w", w, 2)
    if w.shape[0] != math.prod(x.shape[1:]):
        raise Invalid("x", "w", "D")
    need_shape("b", b, (w.shape[1],))
    return x.reshape(x.shape[0], math.prod(x.shape[1:])) @ w + b


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def ref_dropout(a, dropout_param):
    param_dict("dropout_param", dropout_param, {"p", "mode", "seed", "rng"}, ("p", "mode"))
    mode = dropout_param["mode"]
    if not (isinstance(mode, str) and mode in ("train", "test")):
        raise Invalid("mode")
    p = real_arg("p", dropout_param["p"], low=0.0, high=1.0, low_open=True)
    if "seed" in dropout_param:
        int_arg("seed", dropout_param["seed"], 0)
    if dropout_param.get("rng") is not None and not isinstance(dropout_param["rng"], np.random.Generator):
        raise Invalid("rng")
    x = a["x"]
    if mode == "test" or p == 1:
        return x
    if 1 / p > np.finfo(a.get("dtype", "float64")).max:
        raise Invalid("p")  # the scale 1/p overflows the dtype
    return ("dropout", x, p)  # a mask: checked by _check_dropout


RELU = lambda a: np.maximum(a["x"], 0)  # noqa: E731


@dataclasses.dataclass
class LayerSpec:
    """A public layer function: its array arguments (name -> base shape), its other
    arguments (built fresh per call), the float64 reference of its forward pass (raises
    Invalid / Unspecified) and its backward function with the arguments its gradients are for."""

    name: str
    arrays: dict
    params: Callable[[], list]
    reference: Callable
    backward: str | None = None
    grads: tuple = ()
    param_names: tuple = ()  # names of the other arguments, for error messages


def _conv_param():
    return {"stride": 1, "pad": 1}


def _pool_param():
    return {"pool_height": 2, "pool_width": 2, "stride": 2}


CONV = {"x": (2, 3, 5, 5), "w": (4, 3, 3, 3), "b": (4,)}
LAYERS = [
    LayerSpec("relu_forward", {"x": (3, 4)}, lambda: [], RELU, "relu_backward", ("x",)),
    LayerSpec("leaky_relu_forward", {"x": (3, 4)}, lambda: [0.1],
              lambda a, s: np.where(a["x"] > 0, a["x"], a["x"] * real_arg("negative_slope", s, low=0.0)),
              "leaky_relu_backward", ("x",)),
    LayerSpec("sigmoid_forward", {"x": (3, 4)}, lambda: [], lambda a: _sigmoid(a["x"]),
              "sigmoid_backward", ("x",)),
    LayerSpec("tanh_forward", {"x": (3, 4)}, lambda: [], lambda a: np.tanh(a["x"]), "tanh_backward",
              ("x",)),
    LayerSpec("affine_forward", {"x": (2, 3, 2), "w": (6, 4), "b": (4,)}, lambda: [], ref_affine,
              "affine_backward", ("x", "w", "b")),
    LayerSpec("affine_relu_forward", {"x": (2, 6), "w": (6, 4), "b": (4,)}, lambda: [],
              lambda a: np.maximum(ref_affine(a), 0), "affine_relu_backward", ("x", "w", "b")),
    LayerSpec("batchnorm_forward", {"x": (4, 3), "gamma": (3,), "beta": (3,)},
              lambda: [{"mode": "train"}], None, "batchnorm_backward", ("x", "gamma", "beta")),
    LayerSpec("spatial_batchnorm_forward", {"x": (2, 3, 2, 2), "gamma": (3,), "beta": (3,)},
              lambda: [{"mode": "train", "momentum": 0.5}],
              lambda a, p: ref_spatial_bn(a["x"], a["gamma"], a["beta"], p),
              "spatial_batchnorm_backward", ("x", "gamma", "beta")),
    LayerSpec("layernorm_forward", {"x": (3, 4), "gamma": (4,), "beta": (4,)}, lambda: [{}],
              ref_layernorm, "layernorm_backward", ("x", "gamma", "beta")),
    LayerSpec("spatial_groupnorm_forward", {"x": (2, 4, 2, 2), "gamma": (1, 4, 1, 1), "beta": (1, 4, 1, 1)},
              lambda: [2, {}], ref_groupnorm, "spatial_groupnorm_backward", ("x", "gamma", "beta")),
    LayerSpec("dropout_forward", {"x": (3, 4)}, lambda: [{"p": 0.5, "mode": "train", "seed": 1}],
              ref_dropout, "dropout_backward", ("x",)),
    LayerSpec("conv_forward", CONV, lambda: [_conv_param()], ref_conv, "conv_backward", ("x", "w", "b")),
    LayerSpec("conv_forward_naive", CONV, lambda: [_conv_param()], ref_conv, "conv_backward_naive",
              ("x", "w", "b")),
    LayerSpec("conv_relu_forward", CONV, lambda: [_conv_param()], lambda a, c: np.maximum(ref_conv(a, c), 0),
              "conv_relu_backward", ("x", "w", "b")),
    LayerSpec("conv_relu_pool_forward", CONV, lambda: [_conv_param(), _pool_param()],
              lambda a, c, p: ref_pool(np.maximum(ref_conv(a, c), 0), p, naive.max_pool_forward),
              "conv_relu_pool_backward", ("x", "w", "b")),
    LayerSpec("conv_bn_relu_forward", {**CONV, "gamma": (4,), "beta": (4,)},
              lambda: [_conv_param(), {"mode": "train"}],
              lambda a, c, p: np.maximum(ref_spatial_bn(ref_conv(a, c), a["gamma"], a["beta"], p), 0),
              "conv_bn_relu_backward", ("x", "w", "b", "gamma", "beta")),
    LayerSpec("max_pool_forward", {"x": (2, 3, 4, 4)}, lambda: [_pool_param()],
              lambda a, p: ref_pool(a["x"], p, naive.max_pool_forward), "max_pool_backward", ("x",)),
    LayerSpec("max_pool_forward_naive", {"x": (2, 3, 4, 4)}, lambda: [_pool_param()],
              lambda a, p: ref_pool(a["x"], p, naive.max_pool_forward), "max_pool_backward_naive", ("x",)),
    LayerSpec("avg_pool_forward", {"x": (2, 3, 4, 4)}, lambda: [_pool_param()],
              lambda a, p: ref_pool(a["x"], p, naive.avg_pool_forward), "avg_pool_backward", ("x",)),
    LayerSpec("avg_pool_forward_naive", {"x": (2, 3, 4, 4)}, lambda: [_pool_param()],
              lambda a, p: ref_pool(a["x"], p, naive.avg_pool_forward), "avg_pool_backward_naive", ("x",)),
]
LAYERS[6].reference = ref_batchnorm  # batchnorm_forward: running statistics may be passed
_PARAM_NAMES = {"leaky_relu_forward": ("negative_slope",), "batchnorm_forward": ("bn_param",),
                "spatial_batchnorm_forward": ("bn_param",), "layernorm_forward": ("ln_param",),
                "spatial_groupnorm_forward": ("G", "gn_param"), "dropout_forward": ("dropout_param",),
                "conv_relu_pool_forward": ("conv_param", "pool_param"),
                "conv_bn_relu_forward": ("conv_param", "bn_param")}
for _spec in LAYERS:
    _spec.param_names = _PARAM_NAMES.get(_spec.name, ("conv_param",) if "conv" in _spec.name else ("pool_param",))

# Which parameter slots each layer's extra arguments have: (argument index, key or None, pool).
SLOTS = {
    "leaky_relu_forward": [(0, None, "slope")],
    "batchnorm_forward": [(0, "mode", "mode"), (0, "eps", "eps"), (0, "momentum", "momentum")],
    "spatial_batchnorm_forward": [(0, "mode", "mode"), (0, "eps", "eps"), (0, "momentum", "momentum")],
    "layernorm_forward": [(0, "eps", "eps")],
    "spatial_groupnorm_forward": [(0, None, "G"), (1, "eps", "eps")],
    "dropout_forward": [(0, "p", "p"), (0, "mode", "mode"), (0, "seed", "seed"), (0, "rng", "rng")],
    "max_pool_forward": [(0, "pool_height", "window"), (0, "pool_width", "window"), (0, "stride", "stride")],
    "conv_forward": [(0, "stride", "stride"), (0, "pad", "pad"), (0, "dilation", "dilation")],
    "conv_relu_pool_forward": [(0, "stride", "stride"), (0, "pad", "pad"), (1, "pool_height", "window"),
                               (1, "stride", "stride")],
    "conv_bn_relu_forward": [(0, "dilation", "dilation"), (1, "eps", "eps"), (1, "momentum", "momentum")],
}
for _a, _b in (("max_pool_forward_naive", "max_pool_forward"), ("avg_pool_forward", "max_pool_forward"),
               ("avg_pool_forward_naive", "max_pool_forward"), ("conv_forward_naive", "conv_forward"),
               ("conv_relu_forward", "conv_forward")):
    SLOTS[_a] = SLOTS[_b]


def _strict(a):
    """``a`` on the strict backend (which has no float16: float32 there)."""
    a = gpunet.to_numpy(a)
    with gpunet.use_backend("strict"):
        return gpunet.asarray(a.astype(np.float32) if a.dtype == np.float16 else a)


# How an array argument is spoiled (or changed in a way that must work): name -> function.
ARRAY_CHANGES = {
    "int64": lambda a: a.astype(np.int64),
    "int32": lambda a: (a * 10).astype(np.int32),
    "bool": lambda a: a > 0,
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "float32 (others not)": lambda a: a.astype(np.float32) if a.dtype != np.float32 else a.astype(np.float64),
    "a list": lambda a: a.tolist(),
    "None": lambda a: None,
    "a float": lambda a: 1.5,
    "a string": lambda a: "x",
    "0-d": lambda a: np.asarray(a.reshape(-1)[0] if a.size else 1.0, dtype=a.dtype),
    "one axis less": lambda a: a.reshape(a.shape[:-2] + (-1,)) if a.ndim >= 2 else a.reshape(()),
    "one axis more": lambda a: a[None],
    "a trailing axis of 1": lambda a: a[..., None],
    "first axis empty": lambda a: a[:0],
    "last axis empty": lambda a: a[..., :0],
    "last axis 1": lambda a: a[..., :1],
    "transposed": lambda a: a.T,
    "non-contiguous view": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "reversed view": lambda a: a[::-1],
    "a NaN": lambda a: _with(a, NAN),
    "an inf": lambda a: _with(a, INF),
    "-inf": lambda a: _with(a, -INF),
    "1e30 values": lambda a: a * np.asarray(1e30, a.dtype) if a.dtype == np.float64 else a,
    "on strict": _strict,
    "a matrix": lambda a: np.asmatrix(a) if a.ndim == 2 else a,
    "masked": lambda a: np.ma.masked_array(a, mask=a > 1),
    "read-only": lambda a: _read_only(a),
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
}


def _with(a, value):
    a = a.copy()
    if a.size:
        a.reshape(-1)[a.size // 2] = value
    return a


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _changed_array(name, a, how):
    """``a`` changed as ``how`` says, or None when that does not apply to it."""
    try:
        return ARRAY_CHANGES[how](a)
    except Exception:  # noqa: BLE001 - not applicable to this array (e.g. a strict array)
        return None


def _call_layer(spec: LayerSpec, arrays: dict, params: list):
    return getattr(L, spec.name)(*arrays.values(), *params)


def _expected(spec: LayerSpec, arrays: dict, params: list):
    """The reference output, or Invalid / Unspecified."""
    checked = float_arrays({k: v for k, v in arrays.items()}) if spec.name != "batchnorm_forward" else arrays
    for a in arrays.values():
        if isinstance(a, np.ndarray) and not a.dtype.isnative:
            raise Unspecified  # big-endian data: computed right, or refused
    if spec.name == "dropout_forward" and backend_name(arrays["x"]):
        checked = {**checked, "dtype": dtype_name(arrays["x"])}  # the keep probability's limit
    with np.errstate(all="ignore"):
        return spec.reference(checked, *params)


def _gradient_problem(spec: LayerSpec, arrays: dict, params_for_ref, grads, dout) -> str | None:
    """Compare each gradient with a central difference of the reference along a random
    direction (float64, finite inputs only)."""
    rng = np.random.default_rng(5)
    host = {k: gpunet.to_numpy(v).astype(np.float64) for k, v in arrays.items()}
    d = gpunet.to_numpy(dout).astype(np.float64)
    for name, g in zip(spec.grads, grads, strict=True):
        if g is None:
            continue
        v = rng.standard_normal(host[name].shape)
        h = 1e-6

        def f(t, name=name, v=v):
            moved = dict(host)
            moved[name] = host[name] + t * v
            return float(np.sum(spec.reference(moved, *copy.deepcopy(params_for_ref)) * d))

        numeric = (f(h) - f(-h)) / (2 * h)
        analytic = float(np.sum(gpunet.to_numpy(g).astype(np.float64) * v))
        if abs(numeric - analytic) > 1e-5 * max(1.0, abs(numeric)):
            return f"d{name} disagrees with a central difference of the reference ({analytic:.6g} vs {numeric:.6g})"
    return None


def _forward_backward_check(spec, arrays, params, expected, dtype, data):
    """A check of ``(out, cache)``: the output against the reference, then the backward pass
    (shapes, dtypes, and in float64 a directional derivative)."""
    ref_params = copy.deepcopy(params)

    def check(result):
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"returned {_short(result)}, expected (out, cache)"
        out, cache = result
        if isinstance(expected, tuple) and expected and expected[0] == "dropout":
            wrong = _check_dropout(out, expected[1], expected[2], dtype)
        else:
            wrong = close(out, expected, dtype, "out")
        if wrong or spec.backward is None:
            return wrong
        dout_host = np.asarray(data.standard_normal(gpunet.to_numpy(out).shape), dtype=dtype)
        like = next(iter(arrays.values()))
        dout = _strict(dout_host) if backend_name(like) == "strict" else dout_host
        grads = getattr(L, spec.backward)(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(spec.grads):
            return f"{spec.backward} returned {len(grads)} gradients, expected {len(spec.grads)}"
        for name, g in zip(spec.grads, grads, strict=True):
            a = arrays[name]
            if gpunet.to_numpy(g).shape != gpunet.to_numpy(a).shape or dtype_name(g) != dtype_name(a):
                return (f"d{name} has shape {gpunet.to_numpy(g).shape} and dtype {g.dtype}, "
                        f"{name} has {gpunet.to_numpy(a).shape} and {a.dtype}")
        moderate = all(np.abs(gpunet.to_numpy(a)).max(initial=0) < 1e6 for a in arrays.values())  # finite too
        if dtype == "float64" and moderate and not (isinstance(expected, tuple)) and \
                np.abs(np.asarray(expected)).max(initial=0) < 1e6:  # (1e30 offsets cancel: no derivative)
            return _gradient_problem(spec, arrays, ref_params, grads, dout_host)
        return None

    return check


def _check_dropout(out, x, p, dtype):
    host = gpunet.to_numpy(out).astype(np.float64)
    if host.shape != x.shape or gpunet.to_numpy(out).dtype.name != dtype:
        return f"out has shape {host.shape}, expected {x.shape}"
    with np.errstate(all="ignore"):
        kept = np.isclose(host, x / p, rtol=TOLERANCE[dtype], equal_nan=True)
    dropped = (host == 0) | (np.isnan(host) & ~np.isfinite(x))  # inf * 0 is NaN, as in PyTorch
    if not np.all(kept | dropped):
        return "dropout output holds values other than 0 and x / p"
    return None


@st.composite
def layer_cases(draw):
    """A layer call with 0-2 spoiled parameters and 0-2 changed array arguments (or a spoiled
    dout in the backward pass), on NumPy or strict arrays."""
    spec = draw(st.sampled_from(LAYERS))
    dtype = draw(st.sampled_from(["float64", "float64", "float64", "float32", "float16"]))
    data = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = {k: np.asarray(data.standard_normal(s), dtype=dtype) for k, s in spec.arrays.items()}
    params = spec.params()
    changes, touched = [], []
    for _ in range(draw(st.integers(0, 2))):
        slots = SLOTS.get(spec.name)
        if not slots:
            break
        index, key, pool = draw(st.sampled_from(slots))
        value = draw(st.sampled_from(POOLS[pool]))
        if key is None:
            params[index] = value
        else:
            params[index] = dict(params[index], **{key: value})
        changes.append(f"{key or pool}={value!r}")
        touched.append(key or spec.param_names[index])
    what = draw(st.sampled_from(["arrays", "arrays", "params only", "dict", "dout", "all strict"]))
    if what == "dict" and any(isinstance(p, dict) for p in params):
        index = next(i for i, p in enumerate(params) if isinstance(p, dict))
        kind = draw(st.sampled_from(["unknown key", "missing key", "not a dict", "a list of pairs"]))
        if kind == "unknown key":
            params[index] = dict(params[index], **{draw(st.sampled_from(["strde", "Stride", "p_keep", ""])): 1})
        elif kind == "missing key" and params[index]:
            params[index] = dict(list(params[index].items())[1:])
        elif kind == "not a dict":
            params[index] = draw(st.sampled_from([None, "train", 1, ["mode"]]))
        else:
            params[index] = list(params[index].items())
        changes.append(kind)
        touched.append(spec.param_names[index])
    elif what == "arrays":
        for _ in range(draw(st.integers(1, 2))):
            name = draw(st.sampled_from(list(arrays)))
            how = draw(st.sampled_from(sorted(ARRAY_CHANGES)))
            changed = _changed_array(name, arrays[name], how)
            if changed is not None or how == "None":
                arrays[name] = changed
                changes.append(f"{name} {how}")
                touched.append(name)
    elif what == "all strict":
        arrays = {k: _strict(v) for k, v in arrays.items()}
        dtype = "float32" if dtype == "float16" else dtype
        changes.append("all arrays on strict")
    label = f"{spec.name}({dtype}): {', '.join(changes) or 'as documented'}"
    if what == "dout" and spec.backward:
        return _dout_case(spec, arrays, params, draw, label)
    try:
        expected = _expected(spec, arrays, copy.deepcopy(params))
    except Invalid as exc:
        expect = Refuse(*exc.names, *touched)
    except Unspecified as exc:
        expect = Either(names=tuple(touched), huge=exc.huge)
    else:
        real = dtype_name(next(iter(arrays.values())))
        expect = Accept(_forward_backward_check(spec, arrays, params, expected, real, data))
    inputs = tuple(v for v in arrays.values() if backend_name(v) is not None)
    return Case(label, lambda: _call_layer(spec, arrays, params), expect, inputs)


def _dout_case(spec, arrays, params, draw, label):
    """The forward pass as documented, then the backward pass with a spoiled dout."""
    how = draw(st.sampled_from(["wrong shape", "int64", "float32 for float64", "a list", "None",
                                "on strict", "0-d", "transposed", "extra axis", "empty"]))

    def run():
        out, cache = _call_layer(spec, arrays, params)
        d = np.ones_like(gpunet.to_numpy(out))
        bad = {"wrong shape": lambda: np.ones(d.shape[:-1] + (d.shape[-1] + 1,), d.dtype),
               "int64": lambda: d.astype(np.int64),
               "float32 for float64": lambda: d.astype(np.float32 if d.dtype != np.float32 else np.float64),
               "a list": lambda: d.tolist(), "None": lambda: None, "on strict": lambda: _strict(d),
               "0-d": lambda: np.asarray(1.0, d.dtype), "transposed": lambda: d.T if d.T.shape != d.shape else d[None],
               "extra axis": lambda: d[None], "empty": lambda: d[:0]}[how]()
        return getattr(L, spec.backward)(bad, cache)

    try:
        expected = _expected(spec, arrays, copy.deepcopy(params))
        if spec.name == "dropout_forward" and not isinstance(expected, tuple):
            raise Invalid  # the identity (test mode, p = 1): dx = dout, whatever dout is
    except Invalid:
        return Case(label + f"; dout {how}", run, Either())
    except Unspecified as exc:
        return Case(label + f"; dout {how}", run, Either(huge=exc.huge))
    return Case(f"{label}; {spec.backward} with dout {how}", run, Refuse("dout", "y", "x", "strict", "numpy"),
                tuple(arrays.values()))


# --- family: losses ----------------------------------------------------------------------------

from gpunet import losses as LOSSES  # noqa: E402


def _reduce_ref(per, grad, reduction, count):
    if not (isinstance(reduction, str) and reduction in ("mean", "sum", "none")):
        raise Invalid("reduction")
    if reduction == "none":
        return per, grad
    if reduction == "mean":
        if count == 0:
            raise Unspecified  # the mean of nothing
        return per.sum() / count, grad / count
    return per.sum(), grad


def _labels(x, y, c):
    """Labels y as int64 host values after the documented rules (NumPy: range-checked here;
    strict: out-of-range labels make their rows NaN), or Invalid."""
    b = backend_name(y)
    if b is None or dtype_name(y) not in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        raise Invalid("y", "labels")
    if b != backend_name(x):
        raise Invalid("y", "labels", "numpy", "strict")
    host = gpunet.to_numpy(y)
    if host.ndim != 1 or host.shape[0] != x.shape[0]:
        raise Invalid("y", "labels")
    bad = (host < 0) | (host >= c)
    if bad.any() and b == "numpy":
        raise Invalid("y", "labels")
    return host.astype(np.int64), bad


def ref_class_loss(kind, x, y, reduction="mean"):
    (xh,) = float_arrays({"x": x}).values()
    need_ndim("x", xh, 2)
    n, c = xh.shape
    labels, bad = _labels(x, y, c)
    safe = np.where(bad, 0, labels)
    onehot = np.eye(c)[safe] if n else np.zeros((0, c))
    if kind == "softmax":
        m = xh.max(axis=1, keepdims=True) if c else np.zeros((n, 1))
        log_p = xh - m - np.log(np.exp(xh - m).sum(axis=1, keepdims=True))
        per, grad = -(log_p * onehot).sum(axis=1), np.exp(log_p) - onehot
    else:
        correct = (xh * onehot).sum(axis=1, keepdims=True)
        margins = np.where(onehot > 0, 0.0, np.maximum(xh - correct + 1, 0))
        positive = (margins > 0).astype(float)
        per, grad = margins.sum(axis=1), positive - onehot * positive.sum(axis=1, keepdims=True)
    per[bad], grad[bad] = NAN, NAN  # (strict only: NumPy refused them)
    return _reduce_ref(per, grad, reduction, n)


def _unit(name, a):
    host = gpunet.to_numpy(a).astype(np.float64)
    outside = ~((host >= 0) & (host <= 1))
    if outside.any() and backend_name(a) == "numpy":
        raise Invalid(name, "y", "[0, 1]")
    return outside


def ref_pairwise(kind, x, y, reduction="mean", individual_losses=None):
    names = {"bce": ("probs", "y"), "bce_logits": ("logits", "y")}.get(kind, ("x", "y"))
    a = float_arrays(dict(zip(names, (x, y), strict=True)))
    xh, yh = a.values()
    if xh.shape != yh.shape:
        raise Invalid(*names)
    if individual_losses is not None:
        if not isinstance(individual_losses, (bool, np.bool_)):
            raise Invalid("individual_losses")
        if individual_losses:
            reduction = "none"
    outside = _unit("y", y) if kind in ("bce", "bce_logits") else np.zeros(xh.shape, bool)
    if kind == "bce":
        outside |= _unit("probs", x)
        eps = max(1e-12, float(np.finfo(dtype_name(x)).eps))
        p = np.clip(xh, eps, 1 - eps)
        per = -(yh * np.log(p) + (1 - yh) * np.log1p(-p))
        grad = ((xh >= eps) & (xh <= 1 - eps)) * (p - yh) / (p * (1 - p))
    elif kind == "bce_logits":
        per = np.maximum(xh, 0) - xh * yh + np.log1p(np.exp(-np.abs(xh)))
        grad = _sigmoid(xh) - yh
    elif kind == "mse":
        per, grad = (xh - yh) ** 2, 2 * (xh - yh)
    else:
        per, grad = np.abs(xh - yh), np.sign(xh - yh)
    per = np.where(outside, NAN, per)  # (strict only: NumPy refused them)
    return _reduce_ref(per, grad, reduction, xh.size)


LOSS_FUNCTIONS = {
    "softmax_loss": ("softmax", "class"), "svm_loss": ("svm", "class"), "bce_loss": ("bce", "pair"),
    "bce_with_logits_loss": ("bce_logits", "pair"), "mse_loss": ("mse", "pair"), "l1_loss": ("l1", "pair"),
}
LABEL_CHANGES = {
    "float labels": lambda y, c: y.astype(np.float64), "bool labels": lambda y, c: y > 0,
    "label -1": lambda y, c: _set(y, -1), "label C": lambda y, c: _set(y, c),
    "label 2**40": lambda y, c: _set(y, 2**40), "labels (N, 1)": lambda y, c: y[:, None],
    "one label more": lambda y, c: np.append(y, 0), "a list": lambda y, c: y.tolist(),
    "None": lambda y, c: None, "int32": lambda y, c: y.astype(np.int32),
    "uint8": lambda y, c: y.astype(np.uint8), "on strict": lambda y, c: _strict_int(y),
    "0-d": lambda y, c: np.asarray(y[0]), "a string": lambda y, c: "1", "int8 labels": lambda y, c: y.astype(np.int8),
    "strings": lambda y, c: y.astype(str),
}
TARGET_CHANGES = {
    "outside [0, 1]": lambda t: _set(t, 1.5), "negative": lambda t: _set(t, -0.5),
    "NaN": lambda t: _set(t, NAN), "int64": lambda t: (t > 0.5).astype(np.int64),
    "another shape": lambda t: t[..., :1], "(N, 1) against (N,)": lambda t: t.reshape(-1, 1),
    "a list": lambda t: t.tolist(), "exactly 0 and 1": lambda t: np.round(t),
    "float32 for float64": lambda t: t.astype(np.float32) if t.dtype == np.float64 else t.astype(np.float64),
    "on strict": _strict, "bool": lambda t: t > 0.5, "empty": lambda t: t[:0],
}


def _set(a, value):
    """A copy of ``a`` (any backend) with its first element ``value``."""
    strict = backend_name(a) == "strict"
    host = gpunet.to_numpy(a)
    host = np.array(host, dtype=host.dtype if isinstance(value, float) else np.result_type(host, np.asarray(value)))
    if host.size:
        host.reshape(-1)[0] = value
    return _strict_int(host) if strict else host


def _strict_int(a):
    with gpunet.use_backend("strict"):
        return gpunet.asarray(a)


def _loss_check(expected, dtype):
    def check(result):
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"returned {_short(result)}, expected (loss, dx)"
        loss, dx = result
        return close(loss, expected[0], dtype, "loss") or close(dx, expected[1], dtype, "dx")

    return check


@st.composite
def loss_cases(draw):
    """A loss call with its scores, labels or targets, reduction or backend spoiled."""
    name = draw(st.sampled_from(sorted(LOSS_FUNCTIONS)))
    kind, family = LOSS_FUNCTIONS[name]
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "float16"]))
    data = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, c = draw(st.sampled_from([(4, 3), (4, 3), (1, 1), (0, 3), (3, 1)]))
    x = data.standard_normal((n, c)) * draw(st.sampled_from([1.0, 1.0, 30.0, 6e4]))
    if kind == "bce":
        x = data.uniform(0.02, 0.98, (n, c))
    x = x.astype(dtype)
    y = data.integers(0, max(c, 1), n) if family == "class" else data.uniform(0, 1, (n, c)).astype(dtype)
    changes, touched = [], []
    kwargs = {}
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["x", "y", "y", "reduction", "strict"]))
        if what == "reduction":
            kwargs["reduction"] = draw(st.sampled_from(["mean", "sum", "none", "avg", "MEAN", None, 1, b"sum"]))
            changes.append(f"reduction={kwargs['reduction']!r}")
        elif what == "y":
            table = LABEL_CHANGES if family == "class" else TARGET_CHANGES
            how = draw(st.sampled_from(sorted(table)))
            try:
                y = table[how](y, c) if family == "class" else table[how](y)
            except Exception:  # noqa: BLE001 - a change that does not apply to this y
                continue
            changes.append(f"y {how}")
        elif what == "x":
            how = draw(st.sampled_from(sorted(set(ARRAY_CHANGES) - {"non-contiguous view"})
                                       + ["outside [0, 1]", "negative"]))
            try:
                new = ARRAY_CHANGES[how](x) if how in ARRAY_CHANGES else TARGET_CHANGES[how](x)
            except Exception:  # noqa: BLE001
                continue
            x = new
            changes.append(f"x {how}")
        else:
            try:
                x, y = _strict(x), (_strict_int(y) if family == "class" else _strict(y))
            except Exception:  # noqa: BLE001
                continue
            dtype = "float32" if dtype == "float16" else dtype
            changes.append("both on strict")
        touched.append(what if what != "strict" else "x")
    if name == "bce_loss" and draw(st.integers(0, 3)) == 0:
        kwargs["individual_losses"] = draw(st.sampled_from([True, False, np.bool_(True), "no", 1, 0, None]))
        changes.append(f"individual_losses={kwargs['individual_losses']!r}")
        touched.append("individual_losses")
    fn = getattr(LOSSES, name)
    label = f"{name}({dtype}, N={n}, C={c}): {', '.join(changes) or 'as documented'}"
    names = ("probs" if kind == "bce" else "logits" if kind == "bce_logits" else "x", "y", *touched)
    try:
        with np.errstate(all="ignore"):
            if family == "class":
                expected = ref_class_loss(kind, x, y, **kwargs)
            else:
                expected = ref_pairwise(kind, x, y, kwargs.get("reduction", "mean"), kwargs.get("individual_losses"))
        if any(isinstance(v, np.ndarray) and not v.dtype.isnative for v in (x, y)):
            raise Unspecified  # big-endian data
        if not np.all(np.isfinite(gpunet.to_numpy(x).astype(np.float64))) or \
                (dtype == "float16" and np.abs(gpunet.to_numpy(x)).max(initial=0) > 1e3):
            raise Unspecified  # inf scores; float16 sums: the value is undefined or rounded
        expect = Accept(_loss_check(expected, dtype_name(x)))
    except Invalid as exc:
        expect = Refuse(*exc.names, *names)
    except Unspecified:
        expect = Either(names=names)
    inputs = tuple(v for v in (x, y) if backend_name(v) is not None)
    return Case(label, lambda: fn(x, y, **kwargs), expect, inputs)



# --- family: optimizers ------------------------------------------------------------------------

from gpunet import optim as OPTIM  # noqa: E402

OPT_DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "nesterov": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adamw": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-2},
}
OPT_STATE = {"sgd": (), "sgd_momentum": ("velocity",), "nesterov": ("velocity",), "rmsprop": ("cache",),
             "adam": ("m", "v"), "adamw": ("m", "v")}
OPT_RANGES = {"learning_rate": (0.0, None, False), "momentum": (0.0, 1.0, True), "decay_rate": (0.0, 1.0, True),
              "beta1": (0.0, 1.0, True), "beta2": (0.0, 1.0, True), "epsilon": (0.0, None, None),
              "weight_decay": (0.0, None, False)}
OPT_VALUES = [1e-3, 0.5, 0, 0.0, 1, 1.0, np.float32(0.1), np.float64(0.9), np.int64(0), -0.1, 2.0,
              1e300] + _NOT_NUMBERS


def ref_update(rule, w, dw, config):
    """(next w, next state) by CS231n's formulas in float64, or Invalid."""
    if config is not None and not isinstance(config, dict):
        raise Invalid("config")
    config = dict(config or {})
    allowed = set(OPT_DEFAULTS[rule]) | set(OPT_STATE[rule]) | ({"t"} if rule.startswith("adam") else set())
    unknown = set(config) - allowed
    if unknown:
        raise Invalid("optim_config", *map(str, unknown))
    hp = dict(OPT_DEFAULTS[rule])
    for key in OPT_DEFAULTS[rule]:
        if key in config:
            low, high, open_high = OPT_RANGES[key]
            hp[key] = real_arg(key, config[key], low=low, high=high, low_open=open_high is None,
                               high_open=bool(open_high))
    t = int_arg("t", config.get("t", 0), 0) if "t" in allowed else 0
    a = float_arrays({"w": w, "dw": dw})
    wh, dwh = a["w"], a["dw"]
    if wh.shape != dwh.shape:
        raise Invalid("w", "dw", "gradient")
    state = {}
    for key in OPT_STATE[rule]:
        if config.get(key) is None:
            state[key] = np.zeros_like(wh)
            continue
        s = config[key]
        if backend_name(s) != backend_name(w) or dtype_name(s) != dtype_name(w) or \
                tuple(s.shape) != tuple(wh.shape):
            raise Invalid(key, "state", "numpy", "strict")
        state[key] = gpunet.to_numpy(s).astype(np.float64)
    lr = hp["learning_rate"]
    if rule == "sgd":
        return wh - lr * dwh, {}
    if rule in ("sgd_momentum", "nesterov"):
        v_prev, mu = state["velocity"], hp["momentum"]
        v = mu * v_prev - lr * dwh
        w_next = wh + v if rule == "sgd_momentum" else wh - mu * v_prev + (1 + mu) * v
        return w_next, {"velocity": v}
    if rule == "rmsprop":
        d = hp["decay_rate"]
        cache = d * state["cache"] + (1 - d) * dwh**2
        return wh - lr * dwh / (np.sqrt(cache) + hp["epsilon"]), {"cache": cache}
    t += 1
    if rule == "adamw":
        wh = wh * (1 - lr * hp["weight_decay"])
    b1, b2 = hp["beta1"], hp["beta2"]
    m = b1 * state["m"] + (1 - b1) * dwh
    v = b2 * state["v"] + (1 - b2) * dwh**2
    step = lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + hp["epsilon"])
    return wh - step, {"m": m, "v": v, "t": t}


def _update_check(w, expected, dtype):
    w_next, state = expected

    def check(result):
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"returned {_short(result)}, expected (w, config)"
        got, config = result
        if got is not w:
            return "the parameter was not updated in place (a new array was returned)"
        wrong = close(got, w_next, dtype, "next w")
        for key, value in state.items():
            if wrong:
                break
            if key == "t":
                wrong = None if config.get("t") == value else f"t is {config.get('t')!r}, expected {value}"
            else:
                wrong = close(config.get(key), value, dtype, f"config[{key!r}]")
        return wrong

    return check


#: How an optimizer's state array is spoiled: name -> function of a correct (zero) state.
STATE_CHANGES = {
    "wrong shape": lambda base: np.zeros(base.shape + (1,), base.dtype),
    "float32 for float64": lambda base: base.astype(np.float32 if base.dtype == np.float64 else np.float64),
    "a list": lambda base: base.tolist(), "on strict": _strict, "int64": lambda base: base.astype(np.int64),
}


@st.composite
def optimizer_cases(draw):
    """An update rule with a spoiled config, state, parameter or gradient."""
    rule = draw(st.sampled_from(sorted(OPT_DEFAULTS)))
    dtype = draw(st.sampled_from(["float64", "float64", "float32"]))
    data = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = draw(st.sampled_from([(3, 4), (5,), (), (0, 3)]))
    w, dw = (np.asarray(data.standard_normal(shape), dtype=dtype) for _ in range(2))
    config: Any = {}
    if OPT_STATE[rule] and draw(st.booleans()):  # a second step: state from before
        config = {k: np.asarray(np.abs(data.standard_normal(shape)), dtype=dtype) for k in OPT_STATE[rule]}
        if rule.startswith("adam"):
            config["t"] = 3
    changes, touched = [], []
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["value", "value", "key", "state", "w", "dw", "config", "strict"]))
        if what == "value" and isinstance(config, dict):
            key = draw(st.sampled_from(sorted(OPT_DEFAULTS[rule]) + (["t"] if rule.startswith("adam") else [])))
            config[key] = draw(st.sampled_from(OPT_VALUES + [5, -1, 2**70] if key == "t" else OPT_VALUES))
            changes.append(f"{key}={config[key]!r}")
            touched.append(key)
        elif what == "key" and isinstance(config, dict):
            key = draw(st.sampled_from(["lr", "eps", "mu", "Learning_rate", "weight_decay", "velocity", "t", 3]))
            config[key] = 0.1 if key not in ("velocity",) else np.zeros(shape, dtype)
            changes.append(f"config[{key!r}]")
            touched.append(str(key))
        elif what == "state" and isinstance(config, dict) and OPT_STATE[rule]:
            key = OPT_STATE[rule][0]
            how = draw(st.sampled_from(["wrong shape", "float32 for float64", "a list", "on strict", "int64"]))
            config[key] = STATE_CHANGES[how](np.zeros(shape, dtype))
            changes.append(f"state {key} {how}")
            touched.append(key)
        elif what in ("w", "dw"):
            how = draw(st.sampled_from(["int64", "a list", "None", "one axis more", "float32 (others not)",
                                        "read-only", "non-contiguous view", "transposed", "a NaN", "on strict",
                                        "0-d", "a float", "both int64"]))
            if how == "both int64":
                w, dw = (np.asarray(a * 3, dtype=np.int64) for a in (w, dw)) if backend_name(w) == "numpy" \
                    and backend_name(dw) == "numpy" else (w, dw)
                changes.append("w and dw int64")
                touched += ["w", "dw"]
                continue
            changed = _changed_array(what, w if what == "w" else dw, how)
            if changed is None and how != "None":
                continue
            if what == "w":
                w = changed
            else:
                dw = changed
            changes.append(f"{what} {how}")
            touched.append(what)
        elif what == "config":
            config = draw(st.sampled_from([None, [("learning_rate", 0.1)], "adam", 0.1]))
            changes.append(f"config={config!r}")
            touched.append("config")
        elif what == "strict":
            try:
                w, dw = _strict(w), _strict(dw)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(config, dict):
                config = {k: (_strict(v) if isinstance(v, np.ndarray) else v) for k, v in config.items()}
            changes.append("all on strict")
    fn = getattr(OPTIM, rule)
    label = f"{rule}({dtype}, w {shape}): {', '.join(changes) or 'as documented'}"
    arrays = [v for v in (w, dw, *(config.values() if isinstance(config, dict) else ())) if backend_name(v)]
    try:
        with np.errstate(all="ignore"):
            expected = ref_update(rule, w, dw, copy.deepcopy(config) if isinstance(config, dict) else config)
        if isinstance(w, np.ndarray) and not w.flags.writeable:
            raise Invalid("w", "read-only", "writeable")
        huge = any(_is_real(v) and abs(v) > 1e30 for v in config.values()) if isinstance(config, dict) else False
        expect = Either() if huge else Accept(_update_check(w, expected, dtype_name(w)))  # (overflow in float32)
        inputs = tuple(a for a in arrays if a is not w and not any(a is v for v in (config or {}).values()))
    except Invalid as exc:
        expect = Refuse(*exc.names, *touched, "gradient", "parameter")
        inputs = tuple(arrays)  # nothing changes when the call is refused
    return Case(label, lambda: fn(w, dw, config), expect, inputs)


# --- family: models and nn ---------------------------------------------------------------------

from gpunet import models as MODELS  # noqa: E402
from gpunet import nn as NN  # noqa: E402

SIZE_VALUES = [1, 3, np.int64(4), np.int32(2), np.uint8(5), 0, -1, 3.5, np.float64(3.0), "4", None, True,
               2**70, [3]]
SCALE_VALUES = ["he", "xavier", 1e-2, 0, np.float32(0.1), 1, -0.1, NAN, INF, "He", None, True, "1e-3"]
DTYPE_VALUES = ["float32", "float64", np.float32, np.dtype("float64"), "float16", np.float16, "float", "int32",
                np.int64, None, "f4", np.longdouble, "complex64", "bfloat16"]
SEED_VALUES = [None, 0, 7, np.int64(3), np.random.default_rng(1), np.random.SeedSequence(2), -1, 1.5, "abc",
               True, np.random.RandomState(0), 2**70]


def size_arg(name, v):
    return int_arg(name, v, 1)


def scale_arg(name, v):
    if isinstance(v, str):
        if v not in ("he", "xavier"):
            raise Invalid(name)
        return v
    return real_arg(name, v, low=0.0)


def dtype_arg(name, v):
    try:
        d = None if v is None else np.dtype(v)
    except TypeError:
        d = None
    if d is None or d.name not in ("float16", "float32", "float64"):
        raise Invalid(name)
    return d.name


def seed_arg(name, v):
    if v is None or isinstance(v, (np.random.Generator, np.random.SeedSequence)):
        return v
    return int_arg(name, v, 0)


def choice_arg(name, v, choices):
    """``v`` if it is one of ``choices`` (of its type: 1 is not True; a NumPy bool is a bool)."""
    v = bool(v) if isinstance(v, np.bool_) else v
    if not any(v is c or (type(v) is type(c) and v == c) for c in choices):
        raise Invalid(name)
    return v


# constructor -> {argument: (values, checker)}, and a function of the checked arguments giving
# the expected parameter shapes
MODEL_ARGS = {
    "TwoLayerNet": {
        "input_dim": (SIZE_VALUES, size_arg), "hidden_dim": (SIZE_VALUES, size_arg),
        "num_classes": (SIZE_VALUES, size_arg), "weight_scale": (SCALE_VALUES, scale_arg),
        "reg": (OPT_VALUES, lambda n, v: real_arg(n, v, low=0.0)),
        "activation": (["relu", "sigmoid", "tanh", "ReLU", None, 1],
                       lambda n, v: choice_arg(n, v, ("relu", "sigmoid"))),
        "dtype": (DTYPE_VALUES, dtype_arg), "seed": (SEED_VALUES, seed_arg)},
    "LogisticClassifier": {
        "num_features": (SIZE_VALUES, size_arg), "weight_scale": (SCALE_VALUES, scale_arg),
        "reg": (OPT_VALUES, lambda n, v: real_arg(n, v, low=0.0)), "dtype": (DTYPE_VALUES, dtype_arg),
        "seed": (SEED_VALUES, seed_arg)},
    "FullyConnectedNet": {
        "hidden_dims": ([[4], [3, 2], (5,), [np.int64(2)], [], [0], [-1], 100, "12", [2.5], None, [True], [[3]]],
                        None),
        "input_dim": (SIZE_VALUES, size_arg), "num_classes": (SIZE_VALUES, size_arg),
        "dropout_keep_ratio": (POOLS["p"], None),
        "normalization": ([None, "batchnorm", "layernorm", "groupnorm", "BatchNorm", "", 1],
                          lambda n, v: choice_arg(n, v, (None, "batchnorm", "layernorm"))),
        "reg": (OPT_VALUES, lambda n, v: real_arg(n, v, low=0.0)), "weight_scale": (SCALE_VALUES, scale_arg),
        "dtype": (DTYPE_VALUES, dtype_arg), "seed": (SEED_VALUES, seed_arg)},
    "ThreeLayerConvNet": {
        "input_dim": ([(1, 4, 4), [2, 6, 4], (np.int64(1), 4, 4), (1, 5, 4), (1, 4), (0, 4, 4), 4, "144", None,
                       (1, 4.0, 4), (1, -4, 4)], None),
        "num_filters": (SIZE_VALUES, size_arg), "filter_size": ([1, 3, np.int64(3), 2, 0, -3, 3.0, None], None),
        "hidden_dim": (SIZE_VALUES, size_arg), "num_classes": (SIZE_VALUES, size_arg),
        "weight_scale": (SCALE_VALUES, scale_arg), "reg": (OPT_VALUES, lambda n, v: real_arg(n, v, low=0.0)),
        "dtype": (DTYPE_VALUES, dtype_arg), "seed": (SEED_VALUES, seed_arg)},
}
MODEL_BASE = {
    "TwoLayerNet": {"input_dim": 5, "hidden_dim": 4, "num_classes": 3},
    "LogisticClassifier": {"num_features": 5},
    "FullyConnectedNet": {"hidden_dims": [4, 3], "input_dim": 5, "num_classes": 3},
    "ThreeLayerConvNet": {"input_dim": (2, 4, 4), "num_filters": 3, "filter_size": 3, "hidden_dim": 4,
                          "num_classes": 3},
}
MODEL_DEFAULTS = {"weight_scale": 1e-3, "reg": 0.0, "dtype": "float32", "seed": None, "activation": "relu",
                  "dropout_keep_ratio": 1, "normalization": None}


def model_shapes(name, kw):
    """Expected parameter shapes of a model built with keywords ``kw`` (checked here), or Invalid."""
    args = {**MODEL_DEFAULTS, **MODEL_BASE[name], **kw}
    spec = MODEL_ARGS[name]
    checked = {k: spec[k][1](k, v) for k, v in args.items() if k in spec and spec[k][1] is not None}
    if name == "FullyConnectedNet":
        keep = real_arg("dropout_keep_ratio", args["dropout_keep_ratio"], low=0.0, high=1.0, low_open=True)
        if 1 / keep > np.finfo(checked["dtype"]).max:
            raise Invalid("dropout_keep_ratio")  # its scale 1/p overflows the model's dtype
        hd = args["hidden_dims"]
        if not isinstance(hd, (list, tuple)):
            raise Invalid("hidden_dims")
        hidden = [size_arg(f"hidden_dims[{i}]", v) for i, v in enumerate(hd)]
        dims = [checked["input_dim"], *hidden, checked["num_classes"]]
        shapes = {}
        for i in range(1, len(dims)):
            shapes[f"W{i}"], shapes[f"b{i}"] = (dims[i - 1], dims[i]), (dims[i],)
            if checked["normalization"] and i < len(dims) - 1:
                shapes[f"gamma{i}"] = shapes[f"beta{i}"] = (dims[i],)
        _huge(dims)
        return checked, shapes
    if name == "ThreeLayerConvNet":
        d = args["input_dim"]
        if not (isinstance(d, (tuple, list)) and len(d) == 3):
            raise Invalid("input_dim")
        c, h, w = (size_arg(f"input_dim[{i}]", v) for i, v in enumerate(d))
        fs = int_arg("filter_size", args["filter_size"], 1)
        if fs % 2 == 0:
            raise Invalid("filter_size")
        if h % 2 or w % 2:
            raise Invalid("input_dim", "height", "width")
        f, hid, k = checked["num_filters"], checked["hidden_dim"], checked["num_classes"]
        _huge([c, h, w, f, hid, k, f * h * w // 4])
        return checked, {"W1": (f, c, fs, fs), "b1": (f,), "W2": (f * h * w // 4, hid), "b2": (hid,),
                         "W3": (hid, k), "b3": (k,)}
    if name == "LogisticClassifier":
        _huge([checked["num_features"]])
        return checked, {"W": (checked["num_features"], 1), "b": (1,)}
    dims = [checked["input_dim"], checked["hidden_dim"], checked["num_classes"]]
    _huge(dims)
    return checked, {"W1": tuple(dims[:2]), "b1": (dims[1],), "W2": tuple(dims[1:]), "b2": (dims[2],)}


def _huge(dims):
    if any(d > 10**5 for d in dims) or math.prod(dims) > 10**9:
        raise Unspecified(huge=True)  # a model of that size: built, or a MemoryError up front


def _model_check(name, kw, checked, shapes, data):
    def check(model):
        params = model.params
        got = {k: tuple(v.shape) for k, v in params.items()}
        if got != shapes:
            return f"parameters {got}, expected {shapes}"
        for k, v in params.items():
            host = gpunet.to_numpy(v)
            if host.dtype.name != checked["dtype"]:
                return f"{k} has dtype {host.dtype}, expected {checked['dtype']}"
            if not np.isfinite(host).all():
                return f"{k} is not finite"
            if k.startswith("b") and k[1:].isdigit() and np.any(host != 0):
                return f"bias {k} does not start at 0"
        if _is_int(kw.get("seed")):  # the same seed, the same model
            again = getattr(MODELS, name)(**{**MODEL_BASE[name], **kw})
            if any(not np.array_equal(gpunet.to_numpy(params[k]), gpunet.to_numpy(again.params[k])) for k in params):
                return "the same seed gave other parameters"
        if checked["dtype"] == "float16":
            return None
        shape = (3, *((kw.get("input_dim") or MODEL_BASE[name]["input_dim"]) if name == "ThreeLayerConvNet"
                      else (shapes.get("W1", shapes.get("W"))[0],)))
        X = data.standard_normal(shape)
        scores = model.loss(X)
        classes = 2 if name == "LogisticClassifier" else shapes[max((k for k in shapes if k.startswith("W")),
                                                                     key=lambda k: int(k[1:] or 0))][-1]
        if tuple(scores.shape) != (3, classes):
            return f"scores of shape {tuple(scores.shape)}, expected {(3, classes)}"
        if name == "TwoLayerNet":
            p = {k: gpunet.to_numpy(v).astype(np.float64) for k, v in params.items()}
            act = (lambda a: np.maximum(a, 0)) if checked.get("activation", "relu") == "relu" else _sigmoid
            expected = act(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            wrong = close(scores, expected, checked["dtype"], "scores")
            if wrong:
                return wrong
        y = data.integers(0, classes, 3)
        loss, grads = model.loss(X, y)
        moderate = checked.get("reg", 0) <= 1e3 and (isinstance(checked.get("weight_scale"), str)
                                                     or checked.get("weight_scale", 0) <= 1e3)
        if set(grads) != set(shapes) or (moderate and not np.isfinite(float(gpunet.to_numpy(loss)))):
            return f"loss {loss}, grads for {sorted(grads)}"
        return None

    return check


@st.composite
def model_constructor_cases(draw):
    """A model built with 1-3 of its arguments drawn from values good and bad."""
    name = draw(st.sampled_from(sorted(MODEL_ARGS)))
    spec = MODEL_ARGS[name]
    kw = {}
    for key in draw(st.lists(st.sampled_from(sorted(spec)), min_size=1, max_size=3, unique=True)):
        kw[key] = draw(st.sampled_from(spec[key][0]))
    label = f"{name}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
    data = np.random.default_rng(0)
    try:
        checked, shapes = model_shapes(name, kw)
        expect = Accept(_model_check(name, kw, checked, shapes, data))
    except Invalid as exc:
        expect = Refuse(*exc.names, *kw)
    except Unspecified as exc:
        expect = Either(names=(*kw, "shape", "sizes"), huge=exc.huge)
    return Case(label, lambda: getattr(MODELS, name)(**{**MODEL_BASE[name], **kw}), expect)


# Layer objects: constructor -> (base arguments, {argument: (values, checker)}), checked the same way.
NN_ARGS = {
    "Linear": ({"in_features": 4, "out_features": 3},
               {"in_features": (SIZE_VALUES, size_arg), "out_features": (SIZE_VALUES, size_arg),
                "init": (SCALE_VALUES, scale_arg), "dtype": (DTYPE_VALUES, dtype_arg),
                "rng": (SEED_VALUES, seed_arg), "bias": ([True, False, np.bool_(False), 1, "no", None],
                                                         lambda n, v: choice_arg(n, v, (True, False)))}),
    "Conv2d": ({"in_channels": 2, "out_channels": 3, "kernel_size": 3},
               {"in_channels": (SIZE_VALUES, size_arg), "out_channels": (SIZE_VALUES, size_arg),
                "kernel_size": (POOLS["window"] + _PAIRS, lambda n, v: pair_arg(n, v, 1)),
                "stride": (POOLS["stride"], lambda n, v: pair_arg(n, v, 1)),
                "pad": (POOLS["pad"], lambda n, v: None if v is None else pair_arg(n, v, 0)),
                "padding": (POOLS["pad"], lambda n, v: None if v is None else pair_arg(n, v, 0)),
                "init": (SCALE_VALUES, scale_arg), "dtype": (DTYPE_VALUES, dtype_arg)}),
    "MaxPool2d": ({"kernel_size": 2}, {"kernel_size": (POOLS["window"] + _PAIRS, lambda n, v: pair_arg(n, v, 1)),
                                       "stride": (POOLS["stride"],
                                                  lambda n, v: None if v is None else pair_arg(n, v, 1))}),
    "AvgPool2d": ({"kernel_size": 2}, {"kernel_size": (POOLS["window"] + _PAIRS, lambda n, v: pair_arg(n, v, 1))}),
    "LeakyReLU": ({}, {"negative_slope": (POOLS["slope"], lambda n, v: real_arg(n, v, low=0.0))}),
    "BatchNorm": ({"num_features": 3}, {"num_features": (SIZE_VALUES, size_arg),
                                        "momentum": (POOLS["momentum"], lambda n, v: real_arg(n, v, low=0.0, high=1.0)),
                                        "eps": (POOLS["eps"], lambda n, v: real_arg(n, v, low=0.0, low_open=True)),
                                        "dtype": (DTYPE_VALUES, dtype_arg)}),
    "LayerNorm": ({"num_features": 3}, {"num_features": (SIZE_VALUES, size_arg),
                                        "eps": (POOLS["eps"], lambda n, v: real_arg(n, v, low=0.0, low_open=True))}),
    "Dropout": ({}, {"keep_prob": (POOLS["p"], lambda n, v: real_arg(n, v, low=0.0, high=1.0, low_open=True)),
                     "rng": (SEED_VALUES, seed_arg), "p": ([0.5, 0.2], None)}),
}


@st.composite
def nn_constructor_cases(draw):
    """A layer object built with 1-2 arguments drawn from values good and bad."""
    name = draw(st.sampled_from(sorted(NN_ARGS)))
    base, spec = NN_ARGS[name]
    kw = {k: draw(st.sampled_from(spec[k][0]))
          for k in draw(st.lists(st.sampled_from(sorted(spec)), min_size=1, max_size=2, unique=True))}
    args = {**base, **kw}
    try:
        sizes = [v for k, v in args.items() if k in ("in_features", "out_features", "in_channels", "out_channels",
                                                     "num_features", "kernel_size") and _is_int(v)]
        if any(v > 10**5 for v in sizes):
            raise Unspecified(huge=True)
        for k, v in args.items():
            if spec[k][1] is None:  # Dropout(p=...): PyTorch's meaning, refused with the translation
                raise Invalid("p", "keep_prob")
            spec[k][1](k, v)
        if args.get("pad") is not None and args.get("padding") is not None:
            raise Invalid("pad", "padding")
        expect = Accept()
    except Invalid as exc:
        expect = Refuse(*exc.names, *kw)
    except Unspecified as exc:
        expect = Either(names=(*kw, "shape", "sizes"), huge=exc.huge)
    label = f"nn.{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    return Case(label, lambda: getattr(NN, name)(**args), expect)


def _small_models():
    """name -> a function building a small model and an input X (N, ...) for it."""
    return {
        "TwoLayerNet": (lambda: MODELS.TwoLayerNet(5, 4, 3, seed=0), (4, 5)),
        "FullyConnectedNet+batchnorm": (lambda: MODELS.FullyConnectedNet([4], input_dim=5, num_classes=3,
                                                                        normalization="batchnorm", seed=0), (4, 5)),
        "FullyConnectedNet+dropout": (lambda: MODELS.FullyConnectedNet([4], input_dim=5, num_classes=3,
                                                                      dropout_keep_ratio=0.5, seed=0), (4, 5)),
        "ThreeLayerConvNet": (lambda: MODELS.ThreeLayerConvNet((2, 4, 4), 3, 3, 4, 3, seed=0), (4, 2, 4, 4)),
        "LogisticClassifier": (lambda: MODELS.LogisticClassifier(5, seed=0), (4, 5)),
        "nn.Classifier": (lambda: NN.Classifier(NN.Sequential(
            NN.Linear(5, 4, rng=0), NN.BatchNorm(4), NN.ReLU(), NN.Dropout(0.8), NN.Linear(4, 3, rng=1)), seed=0),
                          (4, 5)),
    }


#: How a model's samples X are changed (some of these must still work): name -> function of X.
X_CHANGES = {
    "wrong features": lambda X: X[..., :-1], "int64": lambda X: (X * 3).astype(np.int64),
    "float64": lambda X: X.astype(np.float64), "a list": lambda X: X.tolist(), "None": lambda X: None,
    "on strict": _strict, "1-D": lambda X: X.reshape(-1), "empty": lambda X: X[:0], "a NaN": lambda X: _with(X, NAN),
    "transposed": lambda X: X.T, "one sample": lambda X: X[:1], "0-d": lambda X: np.asarray(1.0),
    "bool": lambda X: X > 0, "complex": lambda X: X.astype(np.complex64),
    "non-contiguous view": lambda X: np.repeat(X, 2, axis=-1)[..., ::2],
}


@st.composite
def model_call_cases(draw):
    """``loss(X)``, ``loss(X, y)``, ``predict`` or a ``params`` assignment on a small model,
    with X, y or the assigned array spoiled."""
    models = _small_models()
    name = draw(st.sampled_from(sorted(models)))
    build, shape = models[name]
    model = build()
    data = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = data.standard_normal(shape).astype(np.float32)
    classes = 2 if name == "LogisticClassifier" else 3
    y = data.integers(0, classes, shape[0])
    call = draw(st.sampled_from(["scores", "loss", "loss", "predict", "assign"]))
    changes, touched = [], []
    if call == "assign":
        key = draw(st.sampled_from(sorted(model.params) + ["W9", "nope"]))
        old = model.params.get(key)
        base = np.zeros(tuple(old.shape) if old is not None else (2,), np.float32)
        how = draw(st.sampled_from(["float64", "wrong shape", "a list", "None", "int32", "on strict",
                                    "float32 (same)", "read-only float32", "NaN"]))
        value = {"float64": lambda: base.astype(np.float64), "wrong shape": lambda: base[None],
                 "a list": base.tolist, "None": lambda: None, "int32": lambda: base.astype(np.int32),
                 "on strict": lambda: _strict(base), "float32 (same)": lambda: base.copy(),
                 "read-only float32": lambda: _read_only(base), "NaN": lambda: base + np.float32(NAN)}[how]()
        valid = old is not None and (how in ("float32 (same)", "read-only float32", "NaN")
                                     or how == "on strict" and name == "nn.Classifier")  # (any backend, by design)
        snapshot = {k: np.array(gpunet.to_numpy(v)) for k, v in model.params.items()}

        def unchanged():
            now = {k: gpunet.to_numpy(v) for k, v in model.params.items()}
            return None if all(_same_array(snapshot[k], now[k]) for k in snapshot) else "a parameter changed"

        def assign():
            model.params[key] = value

        label = f"{name}.params[{key!r}] = {how}"
        expect = Accept() if valid else Refuse(key, "params", "parameter", "float32", "strict", "numpy")
        return Case(label, assign, expect, after=unchanged)
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["X", "X", "y"] if call == "loss" else ["X"]))
        if what == "X":
            how = draw(st.sampled_from(sorted(X_CHANGES)))
            try:
                X = X_CHANGES[how](X)
            except Exception:  # noqa: BLE001 - not applicable to this X
                continue
        else:
            how = draw(st.sampled_from(sorted(LABEL_CHANGES)))
            try:
                y = LABEL_CHANGES[how](y, classes)
            except Exception:  # noqa: BLE001
                continue
        changes.append(f"{what} {how}")
        touched.append(what)
    batch = None
    if call == "predict" and draw(st.booleans()):
        batch = draw(st.sampled_from([1, 2, np.int64(3), 0, -1, 1.5, None, True, "2", 10**12]))
        changes.append(f"batch_size={batch!r}")
        touched.append("batch_size")
    label = f"{name}.{call}: {', '.join(changes) or 'as documented'}"
    expect = _model_call_expectation(name, model, call, X, y, batch, shape, classes, touched)
    run = {"scores": lambda: model.loss(X), "loss": lambda: model.loss(X, y),
           "predict": lambda: model.predict(X) if batch is None else model.predict(X, batch_size=batch)}[call]
    return Case(label, run, expect, tuple(a for a in (X, y) if backend_name(a)))


def _model_call_expectation(name, model, call, X, y, batch, shape, classes, touched):
    """What a model call must do, by the model contract: X (N, *shape[1:]) of real numbers
    (cast to the model's dtype, as CS231n's X.astype) on the model's backend; labels as the
    class losses take them; batch_size an int >= 1."""
    names = (*touched, "X", "x", "y", "labels", "numpy", "strict")
    if call == "predict" and getattr(X, "ndim", 0) >= 1 and X.shape[0] == 0:
        return Either(names=names)  # nothing to predict: no sample is looked at
    b = backend_name(X)
    if b is None or (b != "numpy" and call != "predict") or dtype_name(X)[:3] not in ("flo", "int", "uin", "boo") \
            or tuple(X.shape[1:]) != tuple(shape[1:]):
        return Refuse(*names)  # (predict moves X onto the model's backend itself)
    if call == "loss" and y is None:
        call = "scores"  # loss(X, None) is the scores call
    if call == "predict" and batch is not None:
        int_arg("batch_size", batch, 1) if _is_int(batch) and batch >= 1 else None
        if not (_is_int(batch) and batch >= 1):
            return Refuse(*names)
    n = X.shape[0]
    X = gpunet.to_numpy(X)
    if call == "loss":
        if backend_name(y) != "numpy" or y.dtype.kind not in "iu" or y.shape != (n,) or \
                (n and (y.min() < 0 or y.max() >= classes)):
            return Refuse(*names)
        if n < 2 and "batchnorm" in name.lower() or name == "nn.Classifier" and n < 2:
            return Either(names=names)  # batch statistics of one sample
        if n == 0:
            return Either(names=names)  # the mean loss of no samples

    def check(result):
        if call == "predict":
            host = gpunet.to_numpy(result)
            if host.shape != (n,) or host.dtype != np.int64 or (n and (host.min() < 0 or host.max() >= classes)):
                return f"predict gave {host.dtype} {host.shape} with values outside [0, {classes})"
            return None
        if call == "scores":
            host = gpunet.to_numpy(result)
            if host.shape != (n, classes):
                return f"scores of shape {host.shape}, expected {(n, classes)}"
            if np.isfinite(X.astype(np.float64)).all() and not np.isfinite(host).all():
                return "non-finite scores for finite X"
            return None
        loss, grads = result
        if set(grads) != set(model.params):
            return f"grads for {sorted(grads)}, params {sorted(model.params)}"
        if np.isfinite(X.astype(np.float64)).all() and not np.isfinite(float(gpunet.to_numpy(loss))):
            return f"loss {loss} for finite X"
        return None

    return Accept(check)


# --- family: Solver ----------------------------------------------------------------------------

from gpunet.solver import Solver  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="gpunet-hostile-"))  # the files the families write
atexit.register(shutil.rmtree, _TMP, True)


def solver_data(seed_: int = 0) -> dict:
    data = np.random.default_rng(seed_)
    X = data.standard_normal((30, 4)).astype(np.float32)
    y = data.integers(0, 3, 30)
    return {"X_train": X[:20], "y_train": y[:20], "X_val": X[20:], "y_val": y[20:]}


def _solver_model():
    return MODELS.TwoLayerNet(4, 5, 3, weight_scale=0.1, seed=0)


# keyword -> (values, checker raising Invalid); None: the value is valid as it is
SOLVER_ARGS = {
    "update_rule": (["sgd", "adam", "adamw", "rmsprop", "Adam", "lbfgs", "", None, 3, OPTIM.sgd,
                     lambda w, dw, c: (w, c)],
                    lambda n, v: v if callable(v) else choice_arg(n, v, tuple(OPT_DEFAULTS))),
    "optim_config": ([{}, {"learning_rate": 0.01}, {"learning_rate": np.float32(0.01)}, {"lr": 0.1},
                      {"learning_rate": NAN}, {"learning_rate": -1}, {"learning_rate": "0.1"}, None,
                      [("learning_rate", 0.1)], {"momentum": 0.9}, {"beta1": 1.0}], None),
    "lr_decay": ([1.0, 0.5, np.float32(0.9), 0, -1, NAN, INF, "0.9", None, True], lambda n, v: real_arg(n, v, low=0.0)),
    "batch_size": ([1, 5, np.int64(7), 10**9, 0, -1, 1.5, True, "5", None], lambda n, v: int_arg(n, v, 1)),
    "num_epochs": ([0, 1, 2, np.int64(1), -1, 1.5, None, True, "1"], lambda n, v: int_arg(n, v, 0)),
    "num_train_samples": ([None, 5, np.int32(10), 0, -5, 2.0, "all"],
                          lambda n, v: None if v is None else int_arg(n, v, 1)),
    "num_val_samples": ([None, 3, 0, 1.5], lambda n, v: None if v is None else int_arg(n, v, 1)),
    "print_every": ([None, 1, 3, 0, -1, 1.5, True], lambda n, v: None if v is None else int_arg(n, v, 1)),
    "verbose": ([False, np.bool_(False), "yes", 1, None], lambda n, v: choice_arg(n, v, (False, True))),
    "checkpoint_name": ([None, "CKPT", 3, "", "/", "/proc/nope/run", "DIR"], None),
    "keep_every": ([None, 1, 0, -1, True, 1.5], lambda n, v: None if v is None else int_arg(n, v, 1)),
    "patience": ([None, 1, np.int64(2), 0, -1, 1.5, "3"], lambda n, v: None if v is None else int_arg(n, v, 1)),
    "monitor": (["val_acc", "val_loss", "acc", None, "loss"], lambda n, v: choice_arg(n, v, ("val_acc", "val_loss"))),
    "lr_schedule": ([None, "step", "cosine", "constant", "linear", 3, lambda e: 0.5], None),
    "warmup_iters": ([0, 2, np.int64(1), -1, 1.5, None], lambda n, v: int_arg(n, v, 0)),
    "seed": ([None, 0, np.int64(5), -1, "abc", 1.5, True, 2**70], lambda n, v: None if v is None else int_arg(n, v, 0)),
    "eval_batch_size": ([5, 100, 0, -1, None, 2.5], lambda n, v: int_arg(n, v, 1)),
    "drop_last": ([False, True, "no", 1, None], lambda n, v: choice_arg(n, v, (False, True))),
    "restore_best": ([True, False, 1, "yes"], lambda n, v: choice_arg(n, v, (False, True))),
    "progress": (["auto", True, False, "x", None, 1], lambda n, v: choice_arg(n, v, ("auto", True, False))),
    "comm": ([None, object(), "mpi", 1], lambda n, v: choice_arg(n, v, (None,))),
    "run_info": ([None, {"a": 1}, {"a": {1, 2}}, {"a": object()}, "text", [1, 2]],
                 lambda n, v: v if v is None or _json_ok(v) else (_ for _ in ()).throw(Invalid(n))),
    "resume": ([None, "MISSING", "GARBAGE", "DIR"], None),
    "learning_rate": ([0.1], None),
}


def _json_ok(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _solver_kw_expectation(kw) -> None:
    """Raise Invalid for Solver keywords the documented rules refuse."""
    for k, v in kw.items():
        check = SOLVER_ARGS[k][1]
        if check is not None:
            check(k, v)
    oc = kw.get("optim_config", {})
    if not isinstance(oc, dict):
        raise Invalid("optim_config")
    rule = kw.get("update_rule", "sgd")
    if not callable(rule):
        ref_update(rule, np.zeros(2), np.zeros(2), oc)  # the keys and values the rule takes
    sched = kw.get("lr_schedule")
    if not (sched is None or callable(sched) or sched in ("step", "cosine", "constant")):
        raise Invalid("lr_schedule")
    if kw.get("lr_decay", 1.0) != 1.0 and sched not in (None, "step"):
        raise Invalid("lr_decay", "lr_schedule")
    if kw.get("keep_every") is not None and kw.get("checkpoint_name") is None:
        raise Unspecified  # keep_every without checkpoints: ignored or refused
    name = kw.get("checkpoint_name")
    if name is not None and (not isinstance(name, str) or name in ("", "/") or name.startswith("/proc")):
        raise Invalid("checkpoint_name")
    if "learning_rate" in kw:
        raise Invalid("learning_rate", "Unrecognized")
    if kw.get("resume") is not None:
        raise Invalid("resume", "checkpoint")


def _solver_paths(kw, where: Path) -> dict:
    paths = {"CKPT": str(where / "run"), "DIR": str(where), "MISSING": str(where / "missing.npz")}
    garbage = where / "garbage.npz"
    garbage.write_bytes(b"not a checkpoint")
    paths["GARBAGE"] = str(garbage)
    return {k: paths.get(v, v) if isinstance(v, str) and k in ("checkpoint_name", "resume") else v
            for k, v in kw.items()}


DATA_CHANGES = {
    "X_train a list": lambda d: {**d, "X_train": d["X_train"].tolist()},
    "y_train float": lambda d: {**d, "y_train": d["y_train"].astype(np.float64)},
    "y_train out of range": lambda d: {**d, "y_train": _set(d["y_train"], 3)},
    "y_val negative": lambda d: {**d, "y_val": _set(d["y_val"], -1)},
    "y_train (N, 1)": lambda d: {**d, "y_train": d["y_train"][:, None]},
    "y_train one short": lambda d: {**d, "y_train": d["y_train"][:-1]},
    "X_val wrong features": lambda d: {**d, "X_val": d["X_val"][:, :3]},
    "X_train empty": lambda d: {**d, "X_train": d["X_train"][:0], "y_train": d["y_train"][:0]},
    "X_val empty": lambda d: {**d, "X_val": d["X_val"][:0], "y_val": d["y_val"][:0]},
    "a NaN in X_train": lambda d: {**d, "X_train": _with(d["X_train"], NAN)},
    "a NaN in X_val": lambda d: {**d, "X_val": _with(d["X_val"], NAN)},
    "an inf in X_val": lambda d: {**d, "X_val": _with(d["X_val"], INF)},
    "no y_val": lambda d: {k: v for k, v in d.items() if k != "y_val"},
    "X_train int": lambda d: {**d, "X_train": (d["X_train"] * 10).astype(np.int64)},
    "X float64": lambda d: {**d, "X_train": d["X_train"].astype(np.float64), "X_val": d["X_val"].astype(np.float64)},
    "all on strict": lambda d: {k: (_strict(v) if k.startswith("X") else _strict_int(v)) for k, v in d.items()},
    "extra keys": lambda d: {**d, "X_test": d["X_val"], "y_test": d["y_val"], "mean": 0.0},
    "a list of arrays": lambda d: list(d.values()),
    "None": lambda d: None,
    "y_train bool": lambda d: {**d, "y_train": d["y_train"] > 0},
    "y_train strings": lambda d: {**d, "y_train": d["y_train"].astype(str)},
    "X_train 1-D": lambda d: {**d, "X_train": d["X_train"][:, 0]},
    "X_train complex": lambda d: {**d, "X_train": d["X_train"].astype(np.complex64)},
    "one sample": lambda d: {**d, "X_train": d["X_train"][:1], "y_train": d["y_train"][:1]},
}


def ref_solver_data(data, classes=3, features=(4,)) -> None:
    """Invalid unless ``data`` is what the Solver documents: a dict with X_train, y_train,
    X_val, y_val arrays (any backend), X of real numbers, finite, of the model's sample shape,
    labels integers (N,) in [0, classes), and at least one row per split."""
    if not isinstance(data, dict):
        raise Invalid("data")
    for k in ("X_train", "y_train", "X_val", "y_val"):
        if k not in data or backend_name(data[k]) is None:
            raise Invalid("data", k)
    for split in ("train", "val"):
        X, y = (gpunet.to_numpy(data[f"{v}_{split}"]) for v in "Xy")
        if X.dtype.kind not in "biuf" or X.ndim < 1 or X.shape[1:] != features or X.shape[0] == 0:
            raise Invalid("data", f"X_{split}", f"y_{split}")
        if not np.isfinite(X.astype(np.float64)).all():
            raise Invalid("data", f"X_{split}")
        if y.dtype.kind not in "iu" or y.shape != (X.shape[0],) or y.min() < 0 or y.max() >= classes:
            raise Invalid("data", f"y_{split}", f"X_{split}", "labels")


def _train_check(kw, model):
    before = {k: np.array(gpunet.to_numpy(v)) for k, v in model.params.items()}

    def check(solver):
        epochs = int(kw.get("num_epochs", 10))
        h = solver.history
        if not solver.stopped_early and len(h["val_acc"]) != epochs:
            return f"{len(h['val_acc'])} epochs in the history, {epochs} asked for"
        if any(not 0 <= a <= 1 for a in h["val_acc"] + h["train_acc"]):
            return "an accuracy outside [0, 1]"
        if len(h["loss"]) != solver.iteration:
            return f"{len(h['loss'])} losses for {solver.iteration} iterations"
        now = {k: gpunet.to_numpy(v) for k, v in model.params.items()}
        if any(not np.isfinite(v).all() for v in now.values()):
            return "non-finite parameters after training"
        return None

    return check, before


@st.composite
def solver_cases(draw):
    """A Solver built and trained (1-2 epochs of 20 samples) with spoiled data or keywords."""
    data = solver_data(draw(st.integers(0, 100)))
    kw: dict = {"num_epochs": 1, "batch_size": 5, "verbose": False}
    changes, touched = [], []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 2)) == 0:
            how = draw(st.sampled_from(sorted(DATA_CHANGES)))
            if isinstance(data, dict):
                try:
                    data = DATA_CHANGES[how](data)
                except Exception:  # noqa: BLE001
                    continue
                changes.append(f"data: {how}")
                touched += re.findall(r"[Xy]_(?:train|val)", how) or ["data"]
        else:
            key = draw(st.sampled_from(sorted(SOLVER_ARGS)))
            kw[key] = draw(st.sampled_from(SOLVER_ARGS[key][0]))
            changes.append(f"{key}={kw[key]!r}")
            touched.append(key)
    where = Path(tempfile.mkdtemp(dir=_TMP))
    kw = _solver_paths(kw, where)
    touched += [str(kw[k]) for k in ("resume", "checkpoint_name") if isinstance(kw.get(k), str)]  # (files named)
    model = _solver_model()
    label = f"Solver: {'; '.join(changes)}"
    try:
        _solver_kw_expectation(kw)
        ref_solver_data(data)
        if data["X_train"].shape[0] == 1 or kw.get("batch_size", 5) == 10**9:
            raise Unspecified  # one example: trained, or refused
        check, before = _train_check(kw, model)
        expect = Accept(check)
    except Invalid as exc:
        expect = Refuse(*exc.names, *touched)
    except Unspecified:
        expect = Either(names=tuple(touched))
    snapshot = {k: np.array(gpunet.to_numpy(v)) for k, v in model.params.items()}

    def run():
        solver = Solver(model, data, **kw)
        solver.train()
        return solver

    def untouched():  # a refused Solver never trains: the model is as it was
        now = {k: gpunet.to_numpy(v) for k, v in model.params.items()}
        return None if all(_same_array(snapshot[k], now[k]) for k in snapshot) else "the model's parameters changed"

    inputs = tuple(v for v in (data.values() if isinstance(data, dict) else ()) if backend_name(v))
    return Case(label, run, expect, inputs, after=untouched)


@st.composite
def check_accuracy_cases(draw):
    """``Solver.check_accuracy`` with spoiled samples, labels, num_samples or batch_size."""
    data = solver_data()
    solver = Solver(_solver_model(), data, num_epochs=0, verbose=False)
    X, y = data["X_val"], data["y_val"]
    kw = {}
    changes = []
    for key in draw(st.lists(st.sampled_from(["X", "y", "num_samples", "batch_size"]), max_size=2, unique=True)):
        if key == "X":
            how = draw(st.sampled_from(["wrong features", "a list", "empty", "None", "int"]))
            X = {"wrong features": X[:, :2], "a list": X.tolist(), "empty": X[:0], "None": None,
                 "int": X.astype(np.int64)}[how]
        elif key == "y":
            how = draw(st.sampled_from(sorted(LABEL_CHANGES)))
            try:
                y = LABEL_CHANGES[how](y, 3)
            except Exception:  # noqa: BLE001
                continue
        else:
            how = draw(st.sampled_from([None, 1, 5, np.int64(3), 0, -1, 1.5, "2", True, 10**9]))
            kw[key] = how
        changes.append(f"{key} {how!r}")
    label = f"Solver.check_accuracy: {', '.join(changes) or 'as documented'}"
    try:
        for key, v in kw.items():
            if v is not None and v != 10**9:
                int_arg(key, v, 1)
        if backend_name(X) != "numpy" or X.dtype.kind not in "iuf" or X.shape[1:] != (4,):
            raise Invalid("X")
        if X.shape[0] == 0:
            raise Unspecified  # the accuracy of nothing
        _labels(y, y, 3)  # (labels of any backend: moved like X, range-checked on the host)
        if (gpunet.to_numpy(y) >= 3).any() or (gpunet.to_numpy(y) < 0).any() or y.shape != (X.shape[0],):
            raise Invalid("y", "labels")
        expect = Accept(lambda acc: None if isinstance(acc, float) and 0 <= acc <= 1 else f"accuracy {acc!r}")
    except Invalid as exc:
        expect = Refuse(*exc.names, *kw, "X", "y", "labels")
    except Unspecified:
        expect = Either(names=("X", "y"))
    return Case(label, lambda: solver.check_accuracy(X, y, **kw), expect,
                tuple(a for a in (X, y) if backend_name(a)))


# --- family: checkpoints -----------------------------------------------------------------------

import zipfile  # noqa: E402

from gpunet.checkpoint import META_KEY  # noqa: E402

_BASE: dict = {}


def base_files() -> dict:
    """A Solver checkpoint (FullyConnectedNet with batchnorm, Adam, 1 epoch) and a model file,
    written once: {"solver": (arrays, meta), "model": (arrays, meta)} as np.load reads them."""
    if not _BASE:
        where = Path(tempfile.mkdtemp(dir=_TMP))
        model = _checkpoint_model()
        solver = Solver(model, solver_data(), num_epochs=1, batch_size=5, verbose=False,
                        update_rule="adam", checkpoint_name=str(where / "run"))
        solver.train()
        model.save(where / "model.npz")
        for kind, path in (("solver", where / "run_last.npz"), ("model", where / "model.npz")):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop(META_KEY)))
            _BASE[kind] = (arrays, meta)
    return _BASE


def _checkpoint_model(seed_=0):
    return MODELS.FullyConnectedNet([5], input_dim=4, num_classes=3, normalization="batchnorm", seed=seed_)


def npz_bytes(arrays: dict, meta, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    payload = dict(arrays)
    if meta is not None:
        payload[META_KEY] = np.array(json.dumps(meta) if not isinstance(meta, np.ndarray) else meta)
    (np.savez_compressed if compress else np.savez)(buf, **payload)
    return buf.getvalue()


def raw_member(name: str, header: dict | bytes, body: bytes, version=(1, 0)) -> tuple:
    """A zip member holding an .npy header written by hand (any claims) and ``body``."""
    if isinstance(header, dict):
        text = repr(header).encode("latin1")
        text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
        head = b"\x93NUMPY" + bytes(version) + (len(text).to_bytes(2, "little") if version == (1, 0)
                                                else len(text).to_bytes(4, "little")) + text
    else:
        head = header
    return name, head + body


def zip_bytes(members, compress_name=None, claim=None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name == compress_name else zipfile.ZIP_STORED)
    blob = bytearray(buf.getvalue())
    if claim is not None:  # rewrite the central directory's uncompressed size of the member
        at = blob.rfind(b"PK\x01\x02")
        while at >= 0:
            name_len = int.from_bytes(blob[at + 28:at + 30], "little")
            if bytes(blob[at + 46:at + 46 + name_len]) == compress_name.encode():
                blob[at + 24:at + 28] = claim.to_bytes(4, "little")
            at = blob.rfind(b"PK\x01\x02", 0, at)
    return bytes(blob)


META_VALUES = ["1", -1, 0, 1.5, None, [], {}, True, 1e308, NAN, 2**70, "adam", {"a": 1}, [1, 2], -1e-3, 5]


def ref_meta(meta, arrays, kind, explicit_rule=False) -> None:
    """Invalid unless ``meta`` (with ``arrays``) is a complete checkpoint of its kind for the
    model the loaders get, by the documented schema."""
    if not isinstance(meta, dict) or meta.get("format") != "gpunet-checkpoint" or meta.get("version") != 1:
        raise Invalid("format", "version")
    if meta.get("kind") != kind:
        raise Invalid("kind", "Solver", "model")
    required = ("update_rule", "optim_scalars", "optim_arrays", "base_lr", "schedule", "batch_size", "drop_last",
                "num_train", "param_names", "buffer_names", "best_buffer_names", "best_epoch", "best_val_acc",
                "best_val_loss", "stopped_early", "history", "rng", "eval_rng", "model_rng", "epoch", "iteration",
                "epochs_since_best") if kind == "solver" else ("model",)
    if any(k not in meta for k in required):
        raise Invalid("lacks")
    names = ["W1", "b1", "gamma1", "beta1", "W2", "b2"]
    buffers = ["bn1.running_mean", "bn1.running_var"]
    model = _checkpoint_model()
    for prefix, table in (("param/", model.params), ("buffer/", model.get_buffers())):
        for k, v in table.items():
            a = arrays.get(prefix + k)
            if a is None or a.shape != tuple(v.shape) or a.dtype != gpunet.to_numpy(v).dtype:
                raise Invalid(prefix + k)
    like = {**{f"param/{k}": v for k, v in model.params.items()},
            **{f"buffer/{k}": v for k, v in model.get_buffers().items()}}
    for name, a in arrays.items():  # best parameters and optimizer state: like their parameter
        base = re.sub(r"^best_(param|buffer)/", r"\1/", name)
        base = re.sub(r"^optim/([^/]+)/.*$", r"param/\1", base)
        if base in like and (a.shape != tuple(like[base].shape) or a.dtype != np.float32):
            raise Invalid(name)
    if kind == "model":
        spec = meta.get("model")
        if not (isinstance(spec, dict) and set(spec) == {"class", "args"}):
            raise Invalid("model")
        return
    for k in ("epoch", "iteration", "epochs_since_best"):
        int_arg(k, meta.get(k), 0)
    for k in ("batch_size", "num_train"):
        int_arg(k, meta.get(k), 1)
    if meta.get("best_epoch") is not None:
        int_arg("best_epoch", meta["best_epoch"], 1)
    real_arg("best_val_acc", meta.get("best_val_acc"), low=0.0, high=1.0)
    for k in ("drop_last", "stopped_early"):
        if not isinstance(meta.get(k), bool):
            raise Invalid(k)
    v = meta.get("best_val_loss")
    if not (_is_real(v) or v is None and False):
        raise Invalid("best_val_loss")
    if not isinstance(meta.get("update_rule"), str) or (meta["update_rule"] not in OPT_DEFAULTS and not explicit_rule):
        raise Invalid("update_rule")  # a function's name is fine when update_rule is passed again
    sched = meta.get("schedule")
    if not (sched is None or isinstance(sched, dict)
            and sched.get("type") in ("StepDecay", "Cosine", "Constant", "Warmup")):
        raise Invalid("schedule")
    if isinstance(sched, dict) and sched.get("type") == "StepDecay":
        real_arg("schedule", sched.get("decay"), low=0.0)
        int_arg("schedule", sched.get("step_size"), 1)
    if not (meta.get("monitor") is None
            or isinstance(meta["monitor"], str) and meta["monitor"] in ("val_acc", "val_loss")):
        raise Invalid("monitor")
    if meta.get("patience") is not None:
        int_arg("patience", meta["patience"], 1)
    if "world_size" in meta:
        int_arg("world_size", meta["world_size"], 1)
    if "num_epochs" in meta:
        int_arg("num_epochs", meta["num_epochs"], 0)
    history = meta.get("history")
    if not (isinstance(history, dict) and set(history) == {"loss", "train_acc", "val_acc", "val_loss", "lr"}
            and all(isinstance(h, list) and all(_is_real(x) or x is None and k == "lr" for x in h)
                    for k, h in history.items())):
        raise Invalid("history")
    for key, want in (("param_names", names), ("buffer_names", buffers)):
        if not (isinstance(meta.get(key), list) and sorted(map(str, meta[key])) == sorted(want)
                and all(isinstance(x, str) for x in meta[key])):
            raise Invalid(key)
    if meta.get("best_buffer_names") not in ([], buffers, buffers[::-1]):
        raise Invalid("best_buffer_names")
    if any(f"best_buffer/{k}" not in arrays for k in meta["best_buffer_names"]):
        raise Invalid("best_buffer")
    scalars, arrays_of, base = meta.get("optim_scalars"), meta.get("optim_arrays"), meta.get("base_lr")
    if not (isinstance(scalars, dict) and sorted(scalars) == sorted(names)
            and all(isinstance(c, dict) for c in scalars.values())):
        raise Invalid("optim_scalars")
    if not (isinstance(arrays_of, dict) and sorted(arrays_of) == sorted(names)
            and all(isinstance(c, list) for c in arrays_of.values())):
        raise Invalid("optim_arrays")
    if not (isinstance(base, dict) and sorted(base) == sorted(names)):
        raise Invalid("base_lr")
    for p in names:
        if base[p] is not None:
            real_arg("base_lr", base[p], low=0.0)
        state = {k: arrays.get(f"optim/{p}/{k}") for k in arrays_of[p]}
        if any(not isinstance(k, str) for k in arrays_of[p]) or any(a is None for a in state.values()):
            raise Invalid("optim_arrays", f"optim/{p}")
        w = np.zeros(arrays["param/" + p].shape, np.float32)
        config = {**scalars[p], **state}
        try:
            if meta["update_rule"] in OPT_DEFAULTS:
                ref_update(meta["update_rule"], w, w, config)  # the saved optimizer state must be usable
        except Invalid as exc:
            raise Invalid("optim_scalars", "optim", p, *exc.names) from None
    for k in ("rng", "eval_rng"):
        try:
            np.random.PCG64().state = meta.get(k)
        except Exception:  # noqa: BLE001
            raise Invalid(k) from None
    if meta.get("model_rng") is not None:
        try:
            np.random.PCG64().state = meta["model_rng"]
        except Exception:  # noqa: BLE001
            raise Invalid("model_rng") from None


def _meta_mutation(draw, meta):
    """``meta`` with one entry (maybe nested) replaced, deleted or added; and its description."""
    meta = copy.deepcopy(meta)
    key = draw(st.sampled_from(sorted(meta) + ["extra"]))
    how = draw(st.sampled_from(["replace", "replace", "nested", "delete"]))
    if key == "extra":
        meta["extra"] = 1
        return meta, "an extra key"
    if how == "delete":
        del meta[key]
        return meta, f"no {key!r}"
    value = draw(st.sampled_from(META_VALUES))
    if how == "nested" and isinstance(meta[key], dict) and meta[key]:
        inner = draw(st.sampled_from(sorted(meta[key])))
        if isinstance(meta[key][inner], dict) and meta[key][inner]:
            leaf = draw(st.sampled_from(sorted(meta[key][inner])))
            meta[key][inner][leaf] = value
            return meta, f"{key}[{inner!r}][{leaf!r}] = {value!r}"
        meta[key][inner] = value
        return meta, f"{key}[{inner!r}] = {value!r}"
    meta[key] = value
    return meta, f"{key} = {value!r}"


def _spec_mutation(draw, meta):
    """A model description naming another class, or constructor arguments that are wrong or huge."""
    meta = copy.deepcopy(meta)
    spec = meta["model"]
    kind = draw(st.sampled_from(["class", "args", "huge", "arg value"]))
    if kind == "class":
        spec["class"] = draw(st.sampled_from(["os.system", "builtins.eval", "gpunet.models.Nope",
                                              "gpunet._validate.ArgumentError", "gpunet.models.TwoLayerNet",
                                              "gpunet.nn.Linear", "subprocess.Popen", 3, None, "gpunet.models"]))
        return meta, f"model class {spec['class']!r}"
    if kind == "args":
        spec["args"] = draw(st.sampled_from([{}, None, [], {"hidden_dims": [5], "bogus": 1}, "x"]))
        return meta, f"model args {spec['args']!r}"
    if kind == "huge":
        size = draw(st.sampled_from([30000, 10**6, 10**9, 2**70]))
        spec["args"] = {**spec["args"], "hidden_dims": [size], "input_dim": size}
        return meta, f"model args hidden_dims=[{size}], input_dim={size}"
    key = draw(st.sampled_from(sorted(spec["args"])))
    spec["args"][key] = draw(st.sampled_from(META_VALUES))
    return meta, f"model args {key}={spec['args'][key]!r}"


def _array_mutation(draw, arrays):
    arrays = dict(arrays)
    key = draw(st.sampled_from(sorted(arrays)))
    how = draw(st.sampled_from(["wrong shape", "float64", "int32", "NaN", "missing", "extra", "0-d", "fortran",
                                "big-endian", "bool"]))
    a = arrays[key]
    if how == "missing":
        del arrays[key]
    elif how == "extra":
        arrays["param/extra"] = np.zeros(3, np.float32)
    else:
        arrays[key] = {"wrong shape": lambda: np.zeros(a.shape + (1,), a.dtype),
                       "float64": lambda: a.astype(np.float64),
                       "int32": lambda: a.astype(np.int32), "NaN": lambda: a + np.float32(NAN),
                       "0-d": lambda: np.asarray(a.reshape(-1)[0] if a.size else 0, a.dtype),
                       "fortran": lambda: np.asfortranarray(a),
                       "big-endian": lambda: a.astype(a.dtype.newbyteorder(">")),
                       "bool": lambda: a > 0}[how]()
    return arrays, f"{key}: {how}"


def _raw_file(draw, blob: bytes):
    """Damaged or crafted file contents, and their description."""
    kind = draw(st.sampled_from(["truncated", "flipped", "appended", "empty", "random", "header 2**40 floats",
                                 "header object dtype", "header v2 length 2**31", "deflate claims 4 GiB",
                                 "no members", "meta not text", "meta 2-D", "meta invalid JSON",
                                 "meta a list", "meta nested 10**5 deep", "compressed (savez_compressed)"]))
    base_arrays, base_meta = base_files()["solver"]
    if kind == "truncated":
        at = draw(st.integers(0, len(blob) - 1))
        return blob[:at], f"truncated at byte {at} of {len(blob)}"
    if kind == "flipped":
        out = bytearray(blob)
        where = sorted(draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=3)))
        for i in where:
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out), f"bytes {where} flipped"
    if kind == "appended":
        return blob + draw(st.binary(min_size=1, max_size=64)), "junk appended"
    if kind == "empty":
        return b"", "an empty file"
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200)), "random bytes"
    meta_member = (META_KEY + ".npy", npy_bytes(np.array(json.dumps(base_meta))))
    if kind == "header 2**40 floats":
        return zip_bytes([raw_member("param/W1.npy", {"descr": "<f4", "fortran_order": False, "shape": (2**40,)},
                                     b"\0" * 8), meta_member]), kind
    if kind == "header object dtype":
        return zip_bytes([raw_member("param/W1.npy", {"descr": "|O", "fortran_order": False, "shape": (2,)},
                                     b"\0" * 16), meta_member]), kind
    if kind == "header v2 length 2**31":
        return zip_bytes([raw_member("param/W1.npy", b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little"), b"{}"),
                          meta_member]), kind
    if kind == "deflate claims 4 GiB":
        return zip_bytes([("param/W1.npy", npy_bytes(np.zeros(1000, np.float32))), meta_member],
                         compress_name="param/W1.npy", claim=2**32 - 1), kind
    if kind == "no members":
        return zip_bytes([]), kind
    if kind == "meta not text":
        return npz_bytes(base_arrays, np.zeros(3)), kind
    if kind == "meta 2-D":
        return npz_bytes(base_arrays, np.array([["{}"]])), kind
    if kind == "meta invalid JSON":
        return npz_bytes(base_arrays, np.array("{'format': 1")), kind
    if kind == "meta a list":
        return npz_bytes(base_arrays, np.array("[1, 2]")), kind
    if kind == "meta nested 10**5 deep":
        return npz_bytes(base_arrays, np.array("[" * 10**5 + "]" * 10**5)), kind
    return npz_bytes(base_arrays, base_meta, compress=True), kind


def npy_bytes(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _same_state(model, arrays, prefix="param/") -> str | None:
    for k, v in model.params.items():
        if not _same_array(np.asarray(gpunet.to_numpy(v)), arrays[prefix + k]):
            return f"the loaded {k} differs from the file's"
    return None


@st.composite
def checkpoint_cases(draw):
    """A damaged or crafted checkpoint given to Solver(resume=), Solver.load_checkpoint or
    gpunet.load_model."""
    files = base_files()
    target = draw(st.sampled_from(["resume", "load_checkpoint", "load_model", "load_model last",
                                   "load_model into"]))
    kind = "model" if target.startswith("load_model") and draw(st.booleans()) else "solver"
    arrays, meta = files[kind]
    what = draw(st.sampled_from(["meta", "meta", "arrays", "raw", "raw", "spec"] if kind == "model" or
                                target.startswith("load_model") else ["meta", "meta", "arrays", "raw", "raw"]))
    if what == "spec":
        meta, change = _spec_mutation(draw, meta)
        blob = npz_bytes(arrays, meta)
    elif what == "meta":
        meta, change = _meta_mutation(draw, meta)
        blob = npz_bytes(arrays, meta)
    elif what == "arrays":
        arrays, change = _array_mutation(draw, arrays)
        blob = npz_bytes(arrays, meta)
    elif what == "raw":
        blob, change = _raw_file(draw, npz_bytes(arrays, meta))
    path = Path(tempfile.mkdtemp(dir=_TMP)) / "ck.npz"
    path.write_bytes(blob)
    names = (str(path), path.name, "checkpoint")
    label = f"{target} of a {kind} file: {change}"
    original = files[kind][0]
    prefix = "best_param/" if target == "load_model" and kind == "solver" else "param/"
    if what == "raw":
        expect = Either(lambda r: _loaded_check(r, original, prefix), names=names)  # accepted: as saved
    else:
        try:
            if target.startswith("load_model"):
                ref_meta_for_model(meta, arrays, kind, target)
            else:
                ref_meta(meta, arrays, kind, explicit_rule=target == "load_checkpoint")
            expect = Either(lambda r: None, names=names) if what == "arrays" and "NaN" in change \
                else Accept(lambda r: _loaded_check(r, arrays, prefix))
        except Invalid:
            expect = Refuse(*names)
        except Unspecified:
            expect = Either(names=names, huge=True)
    solver_box = {}
    if target == "load_checkpoint":
        solver_box["solver"] = Solver(_checkpoint_model(1), solver_data(), num_epochs=2, batch_size=5,
                                      verbose=False, update_rule="adam")
    snapshot = _solver_snapshot(solver_box.get("solver"))

    def run():
        if target == "resume":
            return Solver(_checkpoint_model(1), solver_data(), resume=path, num_epochs=2, verbose=False)
        if target == "load_checkpoint":
            solver_box["solver"].load_checkpoint(path)
            return solver_box["solver"]
        if target == "load_model into":
            return gpunet.load_model(path, "last", model=_checkpoint_model(1))
        return gpunet.load_model(path, "last" if target.endswith("last") else "best")

    def unchanged():
        return None if snapshot is None or _solver_snapshot(solver_box["solver"]) == snapshot else \
            "the Solver's state changed (a half-loaded checkpoint)"

    return Case(label, run, expect, after=unchanged)


def ref_meta_for_model(meta, arrays, kind, target):
    """What gpunet.load_model needs of a file: a Solver checkpoint or a model file with the
    parameters (best ones for "best") and a description it can rebuild (unless a model is given)."""
    if not isinstance(meta, dict) or meta.get("format") != "gpunet-checkpoint" or meta.get("version") != 1:
        raise Invalid("format")
    if meta.get("kind") not in ("solver", "model"):
        raise Invalid("kind")
    prefix = "best_param/" if meta.get("kind") == "solver" and target == "load_model" else "param/"
    model = _checkpoint_model()
    for k, v in model.params.items():
        a = arrays.get(prefix + k)
        if a is None or a.shape != tuple(v.shape) or a.dtype != np.float32:
            raise Invalid(prefix + k)
    if sorted(k for k in arrays if k.startswith(prefix)) != sorted(prefix + k for k in model.params):
        raise Invalid("params")
    bprefix = prefix.replace("param", "buffer")
    for k, v in model.get_buffers().items():
        a = arrays.get(bprefix + k)
        if a is None or a.shape != tuple(v.shape) or a.dtype != np.float32:
            raise Invalid(bprefix + k)
    if target == "load_model into":
        return
    spec = meta.get("model")
    if not (isinstance(spec, dict) and set(spec) == {"class", "args"}):
        raise Invalid("model")
    if spec["class"] != "gpunet.models.FullyConnectedNet" or not isinstance(spec["args"], dict):
        raise Invalid("model", "class")
    args = spec["args"]
    if args.get("hidden_dims") != [5] or args.get("input_dim") != 4 or args.get("num_classes") != 3 or \
            args.get("normalization") != "batchnorm":
        raise Invalid("model", "args")  # another model than the arrays fit
    try:
        model_shapes("FullyConnectedNet", args)
    except Unspecified:
        raise Invalid("model", "args") from None


def _loaded_check(result, arrays, prefix):
    model = result.model if isinstance(result, Solver) else result
    try:
        return _same_state(model, arrays, prefix) if all(prefix + k in arrays for k in model.params) else None
    except Exception as exc:  # noqa: BLE001
        return f"cannot compare: {exc}"


def _solver_snapshot(solver):
    if solver is None:
        return None
    state = solver.state
    return (state.epoch, state.iteration, json.dumps(state.history), json.dumps(state.base_lr),
            tuple(np.array(gpunet.to_numpy(v)).tobytes() for v in solver.model.params.values()),
            json.dumps(state.rng.bit_generator.state))


# --- family: data loaders (scripts/hostile_data.py's families, judged here) --------------------

import hostile_data  # noqa: E402 - scripts/hostile_data.py


def data_cases(strategy, run, oracle):
    """Cases from one of hostile_data's families: its oracle decides (Invalid: refuse; a
    value: that result; none: either)."""

    @st.composite
    def cases(draw):
        value = draw(strategy)
        try:
            expected = hostile_data.NO_ORACLE if oracle is None else oracle(value)
        except hostile_data.Invalid:
            expect = Refuse()
        else:
            if expected is hostile_data.NO_ORACLE:
                expect = Either()
            else:
                expect = Accept(lambda got: None if _same_result(got, expected)
                                else "differs from the independent parse")
        return Case(_short(value), lambda: run(value), expect)

    return cases()


def _same_result(a, b) -> bool:
    """hostile_data.same, with NaN equal to NaN in float arrays (an IDX file may hold NaN)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return _same_array(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_result, a, b))
    return hostile_data.same(a, b)


def environment_cases():
    return st.sampled_from(hostile_data.environment_cases(Path(tempfile.mkdtemp(dir=_TMP)))).map(
        lambda case: Case(f"GPUNET_DATA={case[0]!r}, {case[1]}", lambda: hostile_data.run_environment_case(case),
                          Either(names=("GPUNET_DATA",)), memory_mb=1024))  # (may find the real dataset)


def run_data_bombs(examples: int, random_seed: int, emit) -> None:
    """hostile_data's bombs, one subprocess each (peak RSS growth and time measured there)."""
    every, _ = hostile_data.run_bombs(["(list only)"])
    for name in every[: examples if examples < len(every) else None]:
        emit(Case(f"bomb: {name}", lambda name=name: _bomb_verdict(name), Either(), timeout=200))


def _bomb_verdict(name) -> Verdict:
    rows = hostile_data.run_bombs([name], timeout=150)[1]
    row = rows[-1]
    detail = (f"{row['result']} (expected {row['expect']}), {row['seconds']:.2f} s, peak RSS "
              f"+{row['rss_growth_mb']:.0f} MB of {row['allowed_mb']:.0f} allowed")
    if row["result"].startswith("HANG"):
        return Verdict("hang", detail)
    if not hostile_data.bounded(row):
        return Verdict("unbounded" if row["result"] == row["expect"] else "traceback", detail)
    return Verdict("ok" if row["result"] == "ok" else "clear error", "")


# --- family: backends ----------------------------------------------------------------------------

from gpunet.backend.switch import CHOICES, ENV_VAR  # noqa: E402

BACKEND_NAMES = ["numpy", "NumPy", "NUMPY", " numpy", "numpy\n", "cupy", "CuPy", "auto", "strict", "", "bogus",
                 "torch", None, 3, b"numpy", ["numpy"], "np", "gpu"]


@contextlib.contextmanager
def environment(**values):
    """Set (None: remove) environment variables for the block, and forget the backend
    choice before and after."""
    old = {k: os.environ.get(k) for k in values}
    _set_environment(values)
    try:
        yield
    finally:
        _set_environment(old)


def _set_environment(values: dict) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reset_for_tests()


def ref_backend(name) -> str:
    """The backend a name selects, Invalid (not a name), or Unspecified (CuPy: no device here)."""
    if not isinstance(name, str) or name.lower() not in CHOICES:
        raise Invalid("backend", ENV_VAR)
    name = name.lower()
    if name == "cupy":
        raise Invalid("cupy", "CuPy", "CUDA")  # no device on this machine: BackendUnavailableError
    return "numpy" if name == "auto" else name


@st.composite
def backend_cases(draw):
    """GPUNET_BACKEND values, set_backend/use_backend names, and an explicit choice under a
    bad GPUNET_BACKEND (which must win)."""
    name = draw(st.one_of(st.sampled_from(BACKEND_NAMES), st.text(max_size=6).map(lambda t: t.replace("\0", ""))))
    how = draw(st.sampled_from(["GPUNET_BACKEND", "set_backend", "use_backend", "explicit beats the variable"]))
    label = f"{how}: {name!r}"
    if how == "explicit beats the variable":
        if not isinstance(name, str):
            name = "bogus"

        def run():
            with environment(**{ENV_VAR: name}):
                gpunet.set_backend("numpy")
                with gpunet.use_backend("strict"):
                    inner = gpunet.get_backend()
                return gpunet.get_backend(), inner

        return Case(label, run, Accept(lambda r: None if r == ("numpy", "strict") else f"got {r}"))
    try:
        expected = ref_backend(name)
        expect = Accept(lambda got: None if got == expected else f"chose {got!r}, expected {expected!r}")
    except Invalid as exc:
        expect = Refuse(*exc.names, repr(name) if isinstance(name, str) else "backend")
    if how == "GPUNET_BACKEND":
        if not isinstance(name, str):
            name = str(name)
            expect = Refuse(ENV_VAR) if name.lower() not in CHOICES else expect

        def run():
            with environment(**{ENV_VAR: name}):
                return gpunet.get_backend()

        if name == "":
            expect = Either(lambda got: None if got == "numpy" else f"chose {got!r}", names=(ENV_VAR,))
        return Case(label, run, expect)
    if how == "set_backend":
        def run():
            with environment(**{ENV_VAR: None}):
                return gpunet.set_backend(name)
    else:
        def run():
            with environment(**{ENV_VAR: None}):
                with gpunet.use_backend(name) as chosen:
                    return chosen if gpunet.get_backend() == chosen else f"get_backend() is {gpunet.get_backend()}"
    return Case(label, run, expect)


class _Odd:
    """An object NumPy cannot make numbers of."""


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix, on purpose
    _MATRIX = np.asmatrix(np.eye(2))


ODD_OBJECTS = [
    ("a string", "abc"), ("bytes", b"\x00\x01"), ("a dict", {"a": 1}), ("a set", {1, 2}), ("None", None),
    ("an object", _Odd()), ("a ragged list", [[1, 2], [3]]), ("a nested list", [[1.0, 2.0], [3.0, 4.0]]),
    ("a list of floats", [0.5, 1.5]), ("an int", 3), ("a float", 2.5), ("a bool", True), ("complex", 1 + 2j),
    ("2**70", 2**70), ("a list with 2**70", [1, 2**70]), ("a Fraction", fractions.Fraction(1, 3)),
    ("a Decimal", decimal.Decimal("1.5")), ("a generator", (i for i in range(3))),
    ("a range", range(4)), ("a list of bools", [True, False]), ("a datetime", np.datetime64("2020-01-01")),
    ("strings array", np.array(["a", "b"])), ("object array of floats", np.array([1.0, 2.0], dtype=object)),
    ("a structured array", np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])), ("a matrix", _MATRIX),
    ("a masked array", np.ma.masked_array([1.0, 2.0], mask=[0, 1])), ("a memoryview", memoryview(b"abcd")),
    ("float16 array", np.ones(3, np.float16)), ("an empty list", []), ("NaN", NAN), ("a 0-d array", np.array(1.5)),
    ("a list of strings", ["1", "2"]), ("a list of None", [None, None]), ("a timedelta array", np.array([1], "m8[s]")),
]
DTYPES = [None, "float32", np.float64, "int64", "bool", "float33", "int", object, "complex64", "U3", "f2",
          np.dtype("V4"), "datetime64[s]"]


def ref_asarray(x, dtype, backend):
    """The array gpunet.asarray must give (host values), or Invalid: numbers only (bool, int,
    float, complex) in and out."""
    if dtype is not None:
        try:
            d = np.dtype(dtype)
        except TypeError:
            raise Invalid("dtype") from None
        if d.kind not in "biufc":
            raise Invalid("dtype")
        if backend == "strict" and d.name not in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                                  "uint32", "uint64", "float32", "float64", "complex64",
                                                  "complex128"):
            raise Invalid("dtype", "strict")
    if isinstance(x, (np.matrix, np.ma.MaskedArray)) or not hasattr(x, "__len__") and \
            not isinstance(x, (int, float, complex, np.generic, np.ndarray)):
        raise Unspecified  # NumPy's subclasses, generators and odd objects: refused or converted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)  # an imaginary part dropped
            host = np.asarray(x, dtype=dtype)
    except Exception:  # noqa: BLE001 - NumPy cannot: must be refused
        raise Invalid("x", "dtype") from None
    if host.dtype.kind not in "biufc":
        raise Invalid("x", "dtype")
    if backend == "strict" and host.dtype.name not in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                                       "uint32", "uint64", "float32", "float64", "complex64",
                                                       "complex128"):
        raise Invalid("x", "strict", "float16")  # (a dtype the strict backend has not)
    return host


@st.composite
def asarray_cases(draw):
    """gpunet.asarray of odd objects, with and without a dtype, on NumPy and strict."""
    what, x = draw(st.sampled_from(ODD_OBJECTS))
    dtype = draw(st.sampled_from(DTYPES))
    backend = draw(st.sampled_from(["numpy", "strict"]))
    label = f"asarray({what}, dtype={dtype!r}) on {backend}"
    try:
        expected = ref_asarray(x, dtype, backend)

        def check(got):
            if backend_name(got) != backend:
                return f"gave a {type(got).__name__}, not a {backend} array"
            return None if _same_array(np.asarray(gpunet.to_numpy(got)), expected) else \
                f"gave {gpunet.to_numpy(got)!r}, expected {expected!r}"

        expect = Accept(check)
    except Invalid as exc:
        expect = Refuse(*exc.names)
    except Unspecified:
        expect = Either(lambda got: None if dtype_name(got)[:3] in ("flo", "int", "uin", "boo", "com")
                        else f"an array of {dtype_name(got)}", names=("x", "dtype"))

    def run():
        with gpunet.use_backend(backend):
            return gpunet.asarray(x, dtype=dtype)

    return Case(label, run, expect)


def thread_cases():
    """use_backend in one thread does not leak into others (issue 10, item 6)."""

    def run(name):
        seen = {}

        def other():
            seen["before"] = gpunet.get_backend()
            with gpunet.use_backend(name):
                seen["inside"] = gpunet.get_backend()
                barrier.wait(timeout=5)  # the main thread looks now
                barrier.wait(timeout=5)
            seen["after"] = gpunet.get_backend()

        barrier = threading.Barrier(2)
        with environment(**{ENV_VAR: None}):
            t = threading.Thread(target=other)
            t.start()
            barrier.wait(timeout=5)
            main = gpunet.get_backend()
            barrier.wait(timeout=5)
            t.join(5)
        return main, seen

    def check(result):
        main, seen = result
        if main != "numpy" or seen != {"before": "numpy", "inside": "strict", "after": "numpy"}:
            return f"main thread saw {main!r}, the other {seen}"
        return None

    return st.just(Case("use_backend('strict') in another thread", lambda: run("strict"), Accept(check)))


# --- family: the command line ------------------------------------------------------------------

from gpunet.cli import main as cli_main  # noqa: E402

_CLI: dict = {}


def cli(argv, env=None) -> CommandRun:
    """``gpunet ARGV`` in this process: exit status, stdout, stderr (a SystemExit is the status;
    any other exception propagates, as it would to a user)."""
    out, err = io.StringIO(), io.StringIO()
    with environment(**(env or {})), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("default")  # a warning is printed, as it would be to a user
        try:
            code = cli_main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return CommandRun(code, out.getvalue(), err.getvalue())


def cli_files() -> dict:
    """Files the command lines use, made once: a training checkpoint of a 1-epoch run
    (--hidden 8), a model file, garbage, crafted checkpoints, sample files."""
    if _CLI:
        return _CLI
    d = Path(tempfile.mkdtemp(dir=_TMP))
    run = cli(["train", "--epochs", "1", "--hidden", "8", "--batch-size", "64", "--quiet",
               "--checkpoint", d / "ck"])
    assert run.code == 0, run.err
    arrays, meta = (lambda z: ({k: z[k] for k in z.files if k != META_KEY}, json.loads(str(z[META_KEY]))))(
        np.load(d / "ck_last.npz"))
    model = MODELS.TwoLayerNet(64, 8, 10, seed=0)
    model.save(d / "model.npz")
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "file").write_text("a file, not a directory")
    bad_runs = {"run args lr 'fast'": {"args": {**meta["run"]["args"], "lr": "fast"}},
                "run args epochs -5": {"args": {**meta["run"]["args"], "epochs": -5}},
                "run args hidden 'x'": {"args": {**meta["run"]["args"], "hidden": "x"}},
                "run args optimizer 'lbfgs'": {"args": {**meta["run"]["args"], "optimizer": "lbfgs"}},
                "run args batch_size 0": {"args": {**meta["run"]["args"], "batch_size": 0}},
                "run args a list": {"args": [1, 2]},
                "run data 3": {"data": 3}, "run eval_batch_size 'x'": {"eval_batch_size": "x"},
                "run seed -1": {"seed": -1}, "run sample_shape [63]": {"sample_shape": [63]},
                "run mean of 3 numbers": {"mean": [0.0, 1.0, 2.0]}, "run val 2.0": {"val": 2.0},
                "run data_path /nonexistent": {"data_path": "/nonexistent"}, "epoch 'one'": None}
    for i, change in enumerate(bad_runs.values()):
        m = copy.deepcopy(meta)
        if change is None:
            m["epoch"] = "one"
        else:
            m["run"] = {**m["run"], **change}
        (d / f"bad{i}.npz").write_bytes(npz_bytes(arrays, m))
    X = np.random.default_rng(0).uniform(0, 16, (5, 64)).astype(np.float32)
    inputs = {"good": X, "63 features": X[:, :63], "strings": X.astype(str), "complex": X.astype(np.complex64),
              "0-d": np.float32(1.0), "empty": X[:0], "images (5, 1, 8, 8)": X.reshape(5, 1, 8, 8),
              "NaN": _with(X, NAN), "int": X.astype(np.int64)}
    for name, a in inputs.items():
        np.save(d / f"in_{name.split()[0]}.npy", a)
    np.save(d / "in_object.npy", np.array([1.0, "a"], dtype=object), allow_pickle=True)
    np.savez(d / "in_archive.npz", X=X)
    _CLI.update(dir=d, ck=d / "ck_last.npz", best=d / "ck_best.npz", model=d / "model.npz",
                garbage=d / "garbage.npz", bad_runs=[(w, d / f"bad{i}.npz") for i, w in enumerate(bad_runs)],
                recorded=meta["run"]["args"])
    return _CLI


TRAIN_FLAGS = {  # flag -> (valid values, invalid values); a list value is several words
    "--epochs": (["1", "0", " 1"], ["-1", "1.5", "nan", "", "one", "1e3", "0x1"]),
    "--batch-size": (["64", "1_00", "300"], ["0", "-3", "2.5", "x", "inf"]),
    "--lr": (["1e-3", "0.01", "1E-2"], ["0", "-1", "nan", "inf", "-inf", "1e400", "x", "", "0x10"]),
    "--lr-decay": (["0.9", "1"], ["0", "-0.5", "nan", "inf"]),
    "--reg": (["0", "1e-4"], ["-1", "nan", "inf", "x"]),
    "--dropout": (["0.9", "1"], ["0", "1.5", "-0.1", "nan"]),
    "--seed": (["0", "7", "123456789012345678901234567890"], ["-1", "1.5", "x"]),
    "--hidden": ([["16"], ["8", "8"]], [["0"], ["-1"], ["1.5"], ["x"], []]),
    "--patience": (["1", "2"], ["0", "-2", "x"]),
    "--optimizer": (["sgd", "adamw", "rmsprop", "nesterov", "sgd_momentum"], ["Adam", "lbfgs", ""]),
    "--normalization": (["none", "batchnorm", "layernorm"], ["group", ""]),
    "--dtype": (["float32", "float64"], ["float16", "int32"]),
    "--backend": (["numpy", "auto"], ["cupy", "CUDA", ""]),
    "--data": (["digits", "breast-cancer"], ["Digits", "cifar", ""]),
    "--model": (["mlp", "cnn", "logistic"], ["MLP", "resnet"]),
    "--filter-size": (["3", "5", "4"], ["0", "x"]),
    "--filters": (["4"], ["0", "x"]),
    "--keep-every": (["1"], ["0", "x"]),
    "--checkpoint": (["{dir}/run"], ["/proc/nope/run", "{dir}", "{file}/run", ""]),
    "--plot": (["{dir}/c.png"], ["{dir}/missing/c.png", "{dir}/c.xyz"]),
    "--resume": (["{ck}"], ["{dir}/missing.npz", "{garbage}", "{dir}", "{model}", "{bad}"]),
    "--data-path": ([], ["{dir}/none"]),
    "--cosine": ([None], []), "--drop-last": ([None], []),
}
UNKNOWN_FLAGS = ["--lrr", "--ep", "-x", "--lr=", "--epochs=1=2", "train", "--Lr"]


def _words(flag, value):
    if value is None:
        return [flag]
    return [flag, *value] if isinstance(value, list) else [flag, value]


def _expand(word: str, files: dict, bad: Path) -> str:
    return (word.replace("{dir}", str(files["dir"])).replace("{file}", str(files["dir"] / "file"))
            .replace("{ck}", str(files["ck"])).replace("{garbage}", str(files["garbage"]))
            .replace("{model}", str(files["model"])).replace("{bad}", str(bad)))


@st.composite
def train_command_cases(draw):
    """``gpunet train`` with 1-3 flags drawn from good and bad values (and, sometimes, an
    unknown flag or GPUNET_BACKEND=bogus); cheap settings otherwise (1 epoch, hidden 8)."""
    files = cli_files()
    base = {"--epochs": "1", "--hidden": ["8"], "--batch-size": "64"}
    chosen: dict = {}
    invalid: list = []
    for flag in draw(st.lists(st.sampled_from(sorted(TRAIN_FLAGS)), min_size=1, max_size=3, unique=True)):
        good, bad = TRAIN_FLAGS[flag]
        if bad and (not good or draw(st.integers(0, 2)) > 0):
            chosen[flag] = draw(st.sampled_from(bad))
            invalid.append(flag)
        else:
            chosen[flag] = draw(st.sampled_from(good))
    bad_run_name, bad_run = draw(st.sampled_from(files["bad_runs"]))
    extra, env = [], {}
    if draw(st.integers(0, 7)) == 0:
        extra = [draw(st.sampled_from(UNKNOWN_FLAGS))]
        invalid.append(extra[0].split("=")[0])
    if draw(st.integers(0, 7)) == 0:
        env = {"GPUNET_BACKEND": "bogus"}
    if "--data-path" in chosen and draw(st.booleans()):
        chosen["--data"] = draw(st.sampled_from(["mnist", "fashion-mnist", "cifar10"]))
    resumed = chosen.get("--resume") == "{ck}"
    if resumed:  # one epoch more than the checkpoint's, written elsewhere; the rest is recorded
        base = {"--epochs": "2", "--checkpoint": str(Path(tempfile.mkdtemp(dir=_TMP)) / "again")}
    flags = {**base, **chosen}
    argv = ["train", "--quiet"]
    for flag, value in flags.items():
        argv += [_expand(w, files, bad_run) for w in _words(flag, value)]
    argv += extra
    label = " ".join(argv).replace(str(files["dir"]), "DIR") + (f"  [{bad_run_name}]" if "{bad}" in str(chosen) else "")
    label += "  (GPUNET_BACKEND=bogus)" if env else ""
    names = _train_problems(flags, invalid, env, resumed, files)
    if names is None:
        expect = Accept(_trained)
    elif names == "either":
        expect = Either(_trained, names=tuple(flags))
    else:
        expect = Refuse(*names)
    return Case(label, lambda: cli(argv, env), expect, timeout=60)


def _train_problems(flags, invalid, env, resumed, files):
    """The flags that make this command line wrong (what the message may name), None if it
    is right, or "either" where the rules do not say."""
    problems = list(invalid)
    data = flags.get("--data", "digits")
    model = flags.get("--model", "mlp")
    if "--resume" in flags and not resumed:
        problems += ["--resume", "checkpoint", str(files["dir"])]
    if resumed:
        recorded = files["recorded"]
        for flag in ("--data", "--model", "--hidden", "--seed", "--filters", "--filter-size", "--normalization",
                     "--dtype", "--data-path"):
            if flag in flags and flag not in invalid:
                value = flags[flag]
                key = flag[2:].replace("-", "_")
                given = [int(v) for v in value] if key == "hidden" else value
                if key in ("seed", "filters", "filter_size"):
                    given = int(value)
                if recorded.get(key) != given:
                    problems.append(flag)
        model, data = "mlp", "digits"
    if model == "cnn" and data == "breast-cancer" or model == "logistic" and data == "digits":
        problems += ["--model", "--data"]
    if model == "cnn" and flags.get("--filter-size") == "4":
        problems.append("--filter-size")
    if "--data-path" in flags:
        problems += ["--data-path", "--data", str(files["dir"])]
    if "--keep-every" in flags and "--checkpoint" not in flags:
        problems.append("--keep-every")
    if "--cosine" in flags and flags.get("--lr-decay", "1") not in ("1",):
        problems += ["--cosine", "--lr-decay"]
    if env and "--backend" not in flags:
        problems.append("GPUNET_BACKEND")
    if problems:
        return problems
    if model == "cnn" and not resumed:
        return "either" if "--filters" not in flags else None  # (slower, but fine)
    return None


def _trained(run: CommandRun) -> str | None:
    m = re.search(r"^test accuracy: (\d\.\d{4})$", run.out, re.M)
    if not m or not 0 <= float(m.group(1)) <= 1:
        return f"no test accuracy line in {run.out[-200:]!r}"
    noise = [line for line in run.err.splitlines() if line.strip()]
    if noise:
        return f"stderr holds {noise[:2]}"
    return None


@st.composite
def model_command_cases(draw):
    """``gpunet eval``, ``gpunet predict`` and ``gpunet info`` with bad files, flags and settings."""
    files = cli_files()
    d = files["dir"]
    command = draw(st.sampled_from(["eval", "eval", "predict", "predict", "info"]))
    if command == "info":
        value = draw(st.sampled_from(["bogus", "cupy", "", "numpy", "strict", "AUTO"]))
        return Case(f"GPUNET_BACKEND={value!r} gpunet info", lambda: cli(["info"], {"GPUNET_BACKEND": value}),
                    Accept(lambda r: None if "gpunet " in r.out and not r.err.strip() else f"{r.err[-200:]!r}"))
    bad_name, bad_run = draw(st.sampled_from(files["bad_runs"]))
    checkpoints = {"the best checkpoint": (files["best"], True), "the last checkpoint": (files["ck"], True),
                   "a model file": (files["model"], "model"), "a missing file": (d / "missing.npz", False),
                   "garbage": (files["garbage"], False), "a directory": (d, False),
                   f"a crafted checkpoint ({bad_name})": (bad_run, "crafted")}
    what = draw(st.sampled_from(sorted(checkpoints)))
    path, ok = checkpoints[what]
    argv = [command, str(path)]
    problems: list = [] if ok is True else ["CHECKPOINT", str(path), "checkpoint"]
    if ok == "model":
        problems = [] if command == "predict" else ["--data", str(path)]  # (no record of its data)
    if ok == "crafted":
        problems = _crafted_problems(bad_name, command, path)
        if problems == "either":
            problems = []
            ok = "either"
    options = {"--which": (["best", "last"], ["worst", ""]), "--batch-size": (["10", "1"], ["0", "-1", "x", "1.5"]),
               "--backend": (["numpy", "auto"], ["cupy", "gpu"])}
    if command == "eval":
        options["--data"] = (["digits"], ["breast-cancer", "Digits"])
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=2, unique=True)):
        good, bad = options[flag]
        if draw(st.booleans()):
            argv += [flag, draw(st.sampled_from(bad))]
            problems.append(flag)
        else:
            value = draw(st.sampled_from(good))
            argv += [flag, value]
            if flag == "--data" and ok == "model":
                problems = [p for p in problems if p not in ("--data", str(path))]  # --data names it
    if command == "predict":
        inputs = {"good": True, "int": True, "63": False, "strings": False, "complex": False, "0-d": False,
                  "empty": "either", "images": True, "NaN": "either", "object": False, "archive": False,
                  "missing": False}
        name = draw(st.sampled_from(sorted(inputs)))
        source = d / (f"in_{name}.npz" if name == "archive" else f"in_{name}.npy")
        out = draw(st.sampled_from([d / "labels.npy", d / "missing" / "labels.npy", d, None]))
        argv += [str(source)] + (["-o", str(out)] if out is not None else [])
        if inputs[name] is False:
            problems += ["INPUT", str(source)]
        if out is None:
            problems.append("-o")
        elif out != d / "labels.npy":
            problems += ["-o", "--output", str(out)]
        if inputs[name] == "either" and not problems:
            problems = "either"
    label = " ".join(argv).replace(str(d), "DIR")
    if ok == "either" and not problems:
        problems = "either"
    if problems == "either":
        expect = Either(lambda r: None, names=("INPUT",))
    elif problems:
        expect = Refuse(*problems)
    else:
        expect = Accept(_evaluated if command == "eval" else lambda r: None if "wrote" in r.out else r.out)
    return Case(label, lambda: cli(argv), expect, timeout=60)


def _crafted_problems(name, command, path):
    """What a crafted checkpoint breaks for eval and predict: every entry of the recorded
    run information they use is checked first (train's flags, under "args", are not theirs)."""
    if name == "epoch 'one'":
        return "either"  # a counter load_model does not need
    if name.startswith("run args") or name.startswith("run sample_shape") and command == "eval":
        return []  # (train's flags; the sample shape, which eval does not need)
    return [str(path), "checkpoint", name.split()[1]]


def _evaluated(run: CommandRun) -> str | None:
    m = re.search(r"^test accuracy: (\d\.\d{4})$", run.out, re.M)
    return None if m and 0 <= float(m.group(1)) <= 1 else f"no test accuracy line in {run.out[-200:]!r}"


SUBPROCESS_COMMANDS = [  # (label, argv after `python`, environment, exit status wanted, text wanted)
    ("GPUNET_BACKEND=bogus gpunet train", ["-m", "gpunet", "train", "--epochs", "1", "--quiet"],
     {"GPUNET_BACKEND": "bogus"}, 2, "GPUNET_BACKEND"),
    ("GPUNET_BACKEND=bogus gpunet info", ["-m", "gpunet", "info"], {"GPUNET_BACKEND": "bogus"}, 0, "GPUNET_BACKEND"),
    ("GPUNET_CONV_BUDGET_MB=abc import gpunet", ["-c", "import gpunet, gpunet.layers"],
     {"GPUNET_CONV_BUDGET_MB": "abc"}, 0, ""),
    ("GPUNET_CONV_BUDGET_MB=abc gpunet train --model cnn",
     ["-m", "gpunet", "train", "--model", "cnn", "--epochs", "1", "--filters", "2", "--hidden", "4", "--quiet"],
     {"GPUNET_CONV_BUDGET_MB": "abc"}, 1, "GPUNET_CONV_BUDGET_MB"),
    ("gpunet train --lr nan", ["-m", "gpunet", "train", "--lr", "nan"], {}, 2, "--lr"),
    ("gpunet bogus", ["-m", "gpunet", "bogus"], {}, 2, "bogus"),
    ("gpunet train --resume garbage", ["-m", "gpunet", "train", "--resume", "{garbage}"], {}, 1, "{garbage}"),
    ("GPUNET_DATA=/nonexistent gpunet train --data mnist",
     ["-m", "gpunet", "train", "--data", "mnist", "--epochs", "1"], {"GPUNET_DATA": "/nonexistent"}, 2, "GPUNET_DATA"),
]


def run_subprocess_commands(examples: int, random_seed: int, emit) -> None:
    files = cli_files()
    for label, argv, env, status, text in SUBPROCESS_COMMANDS[:examples]:
        argv = [a.replace("{garbage}", str(files["garbage"])) for a in argv]
        text = text.replace("{garbage}", str(files["garbage"]))
        emit(Case(label, lambda argv=argv, env=env, status=status, text=text: _launch(argv, env, status, text),
                  Either(), timeout=150))


def _launch(argv, env, status, text) -> Verdict:
    """Run ``python ARGV`` (the address-space cap lifted), judged by its exit status and stderr."""
    try:
        r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **env}, preexec_fn=lift_limits)
    except subprocess.TimeoutExpired:
        return Verdict("hang", "no exit within 120 s")
    run = CommandRun(r.returncode, r.stdout, r.stderr)
    if status == 0:
        if r.returncode != 0 or "Traceback" in r.stderr:
            return Verdict("traceback", f"exit {r.returncode}: {r.stderr[-300:]!r}")
        if text and text not in r.stdout + r.stderr:
            return Verdict("silent wrong", f"{text!r} is not reported: {r.stdout[-300:]!r}")
        return Verdict("ok")
    problem = command_problem(run, (text,) if text else ())
    if problem or r.returncode != status:
        return Verdict("traceback", f"exit {r.returncode} (wanted {status}): {problem}; {r.stderr[-300:]!r}")
    return Verdict("clear error")


# --- family: MPI -------------------------------------------------------------------------------

#: Run under ``mpiexec -n 2 python -m mpi4py``: ``gpunet train --distributed`` with this rank's
#: extra flags and environment (JSON in GPUNET_HOSTILE_RANK<r>).
MPI_SCRIPT = r"""
import json, os, sys
from mpi4py import MPI
extra, env = json.loads(os.environ.get(f"GPUNET_HOSTILE_RANK{MPI.COMM_WORLD.rank}", "[[], {}]"))
os.environ.update(env)
from gpunet.cli import main
sys.exit(main(["train", "--distributed", "--epochs", "2", "--hidden", "8", "--quiet", *extra]))
"""
MPI_CASES = [  # (label, rank 0's (flags, env), rank 1's, text the one message must hold)
    ("rank 1: --lr nan", ([], {}), (["--lr", "nan"], {}), "--lr"),
    ("rank 1: --seed 3 (another data split)", ([], {}), (["--seed", "3"], {}), "seed"),
    ("rank 1: --batch-size 16", ([], {}), (["--batch-size", "16"], {}), "batch_size"),
    ("rank 1: GPUNET_BACKEND=bogus", ([], {}), ([], {"GPUNET_BACKEND": "bogus"}), "GPUNET_BACKEND"),
    ("rank 0: --checkpoint /proc/nope/run", (["--checkpoint", "/proc/nope/run"], {}), ([], {}), "--checkpoint"),
    ("rank 1: --resume missing.npz", ([], {}), (["--resume", "{dir}/missing.npz"], {}), "--resume"),
    ("rank 1: --optimizer sgd", ([], {}), (["--optimizer", "sgd"], {}), "update_rule"),
]


def _mpiexec() -> str | None:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def run_mpi_cases(examples: int, random_seed: int, emit) -> None:
    """A bad setting on one rank of two must end every rank within seconds, with one message."""
    launcher = _mpiexec()
    if launcher is None or importlib.util.find_spec("mpi4py") is None:
        return  # no MPI here: nothing to count
    script = _TMP / "mpi_train.py"
    script.write_text(MPI_SCRIPT)
    for label, rank0, rank1, text in MPI_CASES[:examples]:
        emit(Case(label, lambda r0=rank0, r1=rank1, text=text: _mpi_verdict(launcher, script, r0, r1, text),
                  Either(), timeout=120))


def _mpi_verdict(launcher, script, rank0, rank1, text) -> Verdict:
    where = Path(tempfile.mkdtemp(dir=_TMP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for r, (flags, extra_env) in enumerate((rank0, rank1)):
        env[f"GPUNET_HOSTILE_RANK{r}"] = json.dumps([[f.replace("{dir}", str(where)) for f in flags], extra_env])
    started = time.perf_counter()
    proc = subprocess.Popen([launcher, "-n", "2", sys.executable, "-m", "mpi4py", str(script)], cwd=where,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=lift_limits)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Verdict("hang", "the ranks did not end within 90 s")
    seconds = time.perf_counter() - started
    messages = [line for line in err.splitlines() if line.startswith("gpunet: error: ")]
    detail = f"exit {proc.returncode} after {seconds:.1f} s; stderr {err[-400:]!r}"
    if seconds > 30:
        return Verdict("hang", f"took {seconds:.0f} s (more than a few seconds); {detail}")
    if proc.returncode == 0:
        return Verdict("silent wrong", f"trained although the ranks disagree; {detail}")
    if "Traceback" in err or len(messages) != 1:
        return Verdict("traceback", f"{len(messages)} gpunet error lines; {detail}")
    if text not in messages[0]:
        return Verdict("traceback", f"the message does not name {text!r}; {detail}")
    return Verdict("clear error", f"{seconds:.1f} s")


# --- family: gpunet bombs (each in its own process, through /bin/sh) ---------------------------

#: Inputs that would allocate far more than they hold: (label, Python code, allowed peak RSS
#: growth in MB, whether the arguments themselves ask for that memory). The code runs after
#: ``import gpunet``; it must end in a clear exception, or, where the arguments ask for more
#: memory than a machine has, in a MemoryError raised before anything grew (NumPy names the size).
GPUNET_BOMBS = [
    ("load_model of a 1 KB file describing a 30000 x 30000 TwoLayerNet", """
import numpy as np
from gpunet import models, load_model
from gpunet.checkpoint import load_npz, save_npz_atomic
path = models.TwoLayerNet(4, 5, 3, seed=0).save(TMP + "/m.npz")
arrays, meta = load_npz(path)
meta["model"]["args"].update(input_dim=30000, hidden_dim=30000)
load_model(save_npz_atomic(TMP + "/bomb.npz", arrays, meta))
""", 32, False),
    ("a checkpoint member whose header claims 2**40 float32", """
import io, json, zipfile, numpy as np
from gpunet.checkpoint import load_npz, META_KEY
head = repr({"descr": "<f4", "fortran_order": False, "shape": (2**40,)}).encode()
head += b" " * ((64 - (10 + len(head) + 1) % 64) % 64) + b"\\n"
member = b"\\x93NUMPY\\x01\\x00" + len(head).to_bytes(2, "little") + head + bytes(8)
buf = io.BytesIO()
meta = io.BytesIO()
np.lib.format.write_array(meta, np.array(json.dumps({"format": "gpunet-checkpoint", "version": 1})))
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("param/W.npy", member); z.writestr(META_KEY + ".npy", meta.getvalue())
open(TMP + "/h.npz", "wb").write(buf.getvalue())
load_npz(TMP + "/h.npz")
""", 32, False),
    ("conv_forward of a 3 x 3 image padded by 10**5 (a 2e5 x 2e5 output)", """
import numpy as np
from gpunet.layers import conv_forward
conv_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), np.zeros(1), {"pad": 10**5})
""", 32, True),
    ("FullyConnectedNet with hidden_dims [10**6] and input_dim 10**6", """
from gpunet.models import FullyConnectedNet
FullyConnectedNet([10**6], input_dim=10**6)
""", 32, True),
]

BOMB_RUNNER = r"""
import json, resource, sys, tempfile, time
TMP = tempfile.mkdtemp()
import gpunet, gpunet.models, gpunet.layers, gpunet.checkpoint  # imports are not the bomb
code = sys.stdin.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    exec(code, {"TMP": TMP})
    result = "no error"
except BaseException as exc:
    result = f"{type(exc).__name__}: {str(exc)[:200]}"
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"result": result, "seconds": time.perf_counter() - t, "growth_mb": growth}))
"""


def run_gpunet_bombs(examples: int, random_seed: int, emit) -> None:
    for label, code, allowed, asked in GPUNET_BOMBS[:examples]:
        emit(Case(label, lambda code=code, allowed=allowed, asked=asked: _gpunet_bomb(code, allowed, asked),
                  Either(), timeout=200))


def _gpunet_bomb(code: str, allowed: float, asked: bool) -> Verdict:
    """Run ``code`` in a grandchild (its peak RSS does not start at ours) without our address-space
    cap; judged by its exception, time and peak RSS growth."""
    cmd = ["/bin/sh", "-c", '"$0" -c "$1"', sys.executable, BOMB_RUNNER]
    try:
        r = subprocess.run(cmd, input=code, capture_output=True, text=True, timeout=150, preexec_fn=lift_limits,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return Verdict("hang", "no result within 150 s")
    try:
        row = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return Verdict("unbounded" if r.returncode in (-9, 137) else "traceback",
                       f"the process ended with status {r.returncode}: {r.stderr[-300:]!r}")
    detail = f"{row['result']}; {row['seconds']:.2f} s, peak RSS +{row['growth_mb']:.0f} MB (allowed {allowed})"
    if row["growth_mb"] > allowed or row["result"].startswith("MemoryError") and not asked:
        return Verdict("unbounded", detail)
    if row["result"].startswith("MemoryError"):
        return Verdict("clear error", detail)  # asked for by the arguments, refused before it grew
    if row["result"] == "no error":
        return Verdict("silent wrong", detail)
    return Verdict("clear error" if row["result"].split(":")[0] in ("ArgumentError", "CheckpointError")
                   else "traceback", detail)


# --- known defects -------------------------------------------------------------------------------

#: Defects in files another engineer is changing now (the lead applies the fixes after merging
#: that work): (family, pattern searched in "label -> detail", what is wrong). Cases matching
#: one are counted in the table as what they are, and listed as known.
KNOWN = [
    ("optimizers", r"object has no attribute 'shape'.*optim\.py|expected a NumPy, CuPy or array_api_strict "
     r"array, got builtins", "optim: w, dw and the state arrays are not checked to be arrays before their "
     ".shape is read (AttributeError, or backend_of's TypeError naming no argument)"),
    ("optimizers", r"Can't convert array on the|Expected Array or Python scalar; got <class 'numpy\.float|"
     r"np\.float(32|16)\(.*differs from the reference",
     "optim: NumPy-scalar hyperparameters (np.float64(0.9)) stay NumPy scalars in the config: they fail "
     "against device arrays in nesterov and rmsprop, and a np.float32 beta2 computes 1 - beta2 in float32 "
     "for float64 parameters"),
    ("optimizers", r"w and dw int64|\bw int64, dw int64|\bdw int64, w int64",
     "optim: integer parameters are updated in place with truncation "
     "(sgd([1, 2, 3], lr 0.5) gives [0, 1, 2]; adam leaves them unchanged)"),
    ("optimizers", r"read-only", "optim: a read-only w fails with NumPy's 'assignment destination is "
     "read-only' after Adam/RMSProp updated their state arrays in place (a half-applied step)"),
    ("losses", r"individual_losses=", "bce_loss: individual_losses is not checked to be a bool "
     "(individual_losses='no' or 1 gives per-element losses)"),
    ("losses", r"softmax_loss\(.*zero-size array to reduction operation maximum", "softmax_loss of scores "
     "with no class column and no sample (x of shape (0, 0)) fails inside NumPy (xp.max over an empty axis)"),
    ("layers", r"avg_pool_backward with dout (float32 for float64|on strict)", "avg_pool_backward compares "
     "dout with nothing of the forward pass: a float32 or strict dout for float64 NumPy inputs is accepted"),
]


def known(row: dict) -> str | None:
    """The known defect a bad row is (its description), or None."""
    text = f"{row['label']} -> {row['detail']}"
    for family, pattern, what in KNOWN:
        if row["family"] == family and re.search(pattern, text, re.S):
            return what
    return None


# --- the families and the driver -----------------------------------------------------------------

#: name -> (run(examples, seed, emit), default examples, --quick examples). ``run`` calls
#: ``emit(case)`` for every input; families of launches ignore ``examples``.
FAMILIES: dict[str, tuple[Callable, int, int]] = {}


def from_strategy(strategy):
    """A family's ``run`` drawing its cases from a hypothesis strategy."""

    def run(examples: int, random_seed: int, emit) -> None:
        @seed(random_seed)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(strategy)
        def probe(case):
            emit(case)

        probe()

    return run


FAMILIES["layers"] = (from_strategy(layer_cases()), 1200, 80)
FAMILIES["losses"] = (from_strategy(loss_cases()), 600, 50)
FAMILIES["optimizers"] = (from_strategy(optimizer_cases()), 600, 50)
FAMILIES["model constructors"] = (from_strategy(model_constructor_cases()), 500, 50)
FAMILIES["nn constructors"] = (from_strategy(nn_constructor_cases()), 400, 30)
FAMILIES["model calls"] = (from_strategy(model_call_cases()), 600, 50)
FAMILIES["solver"] = (from_strategy(solver_cases()), 600, 50)
FAMILIES["check_accuracy"] = (from_strategy(check_accuracy_cases()), 200, 20)
FAMILIES["checkpoints"] = (from_strategy(checkpoint_cases()), 800, 60)
for _name, (_strategy, _run, _oracle) in hostile_data.FAMILIES.items():
    FAMILIES[f"data: {_name}"] = (from_strategy(data_cases(_strategy, _run, _oracle)), 150, 12)
FAMILIES["data: GPUNET_DATA settings"] = (from_strategy(environment_cases()), 30, 8)
FAMILIES["data: bombs"] = (run_data_bombs, 100, 4)
FAMILIES["backends: names"] = (from_strategy(backend_cases()), 300, 25)
FAMILIES["backends: asarray"] = (from_strategy(asarray_cases()), 400, 30)
FAMILIES["backends: threads"] = (from_strategy(thread_cases()), 3, 1)
FAMILIES["cli: train"] = (from_strategy(train_command_cases()), 250, 25)
FAMILIES["cli: eval, predict, info"] = (from_strategy(model_command_cases()), 250, 20)
FAMILIES["cli: subprocess"] = (run_subprocess_commands, len(SUBPROCESS_COMMANDS), 3)
FAMILIES["mpi: one bad rank"] = (run_mpi_cases, len(MPI_CASES), 2)
FAMILIES["gpunet bombs"] = (run_gpunet_bombs, len(GPUNET_BOMBS), 2)


def _limit_address_space() -> None:
    """Cap this process's address space a few GiB above its size now (soft limit only:
    launched processes lift it)."""
    import resource

    size = 0
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                size = int(line.split()[1]) * 1024
    if size:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + ADDRESS_SPACE_GIB * 2**30, hard))


def lift_limits() -> None:
    """``preexec_fn`` of launched processes: the address space without the child's cap."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def child(names: list[str], quick: bool, examples: int | None, random_seed: int) -> int:
    """Run the families ``names`` and print one JSON line per input (and per family end)."""
    _limit_address_space()
    out = sys.stdout
    sys.stdout = io.StringIO()  # what the code under test prints is not the protocol

    def send(**row):
        out.write(json.dumps(row) + "\n")
        out.flush()

    for name in names:
        run, full, small = FAMILIES[name]

        def emit(case: Case, family=name) -> None:
            send(family=family, start=case.label)
            outcome, detail = judge(case)
            send(family=family, label=case.label, outcome=outcome, detail=detail)
            sys.stdout.seek(0)
            sys.stdout.truncate()

        run(examples or (small if quick else full), random_seed, emit)
        send(family=name, done=True)
    return 0


def _pump(stream, into: queue.Queue) -> None:
    """Put each line of ``stream`` into ``into``, then None."""
    for line in stream:
        into.put(line)
    into.put(None)


def run_families(names: list[str], args) -> list[dict]:
    """Run the families in a child process (through /bin/sh); a child that stops answering
    for SILENCE_LIMIT seconds is killed, its current input counted as a hang, and the next
    family goes on in a new child. Returns one row per input."""
    rows: list[dict] = []
    remaining = list(names)
    while remaining:
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", *remaining,
                "--seed", str(args.seed)]
        argv += ["--quick"] if args.quick else []
        argv += ["--examples", str(args.examples)] if args.examples else []
        proc = subprocess.Popen(["/bin/sh", "-c", '"$0" "$@"; exit $?', *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        lines: queue.Queue = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        threading.Thread(target=lambda stream=proc.stderr, into=errors: into.extend(stream), daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=SILENCE_LIMIT)
            except queue.Empty:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rows.append({"family": current[0], "label": current[1], "outcome": "hang",
                             "detail": f"no answer for {SILENCE_LIMIT:g} s; the process was killed"})
                remaining = remaining[remaining.index(current[0]) + 1:]
                break
            if line is None:
                code = proc.wait()
                if code != 0 or remaining:
                    family = current[0] if current else remaining[0]
                    kind = "unbounded" if code in (-9, 137) else "traceback"
                    rows.append({"family": family, "label": current[1] if current else "(start)",
                                 "outcome": kind, "detail": f"the process ended with status {code}: "
                                 + "".join(errors)[-500:]})
                    remaining = remaining[remaining.index(family) + 1:]
                break
            row = json.loads(line)
            if "start" in row:
                current = (row["family"], row["start"])
            elif row.get("done"):
                remaining.remove(row["family"])
            else:
                rows.append(row)
    return rows


def table(rows: list[dict], names: list[str]) -> str:
    """The family x outcome counts, the totals, and every case that did not end well."""
    counts = {name: collections.Counter() for name in names}
    for r in rows:
        counts[r["family"]][r["outcome"]] += 1
    width = max(map(len, names + ["family"])) + 2
    head = "family".ljust(width) + "".join(f"{o:>15}" for o in OUTCOMES) + f"{'total':>8}"
    lines = [head, "-" * len(head)]
    total: collections.Counter = collections.Counter()
    for name in names:
        c = counts[name]
        total.update(c)
        lines.append(name.ljust(width) + "".join(f"{c[o]:>15}" for o in OUTCOMES) + f"{sum(c.values()):>8}")
    lines.append("-" * len(head))
    lines.append("total".ljust(width) + "".join(f"{total[o]:>15}" for o in OUTCOMES)
                 + f"{sum(total.values()):>8}")
    bad = [r for r in rows if r["outcome"] in BAD and not known(r)]
    lines.append(f"\n{sum(total.values())} inputs; {len(bad)} not ok or clear" + (":" if bad else ""))
    for r in bad:
        lines.append(f"  [{r['outcome']}] {r['family']}: {r['label']}\n      -> {r['detail']}")
    known_rows = collections.Counter(known(r) for r in rows if r["outcome"] in BAD and known(r))
    if known_rows:
        lines.append(f"\nknown defects in files being changed by others ({sum(known_rows.values())} inputs, "
                     "fixes proposed in the report):")
        lines += [f"  {n:4d}  {what}" for what, n in known_rows.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller pass (for the test suite)")
    parser.add_argument("--family", action="append", default=None, metavar="NAME",
                        help="run only the families whose name starts with NAME (repeatable), e.g. "
                        "'data' or 'layers'; --list shows them")
    parser.add_argument("--list", action="store_true", help="list the families and exit")
    parser.add_argument("--examples", type=int, default=None, help="inputs per generated family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.examples, args.seed)
    if args.list:
        print("\n".join(FAMILIES))
        return 0
    names = [f for f in FAMILIES if not args.family or any(f.startswith(p) for p in args.family)]
    if not names:
        parser.error(f"no family starts with {args.family}; --list shows them")
    started = time.perf_counter()
    rows = run_families(names, args)
    print(table(rows, names))
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any(r["outcome"] in BAD and not known(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
