"""``gpunet train``: a model on a dataset (GPU when there is one), ending with its test accuracy."""

from __future__ import annotations

import argparse
import sys
import time

MODELS = ("mlp", "cnn", "logistic")
OPTIMIZERS = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw")
DATASETS = ("digits", "breast-cancer", "fashion-mnist", "mnist", "cifar10")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _keep_prob(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a keep probability must be in (0, 1], got {text}")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``gpunet train`` on the subparsers ``sub``."""

    t = sub.add_parser("train", help="train a model and report its test accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", choices=DATASETS, default="digits",
                   help="dataset (digits and breast-cancer ship with gpunet)")
    t.add_argument("--data-path", default=None, help="directory of fashion-mnist / mnist / cifar10 files "
                   "(default: $GPUNET_DATA, then /usr/share/datasets/fashion-mnist)")
    t.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: FullyConnectedNet; cnn: ThreeLayerConvNet; logistic: 2 classes only")
    t.add_argument("--hidden", type=_positive(int), nargs="+", default=[128], metavar="N",
                   help="hidden layer sizes (mlp), or the hidden affine size (cnn)")
    t.add_argument("--filters", type=_positive(int), default=32, help="cnn: number of conv filters")
    t.add_argument("--filter-size", type=_positive(int), default=5, help="cnn: odd conv kernel size")
    t.add_argument("--normalization", choices=("none", "batchnorm", "layernorm"), default="none", help="mlp only")
    t.add_argument("--dropout", type=_keep_prob, default=1.0, help="mlp: keep probability (1 = off)")
    t.add_argument("--epochs", type=_non_negative_int, default=30)
    t.add_argument("--batch-size", type=_positive(int), default=32)
    t.add_argument("--lr", type=_positive(float), default=1e-3, help="learning rate")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    t.add_argument("--lr-decay", type=_positive(float), default=1.0, help="learning-rate factor per epoch")
    t.add_argument("--cosine", action="store_true", help="cosine learning-rate schedule instead of step decay")
    t.add_argument("--reg", type=float, default=0.0, help="L2 strength: loss += 0.5 * reg * sum(W**2)")
    t.add_argument("--patience", type=_positive(int), default=None, help="stop after this many epochs without a "
                   "better validation accuracy")
    t.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--seed", type=int, default=0, help="seeds the split, the initialisation and the batch order")
    t.add_argument("--checkpoint", default=None, metavar="PREFIX",
                   help="write PREFIX_epoch_K.npz after each epoch and PREFIX_best.npz")
    t.add_argument("--resume", default=None, metavar="FILE.npz", help="continue from a checkpoint")
    t.add_argument("--plot", default=None, metavar="FILE.png", help="save loss/accuracy curves (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="print only the final test accuracy")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI processes (needs gpunet[mpi]); launch as "
                   "`mpiexec -n 4 python -m mpi4py -m gpunet train --distributed`; --batch-size is "
                   "then per process and only rank 0 prints and writes files")

    t.set_defaults(run=run, parser=t)  # errors of `gpunet train` print its usage
    return t


def _build_model(args, ds, parser):
    from .. import models

    weight_scale = "he"
    if args.model == "logistic":
        if ds.num_classes != 2:
            parser.error(f"--model logistic needs 2 classes; {ds.name} has {ds.num_classes} (use --model mlp)")
        return models.LogisticClassifier(ds.num_features, weight_scale=1e-3, reg=args.reg, dtype=args.dtype,
                                         seed=args.seed)
    if args.model == "cnn":
        if len(ds.sample_shape) != 3:
            parser.error(f"--model cnn needs images (C, H, W); {ds.name} samples have shape {ds.sample_shape}")
        if args.filter_size % 2 == 0:
            parser.error(f"--filter-size must be odd so the convolution keeps the image size, got {args.filter_size}")
        return models.ThreeLayerConvNet(ds.sample_shape, num_filters=args.filters, filter_size=args.filter_size,
                                        hidden_dim=args.hidden[0], num_classes=ds.num_classes,
                                        weight_scale=weight_scale, reg=args.reg, dtype=args.dtype, seed=args.seed)
    return models.FullyConnectedNet(args.hidden, input_dim=ds.num_features, num_classes=ds.num_classes,
                                    dropout_keep_ratio=args.dropout,
                                    normalization=None if args.normalization == "none" else args.normalization,
                                    reg=args.reg, weight_scale=weight_scale, dtype=args.dtype, seed=args.seed)


def run(args) -> int:
    """Train as ``args`` say; print the test accuracy (rank 0)."""
    parser = args.parser
    from .. import data, use_backend
    from ..backend import BackendUnavailableError
    from ..backend.info import device_summary
    from ..solver import Solver

    comm = _distributed_comm(parser) if args.distributed else None
    root = comm is None or comm.rank == 0
    say = print if root and not args.quiet else (lambda *a: None)
    try:
        backend = use_backend(args.backend).name
    except BackendUnavailableError as exc:
        parser.error(str(exc))
    if comm is not None and backend == "cupy":
        from ..distributed import use_local_device

        use_local_device(comm)  # one GPU per process on each machine
    say(f"backend: {backend} on {device_summary(backend)}")

    started = time.perf_counter()
    try:
        ds = data.load_dataset(args.data, args.data_path, seed=args.seed, flatten=args.model != "cnn")
    except (data.DatasetNotFoundError, data.DataFormatError) as exc:
        parser.error(str(exc))
    say(f"data: {ds.name}: {len(ds.y_train)} train / {len(ds.y_val)} val / {len(ds.y_test)} test samples "
        f"of shape {ds.sample_shape}, {ds.num_classes} classes ({time.perf_counter() - started:.1f} s to load)")

    size = comm.size if comm is not None else 1
    if comm is not None:
        n = len(ds.y_train)
        say(f"distributed: {size} process(es) over MPI; batch size {args.batch_size} per process, "
            f"{args.batch_size * size} per step; {n - n % size} of {n} training samples per epoch")
        if size > 1 and root and "mpi4py.run" not in sys.modules:
            print("warning: not started with `python -m mpi4py`: if one process fails, the others may "
                  "wait forever; launch as `mpiexec -n N python -m mpi4py -m gpunet train --distributed`",
                  file=sys.stderr)
    model = _build_model(args, ds, parser)
    say(f"model: {type(model).__name__}, {sum(int(p.size) for p in model.params.values()):,} parameters, {args.dtype}")
    solver = Solver(
        model, ds.as_solver_data(),
        update_rule=args.optimizer, optim_config={"learning_rate": args.lr}, lr_decay=args.lr_decay,
        lr_schedule="cosine" if args.cosine else None, batch_size=args.batch_size, num_epochs=args.epochs,
        num_train_samples=2000, patience=args.patience, checkpoint_name=args.checkpoint, resume=args.resume,
        seed=args.seed, verbose=not args.quiet, print_every=max(1, len(ds.y_train) // (args.batch_size * size) // 4),
        comm=comm,
    )
    t0 = time.perf_counter()
    solver.train()
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


def _distributed_comm(parser):
    """The MPI communicator of ``--distributed`` (an argparse error if mpi4py is missing)."""
    from ..distributed import get_comm

    try:
        return get_comm("mpi")
    except ImportError as exc:
        parser.error(f"--distributed: {exc}")
