"""``gpunet info``: versions, the BLAS NumPy uses, and whether CuPy can use a GPU (never fails)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``gpunet info`` on the subparsers ``sub``."""
    p = sub.add_parser("info", help="versions, the BLAS NumPy uses, and whether CuPy can use a GPU")
    p.set_defaults(run=run, parser=p)
    return p


def run(args) -> int:
    """Print the report of :func:`gpunet.backend.info.report`."""
    from ..backend.info import report

    print("\n".join(report()))
    return 0
