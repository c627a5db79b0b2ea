"""Finding the ``terrarium`` binary the SDK drives.

In this order: the one shipped inside the installed wheel (``terrarium/bin/terrarium``, or the
``terrarium`` script the wheel installed into its scheme's scripts directory), then
``$TERRARIUM_BIN``, then ``terrarium`` on ``PATH``.
"""

from __future__ import annotations

import os

# Paths are strings here, and `typing` is for the type checker only: importing `pathlib` or
# `typing` costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

from .errors import TerrariumError

#: The variable naming the binary when the wheel carries none.
TERRARIUM_BIN = "TERRARIUM_BIN"

_EXE = "terrarium.exe" if os.name == "nt" else "terrarium"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


_shipped: Optional[str] = None
_looked_up = False


def shipped_binary() -> Optional[str]:
    """The binary that came with this installation of the package, if any (looked up once a
    process: installed files do not move under a running program)."""
    global _shipped, _looked_up
    if not _looked_up:
        _shipped = _find_shipped()
        _looked_up = True
    return _shipped


def _find_shipped() -> Optional[str]:
    module_root = os.path.dirname(os.path.realpath(__file__))
    inside = os.path.join(module_root, "bin", _EXE)
    if _executable(inside):
        return inside
    recorded, binary = _recorded_beside(module_root)
    if recorded:
        return binary
    return _recorded_by_metadata(module_root)


def _is_binary(entry: str) -> bool:
    parts = entry.replace("\\", "/").split("/")
    return len(parts) >= 2 and parts[-1] == _EXE and parts[-2] in ("bin", "Scripts")


def _recorded_beside(module_root: str) -> tuple[bool, Optional[str]]:
    """Whether the ``RECORD`` of a ``terrarium-*.dist-info`` beside this package lists this
    module, and the binary it lists (None when it lists none): the files ``importlib.metadata``
    would list, read without importing it (about 20 ms, most of the SDK's import)."""
    site = os.path.dirname(module_root)
    try:
        names = os.listdir(site)
    except OSError:
        return False, None
    for name in names:
        if not (name.endswith(".dist-info") and name.split("-", 1)[0].lower() == "terrarium"):
            continue
        try:
            with open(os.path.join(site, name, "RECORD"), encoding="utf-8", newline="") as file:
                entries = _record_paths(file.read())
        except (OSError, ValueError):  # UnicodeDecodeError is one, and csv.Error becomes one
            continue
        if "terrarium/__init__.py" not in entries:
            continue
        for entry in entries:
            if _is_binary(entry):
                path = os.path.realpath(os.path.join(site, entry))
                if _executable(path):
                    return True, path
        return True, None
    return False, None


def _record_paths(text: str) -> list[str]:
    """The paths (first column) of a ``RECORD`` file, a CSV file: its lines split at the first
    comma, and the ``csv`` module (with ``re``, a first cell's milliseconds) for a file with a
    quoted field."""
    if '"' not in text:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return [line.split(",", 1)[0] for line in lines if line]
    import csv
    import io

    try:
        return [row[0] for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as err:
        raise ValueError(f"RECORD: {err}") from None


def _recorded_by_metadata(module_root: str) -> Optional[str]:
    """The binary the distribution ``importlib.metadata`` finds recorded, when it is this
    module's (installations without a ``RECORD`` beside the package)."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        dist = distribution("terrarium")
    except PackageNotFoundError:
        return None
    # Only the distribution this module belongs to: another `terrarium` on the path is not it.
    files = dist.files or []
    ours = any(
        os.path.realpath(str(dist.locate_file(f))) == os.path.join(module_root, "__init__.py")
        for f in files
        if f.name == "__init__.py" and f.parent.name == "terrarium"
    )
    if not ours:
        return None
    for f in files:
        if f.name == _EXE and f.parent.name in ("bin", "Scripts"):
            path = os.path.realpath(str(dist.locate_file(f)))
            if _executable(path):
                return path
    return None


def find_binary() -> str:
    """The ``terrarium`` binary to run; raises :class:`TerrariumError` when there is none."""
    shipped = shipped_binary()
    if shipped is not None:
        return shipped
    explicit = os.environ.get(TERRARIUM_BIN)
    if explicit:
        if not _executable(explicit):
            raise TerrariumError(
                f"${TERRARIUM_BIN} names {explicit}, which is not an executable file",
                code="no_binary",
            )
        return explicit
    import shutil

    found = shutil.which("terrarium")
    if found:
        return found
    raise TerrariumError(
        "cannot find the terrarium binary",
        code="no_binary",
        hint="install the SDK from a wheel that carries it (pip install ./python after "
        "cargo build), set TERRARIUM_BIN, or put terrarium on PATH",
    )
