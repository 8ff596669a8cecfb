"""The ``gpunet`` command: one module per subcommand (``train``, ``info``), each with
``add_parser(subparsers)`` registering its options and ``run(args) -> exit code``.

Errors are one line on stderr, ``gpunet: error: ...``, in the command line's terms: exit
status 2 for a usage error (a bad flag, a path that cannot be used; raised as
:class:`UsageError` or through ``parser.error``), 1 for a failure while running, 130 for
Ctrl-C. ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        _print_error(f"{message} (see '{self.prog} -h')")
        raise SystemExit(2)


from . import info, train  # noqa: E402 - the subcommands import UsageError from here

COMMANDS = (train, info)


def build_parser() -> argparse.ArgumentParser:
    """The ``gpunet`` parser with every subcommand of :data:`COMMANDS`."""
    import gpunet

    parser = Parser(prog="gpunet", description="gpunet: train and inspect models.")
    parser.add_argument("--version", action="version", version=f"gpunet {gpunet.__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(
        c.__name__.rsplit(".", 1)[-1] for c in COMMANDS) + "}")
    for command in COMMANDS:
        command.add_parser(sub)
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
        _print_error(str(exc), args)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if debug:
            raise
        _print_error("interrupted", args, prefix="gpunet: ")
        raise SystemExit(130) from None
    except Exception as exc:  # a failure: one line unless --debug
        if debug:
            raise
        known = isinstance(exc, (ValueError, OSError, FloatingPointError, ImportError,
                                 RuntimeError, LookupError))
        text = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}"
        _print_error(text if known else f"{text} (run with --debug to see the traceback)", args)
        raise SystemExit(1) from None


def _print_error(message: str, args=None, prefix: str = "gpunet: error: ") -> None:
    """Print ``message`` to stderr (not on the MPI ranks that stay silent)."""
    if args is not None and not getattr(args, "prints_errors", True):
        return
    print(prefix + message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
