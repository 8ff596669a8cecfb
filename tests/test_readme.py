"""README's Python blocks run on their own, as written.

Each ```python block of README.md runs in a fresh interpreter, in an empty directory, with
a time limit. A block that needs something optional says so on the line before its fence,
``<!-- requires: train -->`` (or ``mpi``, ``gpu``, several separated by commas), and is
skipped, saying what is missing, where that is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import gpunet
from gpunet._install import clone_install, pip_install
from gpunet.backend import cupy_status

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT = 120  # seconds per block; the blocks that train are short runs on the shipped digits
REQUIRES = re.compile(r"<!--\s*requires:\s*(.*?)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    code: str
    requires: tuple[str, ...]


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, each with the names of its ``requires`` comment."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        match = REQUIRES.search(before)
        requires = tuple(n for n in re.split(r"[\s,]+", match.group(1)) if n) if match else ()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"the ```python block at line {i + 1} is never closed")
        blocks.append(Block(i + 1, "\n".join(lines[i + 1:end]) + "\n", requires))
        i = end + 1
    return blocks


def _missing_modules(extra: str, modules: tuple[str, ...]) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(missing)}: {pip_install(extra)}" if missing else None


def _missing_mpi() -> str | None:
    if importlib.util.find_spec("mpi4py") is None or shutil.which("mpiexec") is None:
        return f"needs mpi4py and an MPI launcher: {clone_install('mpi')} mpich"
    return None


def _missing_gpu() -> str | None:
    reason = cupy_status()[1]
    return f"needs a usable CUDA device: {reason}" if reason else None


# requirement name -> () -> None when present, else the skip reason
MISSING = {
    "train": lambda: _missing_modules("train", ("matplotlib",)),
    "mpi": _missing_mpi,
    "gpu": _missing_gpu,
}

BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_every_python_block_is_found():
    text = README.read_text(encoding="utf-8")
    assert BLOCKS and len(BLOCKS) == text.count("\n```python\n")
    assert all(block.code.strip() for block in BLOCKS)


def test_blocks_and_their_requirements_are_read_from_markdown():
    text = ("# t\n\n```python\nprint(1)\n```\n\n<!-- requires: mpi, gpu -->\n\n```python\nx = 2\n"
            "print(x)\n```\n\n```sh\nls\n```\n<!-- requires: train -->\ntext\n```python\npass\n```\n")
    assert python_blocks(text) == [Block(3, "print(1)\n", ()), Block(9, "x = 2\nprint(x)\n", ("mpi", "gpu")),
                                   Block(19, "pass\n", ())]
    with pytest.raises(ValueError, match="line 1 is never closed"):
        python_blocks("```python\nprint(1)\n")


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs_on_its_own(block, tmp_path):
    unknown = set(block.requires) - set(MISSING)
    assert not unknown, f"README.md:{block.line}: unknown requirement {sorted(unknown)}; known: {sorted(MISSING)}"
    missing = [reason for reason in (MISSING[name]() for name in block.requires) if reason]
    if missing:
        pytest.skip("; ".join(missing))
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    # the gpunet under test, also when the suite runs from a clone that is not installed
    source = str(Path(gpunet.__file__).resolve().parents[1])
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"README.md:{block.line}: the block failed on its own (exit {proc.returncode}):\n"
                    f"{block.code}--- stderr ---\n{proc.stderr[-4000:]}", pytrace=False)
