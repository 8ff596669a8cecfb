"""Errors of the ``gpunet`` command: one line on stderr, ``gpunet: error: ...``."""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        print_error(f"{message} (see '{self.prog} -h')")
        raise SystemExit(2)


def print_error(message: str, args=None, prefix: str = "gpunet: error: ") -> None:
    """Print ``message`` to stderr (not on the MPI ranks that stay silent)."""
    if args is not None and not getattr(args, "prints_errors", True):
        return
    print(prefix + message, file=sys.stderr, flush=True)
