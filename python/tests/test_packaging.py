"""The wheel carries the ``terrarium`` binary in its scripts, and the installed SDK finds it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import needed

PROJECT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path, binary: Path) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (python/run-tests.sh installs it)")
    env = {**os.environ, "TERRARIUM_BIN": str(binary)}
    done = subprocess.run(
        [sys.executable, "-c", "import sys, hatchling.build as b; print(b.build_wheel(sys.argv[1]))", str(out)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out / done.stdout.strip().splitlines()[-1]


def test_the_wheel_ships_the_binary_and_the_sdk_finds_it(tmp_path: Path) -> None:
    fake = tmp_path / "fake-terrarium"
    fake.write_text("#!/bin/sh\necho fake terrarium \"$@\"\n")
    fake.chmod(0o755)
    wheel = build_wheel(tmp_path / "dist", fake)
    assert wheel.name.startswith("terrarium-0.1.0-py3-none-") and "any" not in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("terrarium-0.1.0.data/scripts/terrarium")
        assert (info.external_attr >> 16) & 0o111, "the binary is executable"
        assert archive.read(info) == fake.read_bytes()
        names = archive.namelist()
        assert "terrarium/py.typed" in names and "terrarium/core/conda_dependencies.py" in names
        wheel_file = archive.read("terrarium-0.1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_file

    uv = needed("TERRARIUM_UV", "installing the wheel into a fresh environment needs uv")
    venv = tmp_path / "venv"
    quiet = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True, env=quiet)
    subprocess.run(
        [uv, "pip", "install", "-q", "--offline", "--no-deps", "-p", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        env=quiet,
    )
    clean = {k: v for k, v in os.environ.items() if k != "TERRARIUM_BIN"}
    clean["PATH"] = "/usr/bin:/bin"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from terrarium._binary import find_binary; print(find_binary())"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == (venv / "bin" / "terrarium").resolve()
    ran = subprocess.run([str(venv / "bin" / "terrarium"), "--version"], capture_output=True, text=True)
    assert ran.stdout.strip() == "fake terrarium --version"


def test_without_a_binary_the_error_says_how_to_get_one(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if k != "TERRARIUM_BIN"}
    clean["PATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import terrarium\n"
         "try:\n    terrarium.Environment.from_pip_requirements('x', 'r.txt')\n"
         "except terrarium.TerrariumError as err:\n    print(err.code, '|', err)"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=PROJECT,
    )
    assert done.returncode == 0, done.stderr
    code, message = done.stdout.split("|", 1)
    if code.strip() != "no_binary":
        pytest.skip("this installation ships a binary")
    assert "TERRARIUM_BIN" in message
