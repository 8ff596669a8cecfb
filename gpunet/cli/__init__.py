"""The ``gpunet`` command: one module per subcommand (``train``, ``info``, ``eval``,
``predict``), each with ``add_parser(subparsers)`` registering its options and returning
its parser, and ``run(args) -> exit code``.

Errors are one line on stderr, ``gpunet: error: ...``, in the command line's terms: exit
status 2 for a usage error (a bad flag, a path that cannot be used; raised as
:class:`UsageError` or through ``parser.error``), 1 for a failure while running, 130 for
Ctrl-C. ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from . import evaluate, info, predict, train
from .errors import Parser, UsageError, print_error

COMMANDS = (train, info, evaluate, predict)


def build_parser() -> argparse.ArgumentParser:
    """The ``gpunet`` parser with every subcommand of :data:`COMMANDS`."""
    import gpunet

    parser = Parser(prog="gpunet", description="gpunet: train and inspect models.")
    parser.add_argument("--version", action="version", version=f"gpunet {gpunet.__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command")
    names = [command.add_parser(sub).prog.rsplit(" ", 1)[-1] for command in COMMANDS]
    sub.metavar = "{" + ",".join(names) + "}"  # the commands, without their aliases
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gpunet`` command line ``argv`` (default: ``sys.argv[1:]``); returns the exit
    code (0), or raises ``SystemExit`` with 2 (usage), 1 (failure) or 130 (Ctrl-C) after one
    line on stderr, as argparse does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    if not argv:  # bare `gpunet`: what it can do
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    args.debug, args.argv = debug, argv
    try:
        return args.run(args)
    except UsageError as exc:
        if debug:
            raise
        print_error(str(exc), args)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if debug:
            raise
        print_error("interrupted", args, prefix="gpunet: ")
        raise SystemExit(130) from None
    except Exception as exc:  # a failure: one line unless --debug
        if debug:
            raise
        known = isinstance(exc, (ValueError, OSError, FloatingPointError, ImportError,
                                 RuntimeError, LookupError))
        text = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}"
        print_error(text if known else f"{text} (run with --debug to see the traceback)", args)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(main())
