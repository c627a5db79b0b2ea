"""Finding the ``terrarium`` binary the SDK drives.

In this order: the one shipped inside the installed wheel (``terrarium/bin/terrarium``, or the
``terrarium`` script the wheel installed into its scheme's scripts directory), then
``$TERRARIUM_BIN``, then ``terrarium`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from .errors import TerrariumError

#: The variable naming the binary when the wheel carries none.
TERRARIUM_BIN = "TERRARIUM_BIN"

_EXE = "terrarium.exe" if os.name == "nt" else "terrarium"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def shipped_binary() -> Optional[Path]:
    """The binary that came with this installation of the package, if any."""
    inside = Path(__file__).resolve().parent / "bin" / _EXE
    if _executable(inside):
        return inside
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        dist = distribution("terrarium")
    except PackageNotFoundError:
        return None
    # Only the distribution this module belongs to: another `terrarium` on the path is not it.
    module_root = Path(__file__).resolve().parent
    files = dist.files or []
    ours = any(
        Path(str(dist.locate_file(f))).resolve() == module_root / "__init__.py"
        for f in files
        if f.name == "__init__.py" and f.parent.name == "terrarium"
    )
    if not ours:
        return None
    for f in files:
        if f.name == _EXE and f.parent.name in ("bin", "Scripts"):
            path = Path(str(dist.locate_file(f))).resolve()
            if _executable(path):
                return path
    return None


def find_binary() -> str:
    """The ``terrarium`` binary to run; raises :class:`TerrariumError` when there is none."""
    shipped = shipped_binary()
    if shipped is not None:
        return str(shipped)
    explicit = os.environ.get(TERRARIUM_BIN)
    if explicit:
        if not _executable(Path(explicit)):
            raise TerrariumError(
                f"${TERRARIUM_BIN} names {explicit}, which is not an executable file",
                code="no_binary",
            )
        return explicit
    found = shutil.which("terrarium")
    if found:
        return found
    raise TerrariumError(
        "cannot find the terrarium binary",
        code="no_binary",
        hint="install the SDK from a wheel that carries it (pip install ./python after "
        "cargo build), set TERRARIUM_BIN, or put terrarium on PATH",
    )
