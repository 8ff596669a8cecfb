"""Finding a dataset's directory: the explicit path, then ``$GPUNET_DATA``, then system
locations; a miss raises an error listing every place looked at and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetNotFoundError

ENV_VAR = "GPUNET_DATA"


def find_file(directory: Path, names) -> Path | None:
    """The first of ``names`` that is a file in ``directory``, else None."""
    for name in names:
        p = directory / name
        if p.is_file():
            return p
    return None


def locate(title, path, subdir, required, system_dirs=(), hint="", env_root=True):
    """The first candidate directory holding every entry of ``required`` and the files found.

    ``required`` maps a label (shown in errors) to the accepted file names (first match
    wins). Candidates: ``path`` and ``path/subdir`` when ``path`` is given (nothing else:
    an explicit path is never silently replaced by another copy); otherwise
    ``$GPUNET_DATA/subdir``, ``$GPUNET_DATA`` itself (if ``env_root``) and ``system_dirs``.
    Returns ``(directory, {label: file})``.
    """
    if path is not None:
        base = Path(path).expanduser()
        candidates = [(base, "the path argument"), (base / subdir, "the path argument")]
    else:
        candidates = []
        env = os.environ.get(ENV_VAR)
        if env:
            base = Path(env).expanduser()
            candidates.append((base / subdir, f"${ENV_VAR}"))
            if env_root:
                candidates.append((base, f"${ENV_VAR}"))
        candidates += [(Path(d), "system location") for d in system_dirs]

    looked = []
    for directory, why in candidates:
        if not directory.is_dir():
            what = "a file, not a directory" if directory.is_file() else "no such directory"
            looked.append(f"  - {directory} ({why}): {what}")
            continue
        found = {label: find_file(directory, names) for label, names in required.items()}
        missing = [label for label in required if found[label] is None]
        if not missing:
            return directory, found
        looked.append(f"  - {directory} ({why}): missing {', '.join(missing)}")
    if path is None and not os.environ.get(ENV_VAR):
        looked.insert(0, f"  - ${ENV_VAR} is not set")
    raise DatasetNotFoundError(
        f"{title} not found. Looked in:\n" + "\n".join(looked) + f"\nTo fix: {hint}"
    )
