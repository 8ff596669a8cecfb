"""The ``gpunet`` command: one module per subcommand (``train``, ``info``), each with
``add_parser(subparsers)`` registering its options and ``run(args) -> exit code``."""

from __future__ import annotations

import argparse
import sys

from . import evaluate, info, predict, train

COMMANDS = (train, info, evaluate, predict)


def build_parser() -> argparse.ArgumentParser:
    """The ``gpunet`` parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="gpunet", description="gpunet: train and inspect models.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{" + ",".join(c.__name__.rsplit(".", 1)[-1] for c in COMMANDS) + "}")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gpunet`` command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
