"""Finding a dataset's files: the explicit path, else ``$GPUNET_DATA``, else system
locations. A miss raises an error listing every place looked at and how to fix it; a
hit is a :class:`DataSource` saying which files were read and how they were found.

``$GPUNET_DATA`` set to something that is not a directory is refused (a typo must not
silently train on another copy); a directory without the dataset falls through to the
system locations, and the source's ``note`` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._validate import ArgumentError
from .errors import DatasetNotFoundError

ENV_VAR = "GPUNET_DATA"

#: DataSource.how -> how a message says it
HOW = {
    "path": "the path argument",
    "env": f"${ENV_VAR}",
    "system": "system location",
    "package": "shipped with gpunet",
}


@dataclass(frozen=True)
class DataSource:
    """Where a dataset came from: ``how`` is ``"path"`` (the ``path`` argument: the CLI's
    ``--data-path``), ``"env"`` (``$GPUNET_DATA``), ``"system"`` (a system location) or
    ``"package"`` (shipped with gpunet); ``files`` maps each part to the file read;
    ``note`` says what was passed over on the way (e.g. ``$GPUNET_DATA`` lacked it).
    ``str(source)`` is one line for a user."""

    how: str
    files: dict[str, Path]
    note: str = ""

    @property
    def directory(self) -> Path:
        """The directory of the first file read."""
        return next(iter(self.files.values())).parent

    def __str__(self) -> str:
        names = ", ".join(p.name for p in self.files.values())
        text = f"{self.directory} ({HOW[self.how]}: {names})"
        return text + (f"; {self.note}" if self.note else "")


def as_path(name: str, value, fn: str) -> Path:
    """``value`` (a str or path-like) as a Path; anything else is an ArgumentError."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentError(f"{fn}: {name} must be a path (str or pathlib.Path), got {value!r}")
    return Path(value).expanduser()


def find_file(directory: Path, names) -> Path | None:
    """The first of ``names`` that is a file in ``directory``, else None."""
    for name in names:
        p = directory / name
        if p.is_file():
            return p
    return None


def locate(title, path, subdir, required, system_dirs=(), hint="", env_root=True,
           fn="load") -> DataSource:
    """The first candidate directory holding every entry of ``required``, as a DataSource.

    ``required`` maps a label (shown in errors) to the accepted file names (first match
    wins). Candidates: ``path`` and ``path/subdir`` when ``path`` is given (nothing else:
    an explicit path is never silently replaced by another copy); otherwise
    ``$GPUNET_DATA/subdir``, ``$GPUNET_DATA`` itself (if ``env_root``) and ``system_dirs``.
    """
    if path is not None:
        base = as_path("path", path, fn)
        candidates = [(base, "path"), (base / subdir, "path")]
    else:
        candidates = []
        env = os.environ.get(ENV_VAR)
        if env:
            base = Path(env).expanduser()
            if not base.is_dir():
                raise DatasetNotFoundError(
                    f"{title}: ${ENV_VAR} is set to {env!r}, which is "
                    f"{'a file' if base.is_file() else 'not an existing directory'}; set it to "
                    "the directory that holds your datasets, or unset it (`unset "
                    f"{ENV_VAR}`) to use the default locations. {hint}"
                )
            candidates.append((base / subdir, "env"))
            if env_root:
                candidates.append((base, "env"))
        candidates += [(Path(d), "system") for d in system_dirs]

    looked = []
    for directory, how in candidates:
        if not directory.is_dir():
            what = "a file, not a directory" if directory.is_file() else "no such directory"
            looked.append(f"{directory} ({HOW[how]}): {what}")
            continue
        found = {label: find_file(directory, names) for label, names in required.items()}
        files = {label: f for label, f in found.items() if f is not None}
        missing = [label for label in required if label not in files]
        if not missing:
            env = os.environ.get(ENV_VAR) if how == "system" else None
            return DataSource(how, files, f"not found in ${ENV_VAR}={env}" if env else "")
        looked.append(f"{directory} ({HOW[how]}): missing {', '.join(missing)}")
    if path is None and not os.environ.get(ENV_VAR):
        looked.insert(0, f"${ENV_VAR} is not set")
    raise DatasetNotFoundError(
        f"{title} not found. Looked in:\n" + "\n".join(f"  - {line}" for line in looked)
        + f"\nTo fix: {hint}"
    )
