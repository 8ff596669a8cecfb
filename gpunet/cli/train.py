"""``gpunet train``: a model on a dataset (GPU when there is one), ending with its test accuracy.

Every flag is checked, and every path (``--checkpoint``, ``--plot``, ``--resume``) is tried,
before the data is loaded. Flags without a value take the dataset's defaults
(:data:`DEFAULTS`), or with ``--resume`` the values the checkpoint's run was started with
(recorded in its ``run`` metadata): a flag given on the command line wins and a changed
hyperparameter is reported; the data and the model of a resumed run cannot change.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from .. import _validate
from .errors import UsageError

MODELS = ("mlp", "cnn", "logistic")
OPTIMIZERS = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw")
DATASETS = ("digits", "breast-cancer", "fashion-mnist", "mnist", "cifar10")
VAL, TEST = 0.1, 0.2  # fractions carved from the data (datasets without an official test set)
_SHIPPED = ("digits", "breast-cancer")  # no files to find, no official test set

#: Defaults per dataset (and ``cnn``: per model), chosen so that a first run takes about two
#: minutes at most on a laptop CPU (docs/cli.md).
DEFAULTS = {
    "digits": dict(epochs=30, batch_size=32, lr=1e-3, hidden=[128]),
    "breast-cancer": dict(epochs=30, batch_size=32, lr=1e-3, hidden=[128]),
    "fashion-mnist": dict(epochs=10, batch_size=128, lr=1e-3, hidden=[256]),
    "mnist": dict(epochs=10, batch_size=128, lr=1e-3, hidden=[256]),
    "cifar10": dict(epochs=5, batch_size=128, lr=1e-3, hidden=[256]),
}
CNN_DEFAULTS = {
    "digits": dict(epochs=10, filters=16, hidden=[64]),
    "breast-cancer": dict(),
    "fashion-mnist": dict(epochs=1, batch_size=64, filters=8, hidden=[64]),
    "mnist": dict(epochs=1, batch_size=64, filters=8, hidden=[64]),
    "cifar10": dict(epochs=1, batch_size=64, filters=8, hidden=[64]),
}
FALLBACK = dict(filters=32)

#: Flags a resumed run cannot change: they decide its data and its model.
FIXED_ON_RESUME = ("data", "data_path", "seed", "model", "hidden", "filters", "filter_size",
                   "normalization", "dtype")
#: Solver keyword -> flag, for messages.
FLAG_OF = {"optim_config['learning_rate']": "--lr", "num_epochs": "--epochs",
           "batch_size": "--batch-size", "update_rule": "--optimizer", "lr_schedule":
           "--lr-decay/--cosine", "patience": "--patience", "drop_last": "--drop-last",
           "num_train": "training examples"}


def _number(kind, **bounds):
    """An argparse type: ``kind`` (int or float) checked by :mod:`gpunet._validate`."""
    check = _validate.integer if kind is int else _validate.real

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an int' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        try:
            return check("the value", value, **bounds)
        except _validate.ArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind.__name__
    return parse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except for flags whose default depends on the dataset (None)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``gpunet train`` on the subparsers ``sub``."""
    per = "default: per dataset, see DEFAULTS in docs/cli.md"
    parser = sub.add_parser("train", help="train a model and report its test accuracy",
                            formatter_class=_Formatter, allow_abbrev=False,
                            description="Train a model and report its test accuracy. With "
                            "--resume, flags not given keep the checkpoint's values.")
    flags = []

    class _Recording:  # add_argument, remembering each flag's Action (its dest and names)
        def add_argument(self, *names, **kw):
            flags.append(parser.add_argument(*names, **kw))

    t = _Recording()
    t.add_argument("--data", choices=DATASETS, default=None,
                   help="dataset (digits and breast-cancer ship with gpunet; default: digits)")
    t.add_argument("--data-path", default=None, metavar="DIR",
                   help="directory of the fashion-mnist / mnist / cifar10 files (default: "
                   "$GPUNET_DATA, then /usr/share/datasets/fashion-mnist)")
    t.add_argument("--model", choices=MODELS, default=None,
                   help="mlp: FullyConnectedNet; cnn: ThreeLayerConvNet; logistic: 2 classes "
                   "only (default: mlp)")
    t.add_argument("--hidden", type=_number(int, low=1), nargs="+", default=None, metavar="N",
                   help=f"hidden layer sizes (mlp), or the hidden affine size (cnn) ({per})")
    t.add_argument("--filters", type=_number(int, low=1), default=None,
                   help=f"cnn: number of conv filters ({per})")
    t.add_argument("--filter-size", type=_number(int, low=1), default=5,
                   help="cnn: odd conv kernel size")
    t.add_argument("--normalization", choices=("none", "batchnorm", "layernorm"), default="none",
                   help="mlp only")
    t.add_argument("--dropout", type=_number(float, low=0.0, high=1.0, low_open=True),
                   default=1.0, help="mlp: keep probability (1 = off)")
    t.add_argument("--epochs", type=_number(int, low=0), default=None,
                   help=f"total number of epochs, resumed ones included ({per})")
    t.add_argument("--batch-size", type=_number(int, low=1), default=None, help=per)
    t.add_argument("--drop-last", action="store_true",
                   help="drop the incomplete last batch of each epoch (a last batch of one "
                   "example is always merged into the one before)")
    t.add_argument("--lr", type=_number(float, low=0.0, low_open=True), default=None,
                   help=f"learning rate ({per})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="update rule")
    t.add_argument("--lr-decay", type=_number(float, low=0.0, low_open=True), default=1.0,
                   help="learning-rate factor per epoch")
    t.add_argument("--cosine", action="store_true",
                   help="cosine learning-rate schedule instead of step decay")
    t.add_argument("--reg", type=_number(float, low=0.0), default=0.0,
                   help="L2 strength: loss += 0.5 * reg * sum(W**2)")
    t.add_argument("--patience", type=_number(int, low=1), default=None,
                   help="stop after this many epochs without a better validation accuracy")
    t.add_argument("--backend", choices=("auto", "numpy", "cupy"), default=None,
                   help="default: $GPUNET_BACKEND, else auto (CuPy when a GPU is usable)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="parameter dtype")
    t.add_argument("--seed", type=_number(int, low=0), default=0,
                   help="seeds the split, the initialisation and the batch order")
    t.add_argument("--checkpoint", default=None, metavar="PREFIX",
                   help="write PREFIX_last.npz after every epoch and PREFIX_best.npz for the "
                   "best one (a trailing .npz is dropped)")
    t.add_argument("--keep-every", type=_number(int, low=1), default=None, metavar="N",
                   help="with --checkpoint: also keep PREFIX_epoch_K.npz every N epochs")
    t.add_argument("--resume", default=None, metavar="FILE.npz",
                   help="continue from a checkpoint (flags not given keep its values)")
    t.add_argument("--plot", default=None, metavar="FILE.png",
                   help="save loss/accuracy curves (needs matplotlib; .png added if no "
                   "extension)")
    t.add_argument("--quiet", action="store_true", help="print only the final test accuracy")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI processes (needs gpunet[mpi]); launch as "
                   "`mpiexec -n 4 python -m mpi4py -m gpunet train --distributed`; --batch-size is "
                   "then per process and only rank 0 prints and writes files")
    parser.set_defaults(run=run, parser=parser, flags=tuple(flags))
    return parser


# --- settings -----------------------------------------------------------------------------------


def _explicit(args) -> set:
    """Destinations of the flags given on the command line (``--lr=0.1`` counts as --lr)."""
    given = {a.split("=", 1)[0] for a in getattr(args, "argv", sys.argv[1:])
             if a.startswith("--")}
    return {a.dest for a in args.flags if any(opt in given for opt in a.option_strings)}


def settle(args, explicit: set, recorded: dict | None) -> dict:
    """Fill every flag without a value: the checkpoint's ``recorded`` run flags (resume),
    then the dataset's defaults. Returns ``{dest: "explicit" | "checkpoint" | "default"}``.
    Raises :class:`UsageError` when a resumed run would change its data or model."""
    source = {}
    recorded = recorded or {}
    for dest in [a.dest for a in args.flags]:
        if dest in explicit:
            source[dest] = "explicit"
            if dest in FIXED_ON_RESUME and dest in recorded and recorded[dest] != getattr(args, dest):
                flag = "--" + dest.replace("_", "-")
                raise UsageError(
                    f"{flag} {_show(getattr(args, dest))}: the checkpoint's run used {flag} "
                    f"{_show(recorded[dest])}; a resumed run keeps its data and model (drop "
                    f"{flag}, or start a new run without --resume)")
        elif dest in recorded and dest not in ("resume", "quiet", "distributed", "plot",
                                                "backend"):
            setattr(args, dest, recorded[dest])
            source[dest] = "checkpoint"
        else:
            source[dest] = "default"
    args.data = args.data or "digits"
    args.model = args.model or "mlp"
    table = {**FALLBACK, **DEFAULTS[args.data],
             **(CNN_DEFAULTS[args.data] if args.model == "cnn" else {})}
    for dest, value in table.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    return source


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def check_paths(args) -> None:
    """Every path the run will use, tried now (UsageError saying which flag and why)."""
    from ..training.options import checkpoint_prefix
    from ..training.plot import png_path

    if args.data_path is not None and args.data in _SHIPPED:
        raise UsageError(f"--data-path is for fashion-mnist, mnist and cifar10; {args.data} "
                         "ships with gpunet (drop --data-path)")
    if args.keep_every is not None and args.checkpoint is None:
        raise UsageError("--keep-every needs --checkpoint PREFIX")
    if args.checkpoint is not None:
        try:
            prefix = Path(checkpoint_prefix(args.checkpoint))
        except (TypeError, ValueError):
            raise UsageError(f"--checkpoint {args.checkpoint}: give a file prefix such as "
                             "runs/digits (files PREFIX_last.npz and PREFIX_best.npz)") from None
        if prefix.is_dir():
            raise UsageError(f"--checkpoint {args.checkpoint} is a directory; give a file "
                             f"prefix inside it, e.g. {prefix / 'run'}")
        writable(prefix.parent, "--checkpoint", args.checkpoint, create=True)
    if args.plot is not None:
        path = png_path(args.plot)
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError:
            raise UsageError('--plot needs matplotlib: pip install "matplotlib>=3.8"') from None
        kinds = FigureCanvasBase.get_supported_filetypes()
        if path.suffix[1:].lower() not in kinds:
            raise UsageError(f"--plot {args.plot}: cannot write {path.suffix!r} files; use one "
                             f"of {', '.join('.' + k for k in sorted(kinds))}")
        writable(path.parent, "--plot", args.plot, create=False)
        args.plot = str(path)


def writable(directory: Path, flag: str, value: str, create: bool) -> None:
    """A UsageError naming ``flag value`` unless a file can be written in ``directory``
    (made first with ``create``, else it must exist)."""
    from ..checkpoint import try_directory

    directory = directory if str(directory) else Path(".")
    if not create and not directory.is_dir():
        raise UsageError(f"{flag} {value}: the directory {directory} does not exist")
    try:
        try_directory(directory)
    except OSError as exc:
        raise UsageError(f"{flag} {value}: cannot write in {directory} "
                         f"({exc.strerror or exc})") from None


def choose_backend(args) -> tuple[str, str]:
    """Set the process's backend from ``--backend``, else ``$GPUNET_BACKEND``, else auto;
    returns ``(name, why)`` (why auto chose it, or where the choice came from)."""
    from .. import set_backend
    from ..backend import BackendUnavailableError, cupy_status

    name, origin = args.backend, "--backend"
    if name is None:
        env = os.environ.get("GPUNET_BACKEND")
        name, origin = (env, "GPUNET_BACKEND") if env else ("auto", "--backend")
    try:
        chosen = set_backend(name)
    except BackendUnavailableError as exc:
        raise UsageError(f"{origin} {name}: {exc}" + (
            "; choose another with --backend" if origin != "--backend" else "")) from None
    except (ValueError, TypeError):
        raise UsageError(f"{origin}={name!r} is not a backend: use auto, numpy or cupy "
                         f"(--backend NAME beats GPUNET_BACKEND)") from None
    why = ""
    if name.lower() == "auto":
        _, reason = cupy_status()
        why = (f" (auto: {reason.split('; ')[0]})" if reason
               else " (auto: a CUDA device is usable)")
    elif origin == "GPUNET_BACKEND":
        why = " (from GPUNET_BACKEND)"
    return chosen, why


def run_record(ds, *, data_path=None, seed=0, val=None, test=None, model: str | None = None,
             eval_batch_size: int | None = None) -> dict:
    """What a training run records (``Solver(run_info=...)``, JSON data) so that ``gpunet
    eval`` reloads its data and ``gpunet predict`` prepares new samples the same way:
    the Dataset ``ds`` and the loader arguments used (``val``/``test`` None = the loader's
    defaults), the training split's normalisation, the model kind ("mlp", "cnn", ...) and
    the Solver's ``eval_batch_size`` (a float32 matrix product may round differently for
    another batch size, so eval uses the same one to print exactly training's number)."""
    normalized = ds.mean is not None
    return {
        "data": ds.name, "data_path": str(Path(data_path).resolve()) if data_path else None,
        "seed": seed, "val": val, "test": test, "normalize": normalized, "flatten": ds.is_flat,
        "sample_shape": list(ds.sample_shape), "model": model, "eval_batch_size": eval_batch_size,
        "mean": ds.mean.tolist() if normalized else None, "std": ds.std.tolist() if normalized else None,
    }


def run_info(args, ds) -> dict:
    """:func:`run_record` of this run plus its flags (``"args"``), which ``--resume`` takes back."""
    return {
        **run_record(ds, data_path=args.data_path, seed=args.seed, val=VAL,
                     test=TEST if args.data in _SHIPPED else None, model=args.model,
                     eval_batch_size=max(args.batch_size, 100)),
        "args": {a.dest: getattr(args, a.dest) for a in args.flags
                 if a.dest not in ("resume", "quiet", "distributed", "plot", "backend")},
    }


# --- the command --------------------------------------------------------------------------


def _build_model(args, ds):
    from .. import models

    weight_scale = "he"
    if args.model == "logistic":
        if ds.num_classes != 2:
            raise UsageError(f"--model logistic needs 2 classes; {ds.name} has "
                             f"{ds.num_classes} (use --model mlp)")
        return models.LogisticClassifier(ds.num_features, weight_scale=1e-3, reg=args.reg,
                                         dtype=args.dtype, seed=args.seed)
    if args.model == "cnn":
        if len(ds.sample_shape) != 3:
            raise UsageError(f"--model cnn needs images (C, H, W); {ds.name} samples have "
                             f"shape {ds.sample_shape}")
        if args.filter_size % 2 == 0:
            raise UsageError(f"--filter-size must be odd so the convolution keeps the image "
                             f"size, got {args.filter_size}")
        return models.ThreeLayerConvNet(ds.sample_shape, num_filters=args.filters,
                                        filter_size=args.filter_size,
                                        hidden_dim=args.hidden[0], num_classes=ds.num_classes,
                                        weight_scale=weight_scale, reg=args.reg,
                                        dtype=args.dtype, seed=args.seed)
    return models.FullyConnectedNet(
        args.hidden, input_dim=ds.num_features, num_classes=ds.num_classes,
        dropout_keep_ratio=args.dropout,
        normalization=None if args.normalization == "none" else args.normalization,
        reg=args.reg, weight_scale=weight_scale, dtype=args.dtype, seed=args.seed)


def _read_resume(path: str):
    """``(meta, recorded flags)`` of the checkpoint to resume (CheckpointError: exit 1)."""
    from ..checkpoint import load_npz

    _, meta = load_npz(path)
    run = meta["run"] if isinstance(meta.get("run"), dict) else {}
    flags = run["args"] if isinstance(run.get("args"), dict) else {}
    return meta, flags


def run(args) -> int:
    """Train as ``args`` say; print the test accuracy (rank 0)."""
    from ..solver import Solver
    from ..training.callbacks import TrainingInterrupted

    explicit = _explicit(args)
    meta, recorded = (None, None)
    if args.resume is not None:
        if not Path(args.resume).is_file():
            what = "is a directory" if Path(args.resume).is_dir() else "does not exist"
            raise UsageError(f"--resume {args.resume}: the file {what}")
        meta, recorded = _read_resume(args.resume)
    source = settle(args, explicit, recorded)
    check_paths(args)
    if meta is not None:
        done = meta.get("epoch", 0)
        if source["epochs"] == "default":  # a checkpoint without the run's flags
            args.epochs = meta.get("num_epochs") or args.epochs
        if args.epochs <= done:
            how = (f"--epochs {args.epochs}" if source["epochs"] == "explicit"
                   else f"the checkpoint's run had --epochs {args.epochs}")
            raise UsageError(f"{how}, and {args.resume} has trained {done} epochs already; "
                             f"--epochs counts all epochs: pass --epochs {done + 5} to train "
                             "5 more")

    comm = _distributed_comm() if args.distributed else None
    root = comm is None or comm.rank == 0
    args.prints_errors = root
    say = print if root and not args.quiet else (lambda *a: None)
    error = None
    try:
        ds, model = _set_up(args, comm, say)
    except Exception as exc:  # noqa: BLE001 - agreed on below, then raised
        error = exc
    if comm is not None:  # a failure on any rank ends every rank; rank 0 says why
        from ..training.parallel import make_parallel

        make_parallel(comm).agree(error, "set up the run")
    if error is not None:
        raise error
    size = comm.size if comm is not None else 1
    keywords = dict(
        update_rule=("optimizer", args.optimizer),
        optim_config=("lr", {"learning_rate": args.lr}),
        lr_decay=("lr_decay", args.lr_decay),
        lr_schedule=("cosine", "cosine" if args.cosine else None),
        batch_size=("batch_size", args.batch_size), num_epochs=("epochs", args.epochs),
        patience=("patience", args.patience), drop_last=("drop_last", args.drop_last))
    # Resuming, a flag that was neither given nor recorded leaves the checkpoint's setting.
    solver_kw = {k: v for k, (dest, v) in keywords.items()
                 if meta is None or source[dest] != "default"}
    if "lr_schedule" in solver_kw and solver_kw["lr_schedule"] is None:
        del solver_kw["lr_schedule"]
    solver = Solver(model, ds.as_solver_data(), num_train_samples=2000,
                    checkpoint_name=args.checkpoint, keep_every=args.keep_every,
                    resume=args.resume, seed=args.seed, verbose=not args.quiet, comm=comm,
                    run_info=run_info(args, ds), **solver_kw)
    solver.display_names = FLAG_OF
    steps = solver.iterations_per_epoch
    say(f"training: epochs {solver.epoch + 1}-{solver.num_epochs} of {steps} steps "
        f"(batch size {solver.batch_size}), {solver.update_rule_name} lr "
        f"{solver.state.base_lr[next(iter(solver.state.base_lr))]:g}")
    t0 = time.perf_counter()
    try:
        solver.train()
    except TrainingInterrupted as exc:
        if root:
            launch = ("gpunet train" if comm is None else f"mpiexec -n {size} python -m "
                      "mpi4py -m gpunet train --distributed")
            hint = (f"; continue with: {launch} --resume {exc.checkpoint}"
                    if exc.checkpoint else
                    "" if args.checkpoint else " (use --checkpoint PREFIX to be able to resume)")
            print(f"gpunet: interrupted: {exc}{hint}", file=sys.stderr, flush=True)
        if comm is not None:  # every rank stopped at the same step: end MPI cleanly, so
            comm.barrier()  # mpi4py does not turn the exit status into an MPI_Abort
            from mpi4py import MPI

            MPI.Finalize()
        raise SystemExit(130) from None
    seconds = time.perf_counter() - t0
    if solver.best_epoch is not None:
        say(f"best validation accuracy {solver.best_val_acc:.4f} (epoch {solver.best_epoch}); "
            f"trained in {seconds:.1f} s")
    if args.plot and root:
        solver.plot(args.plot)
        say(f"curves written to {args.plot}")
    accuracy = solver.check_accuracy(ds.X_test, ds.y_test)  # collective under MPI
    if root:
        print(f"test accuracy: {accuracy:.4f}")
    return 0


def _set_up(args, comm, say):
    """The backend, the data and the model of the run: ``(dataset, model)``."""
    from .. import data
    from ..backend.info import device_summary

    root = comm is None or comm.rank == 0
    backend, why = choose_backend(args)
    if comm is not None and backend == "cupy":
        from ..distributed import use_local_device

        use_local_device(comm)  # one GPU per process on each machine
    say(f"backend: {backend} on {device_summary(backend)}{why}")

    started = time.perf_counter()
    kwargs = {"val": VAL, **({"test": TEST} if args.data in _SHIPPED else {})}
    try:
        ds = data.load_dataset(args.data, args.data_path, seed=args.seed,
                               flatten=args.model != "cnn", **kwargs)
    except data.DatasetNotFoundError as exc:
        raise UsageError(f"--data {args.data}: {_one_line(exc)}") from None
    found = getattr(ds, "source", None)  # where the files were found
    say(f"data: {ds.name}{f' from {found}' if found else ''}: {len(ds.y_train)} "
        f"train / {len(ds.y_val)} val / {len(ds.y_test)} test samples of shape "
        f"{ds.sample_shape}, {ds.num_classes} classes ({time.perf_counter() - started:.1f} s "
        "to load)")

    size = comm.size if comm is not None else 1
    if comm is not None:
        n = len(ds.y_train)
        say(f"distributed: {size} process(es) over MPI; batch size {args.batch_size} per "
            f"process, {args.batch_size * size} per step; {n - n % size} of {n} training "
            "samples per epoch")
        if size > 1 and root and "mpi4py.run" not in sys.modules:
            print("warning: not started with `python -m mpi4py`: if one process fails, the "
                  "others may wait forever; launch as `mpiexec -n N python -m mpi4py -m gpunet "
                  "train --distributed`", file=sys.stderr)
    model = _build_model(args, ds)
    say(f"model: {type(model).__name__}, {sum(int(p.size) for p in model.params.values()):,} "
        f"parameters, {args.dtype}")
    return ds, model


def _one_line(exc) -> str:
    """A loader's several-line message as one line, in flag terms."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    text = lines[0].replace(" Looked in:", "").rstrip(" .:")
    looked = [line for line in lines[1:] if not line.startswith("To fix")]
    fix = [line for line in lines[1:] if line.startswith("To fix")]
    if looked:
        text += "; looked in: " + ", ".join(looked)
    if fix:
        text += "; " + re.sub(r"call load_\w+\(path=DIR\)", "pass --data-path DIR",
                              fix[0].replace("To fix: ", "to fix: "))
    return text


def _distributed_comm():
    """The MPI communicator of ``--distributed`` (a usage error if mpi4py is missing)."""
    from ..distributed import get_comm

    try:
        return get_comm("mpi")
    except ImportError as exc:
        raise UsageError(f"--distributed: {exc}") from None
