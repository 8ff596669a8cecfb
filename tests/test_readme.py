"""README.md and docs/*.md say what works: their Python blocks run, their commands parse.

Each ```python block runs in a fresh interpreter, in an empty directory, with a time limit.
A block that needs something optional says so on the line before its fence,
``<!-- requires: train -->`` (or ``mpi``, ``gpu``, ``torch``, several separated by commas),
and is skipped, saying what is missing, where that is not installed.

Every ``gpunet ...`` command is parsed by the command's own parser
(:func:`gpunet.cli.build_parser`): its subcommand and flags exist and its values pass their
checks. Commands are the lines of ```sh, ```bash and ```console blocks (also after ``$ ``,
``&&``, ``;`` or ``python -m gpunet``) and the inline code spans starting with ``gpunet ``
(one that only names a subcommand, `gpunet eval`, is parsed with ``-h``). A command shown
failing on purpose goes in a ```text block with its output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import gpunet
from gpunet._install import clone_install, pip_install
from gpunet.backend import cupy_status
from gpunet.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TIMEOUT = 120  # seconds per block; the blocks that train are short runs on the shipped digits
REQUIRES = re.compile(r"<!--\s*requires:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")
SHELL = ("sh", "bash", "console", "shell")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    code: str
    requires: tuple[str, ...]


def fenced_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line, language, lines)`` of every fenced block of a Markdown text (line of the fence, 1-based)."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"the ```{match.group(1)} block at line {i + 1} is never closed")
        blocks.append((i + 1, match.group(1), lines[i + 1:end]))
        i = end + 1
    return blocks


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, each with the names of its ``requires`` comment."""
    lines = text.splitlines()
    blocks = []
    for line, language, body in fenced_blocks(text):
        if language != "python":
            continue
        before = next((t for t in reversed(lines[:line - 1]) if t.strip()), "")
        match = REQUIRES.search(before)
        requires = tuple(n for n in re.split(r"[\s,]+", match.group(1)) if n) if match else ()
        blocks.append(Block(line, "\n".join(body) + "\n", requires))
    return blocks


def gpunet_commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of every ``gpunet`` command in the shell blocks and inline code of a
    Markdown text; ``argv`` is what follows ``gpunet``."""
    commands = []
    fenced = set()
    for line, language, body in fenced_blocks(text):
        fenced.update(range(line, line + len(body) + 2))
        if language not in SHELL:
            continue
        for k, source in enumerate(body, start=line + 1):
            commands += [(k, argv) for argv in map(_after_gpunet, _simple_commands(source)) if argv is not None]
    for match in re.finditer(r"(?<!`)`(gpunet [^`]+)`(?!`)", text):
        line = text.count("\n", 0, match.start()) + 1
        if line not in fenced:  # `gpunet eval` in prose names a subcommand: its -h must parse
            argv = shlex.split(match.group(1))[1:]
            commands.append((line, argv + ["-h"] if len(argv) == 1 else argv))
    return sorted(commands, key=lambda c: c[0])


def _simple_commands(line: str) -> list[list[str]]:
    """The words of each command of a shell line (split at ``&&``, ``;``, ``|``; comments dropped)."""
    lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in ("&&", "||", ";", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


def _after_gpunet(words: list[str]) -> list[str] | None:
    if words[:1] == ["gpunet"]:
        return words[1:]
    for i in range(len(words) - 1):
        if words[i:i + 2] == ["-m", "gpunet"]:
            return words[i + 2:]
    return None


def parse_problem(argv: list[str]) -> str | None:
    """None when ``gpunet argv`` parses (``-h`` and ``--version`` included), else the parser's message."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return None if exc.code == 0 else err.getvalue().strip() or f"exit status {exc.code}"
    return None if args.command else "no subcommand"


def _missing_modules(modules: tuple[str, ...], hint: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(missing)}: {hint}" if missing else None


def _missing_mpi() -> str | None:
    if importlib.util.find_spec("mpi4py") is None or shutil.which("mpiexec") is None:
        return f"needs mpi4py and an MPI launcher: {clone_install('mpi')} mpich"
    return None


def _missing_gpu() -> str | None:
    reason = cupy_status()[1]
    return f"needs a usable CUDA device: {reason}" if reason else None


# requirement name -> () -> None when present, else the skip reason
MISSING = {
    "train": lambda: _missing_modules(("matplotlib",), pip_install("train")),
    "torch": lambda: _missing_modules(("torch",), clone_install("bench")),
    "mpi": _missing_mpi,
    "gpu": _missing_gpu,
}

