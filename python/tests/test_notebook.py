"""examples/notebooks/environments.ipynb runs end to end in a Jupyter kernel (nbclient),
offline: its pip package comes from a local folder of wheels (uv's UV_FIND_LINKS and
UV_NO_INDEX), its workspace is a fresh directory ($TERRARIUM_WORKSPACE)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MAKE_WHEEL, REPO

NOTEBOOKS = REPO / "examples" / "notebooks"


def test_the_environments_notebook_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uv: str
) -> None:
    nbformat = pytest.importorskip("nbformat", reason="python/run-tests.sh installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="python/run-tests.sh installs nbclient")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, str(MAKE_WHEEL), str(wheels), "requests==2.32.3"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder)
    monkeypatch.setenv("TERRARIUM_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    monkeypatch.setenv("UV_FIND_LINKS", str(wheels))
    notebook = nbformat.read(folder / "environments.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()

    def text(cell: Any) -> str:
        parts = []
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
        return "".join(parts)

    everything = "\n".join(text(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert "Hello from Terrarium (requests 2.32.3)" in everything
    assert "'status': 'Completed'" in everything
    assert "Environment(name='myenv', version='1')" in everything
    assert "curated/python-minimal" in everything
    assert "[5.5, 10.5]" in everything, "the service scored"
    assert "'production'" in everything
    # Long calls show their progress as a display the kernel updates, last with its outcome.
    assert "building myenv:1: done in" in everything
