"""Put the ``terrarium`` binary into the wheel's scripts (as maturin's ``bindings = "bin"``
does), so ``pip install`` puts it on the environment's PATH and the SDK finds it.

The binary is ``$TERRARIUM_BIN``, else the newest of the repository's ``target/HOST/release`` and
``target/HOST/debug`` builds (the workspace builds for its host by name, ``.cargo/config.toml``). Without one the wheel is pure Python and the SDK uses
``$TERRARIUM_BIN`` or ``terrarium`` on PATH at run time. Editable installs never carry it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _binary(root: Path) -> Path | None:
    explicit = os.environ.get("TERRARIUM_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SystemExit(f"TERRARIUM_BIN names {path}, which is not a file")
        return path
    candidates = [
        root.parent / "target" / host / kind / "terrarium"
        for host in _hosts(root.parent / "target")
        for kind in ("release", "debug")
    ]
    built = [c for c in candidates if c.is_file() and os.access(c, os.X_OK)]
    return max(built, key=lambda c: c.stat().st_mtime) if built else None


def _hosts(target: Path) -> list[str]:
    """The target folders cargo built for this machine: ``rustc --print host-tuple``, else those
    named for this machine's architecture."""
    import subprocess

    try:
        host = subprocess.run(
            ["rustc", "--print", "host-tuple"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return [host]
    except (OSError, subprocess.CalledProcessError):
        import platform

        machine = platform.machine()
        return [d.name for d in target.glob(f"{machine}-*") if d.is_dir()] if target.is_dir() else []


def _platform_tag() -> str:
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


class CustomBuildHook(BuildHookInterface[BuilderConfig]):
    """Adds the binary to standard (not editable) wheels."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        binary = _binary(Path(self.root))
        if binary is None:
            sys.stderr.write(
                "terrarium: no binary (set TERRARIUM_BIN or cargo build): building a pure-Python wheel\n"
            )
            return
        sys.stderr.write(f"terrarium: shipping {binary} in the wheel\n")
        build_data["shared_scripts"][str(binary)] = "terrarium"
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{_platform_tag()}"