TEXTS = {path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8") for path in DOCS}
BLOCKS = [(name, block) for name, text in TEXTS.items() for block in python_blocks(text)]
COMMANDS = [(name, line, argv) for name, text in TEXTS.items() for line, argv in gpunet_commands(text)]


def test_every_python_block_and_command_is_found():
    for name, text in TEXTS.items():
        found = [block for n, block in BLOCKS if n == name]
        assert len(found) == text.count("\n```python\n"), name
        assert all(block.code.strip() for block in found), name
    assert sum(n == "README.md" for n, _ in BLOCKS) >= 4
    readme = [argv[0] for name, _, argv in COMMANDS if name == "README.md"]
    assert {"train", "eval", "predict", "info"} <= set(readme), readme


def test_every_fence_names_its_language():
    # an untagged block would escape the checks above: say what it holds (```text for output)
    untagged = [f"{name}:{line}" for name, text in TEXTS.items()
                for line, language, _ in fenced_blocks(text) if not language]
    assert not untagged, f"fenced blocks without a language: {untagged}"


def test_blocks_and_their_requirements_are_read_from_markdown():
    text = ("# t\n\n```python\nprint(1)\n```\n\n<!-- requires: mpi, gpu -->\n\n```python\nx = 2\n"
            "print(x)\n```\n\n```sh\nls\n```\n<!-- requires: train -->\ntext\n```python\npass\n```\n")
    assert python_blocks(text) == [Block(3, "print(1)\n", ()), Block(9, "x = 2\nprint(x)\n", ("mpi", "gpu")),
                                   Block(19, "pass\n", ())]
    with pytest.raises(ValueError, match="line 1 is never closed"):
        python_blocks("```python\nprint(1)\n")


def test_commands_are_read_from_shell_blocks_and_inline_code():
    text = ("Run `gpunet train --epochs 2`, `gpunet info` or `gpunet`, not `gpunet: error` or `python x.py`.\n"
            "```sh\npip install . && gpunet train   # the digits\n$ gpunet eval run_best.npz\n"
            "mpiexec -n 2 python -m mpi4py -m gpunet train --distributed\nls; gpunet info\n"
            "echo \"x; y\" && gpunet train --plot a.png  # why\n```\n"
            "```text\n$ gpunet train --lr nan\ngpunet: error: ...\n```\n"
            "```python\nprint('`gpunet train --oops`')\n```\n")
    assert gpunet_commands(text) == [
        (1, ["train", "--epochs", "2"]), (1, ["info", "-h"]), (3, ["train"]), (4, ["eval", "run_best.npz"]),
        (5, ["train", "--distributed"]), (6, ["info"]), (7, ["train", "--plot", "a.png"])]


@pytest.mark.parametrize(("argv", "problem"), [
    (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["train", "--data", "imagenet"], "invalid choice: 'imagenet'"),
    (["train", "--lr", "nan"], "finite number"),
    (["predict", "run_best.npz", "x.npy"], "-o/--output"),
    (["fit"], "invalid choice: 'fit'"),
    ([], "no subcommand"),
])
def test_a_command_that_does_not_parse_is_reported(argv, problem):
    assert problem in (parse_problem(argv) or "")


@pytest.mark.parametrize(("argv"), [["train", "-h"], ["--version"], ["eval", "x.npz", "--which", "last"]])
def test_a_command_that_parses_is_accepted(argv):
    assert parse_problem(argv) is None


@pytest.mark.parametrize(("name", "line", "argv"), COMMANDS,
                         ids=[f"{name}:{line}:{' '.join(argv)}" for name, line, argv in COMMANDS])
def test_documented_command_parses(name, line, argv):
    problem = parse_problem(argv)
    assert problem is None, f"{name}:{line}: `gpunet {shlex.join(argv)}` does not parse: {problem}"


@pytest.mark.parametrize("item", BLOCKS, ids=[f"{name}:{block.line}" for name, block in BLOCKS])
def test_python_block_runs_on_its_own(item, tmp_path):
    name, block = item
    unknown = set(block.requires) - set(MISSING)
    assert not unknown, f"{name}:{block.line}: unknown requirement {sorted(unknown)}; known: {sorted(MISSING)}"
    missing = [reason for reason in (MISSING[n]() for n in block.requires) if reason]
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
        pytest.fail(f"{name}:{block.line}: the block failed on its own (exit {proc.returncode}):\n"
                    f"{block.code}--- stderr ---\n{proc.stderr[-4000:]}", pytrace=False)
