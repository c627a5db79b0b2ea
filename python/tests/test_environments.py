"""Registering, reading, listing and labelling environments: one story, run against every kind
of workspace (a directory, a team server on SQLite and on PostgreSQL, a PostgreSQL database)."""

from __future__ import annotations

from typing import Any

import pytest

from terrarium import ConflictError, Environment, NotFoundError, TerrariumError, Workspace
from terrarium.core.conda_dependencies import CondaDependencies
from terrarium.workspace import _CliBackend


def demo(name: str = "demo") -> Environment:
    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["numpy==1.26.4", "pandas>=2"]
    )
    env.environment_variables = {"OMP_NUM_THREADS": "4"}
    return env


def test_register_get_list_label(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    env = demo()
    first = env.register(workspace)
    assert (first.name, first.version) == ("demo", "1")
    assert "latest" in first.labels
    assert first.content_hash and first.content_hash.startswith("sha256:")
    assert env.version is None, "register returns the version and leaves the draft as it was"

    # Identical content: the existing version, none made.
    again = demo().register(workspace)
    assert again.version == "1"
    assert again.content_hash == first.content_hash

    # Changed content: the next version. Changing an attribute changed nothing in the workspace.
    env.python.conda_dependencies.add_pip_package("scipy")
    assert Environment.get(workspace, "demo").version == "1"
    second = env.register(workspace)
    assert second.version == "2"
    assert second.python.conda_dependencies.pip_packages == ["numpy==1.26.4", "pandas>=2", "scipy"]

    got = Environment.get(workspace, "demo", version="1")
    assert got.version == "1"
    assert got.python.conda_dependencies.pip_packages == ["numpy==1.26.4", "pandas>=2"]
    assert got.environment_variables == {"OMP_NUM_THREADS": "4"}
    assert Environment.get(workspace, "demo").version == "2"

    Environment.label(workspace, "demo", "1", ["production", "stable"])
    labelled = Environment.get(workspace, "demo", label="production")
    assert labelled.version == "1"
    assert set(labelled.labels) >= {"production", "stable"}
    # A label moves.
    Environment.label(workspace, "demo", "2", ["production"])
    assert Environment.get(workspace, "demo", label="production").version == "2"
    assert Environment.get(workspace, "demo", label="stable").version == "1"

    if isinstance(workspace._backend, _CliBackend):
        # A directory or database gives the list with every version's Azure ML form in one run
        # of the CLI: no export is asked for afterwards.
        def no_export(name: str, version: str) -> Any:
            raise AssertionError(f"{name}:{version} was exported apart from the list")

        monkeypatch.setattr(workspace._backend, "aml_export", no_export)
    listed = Environment.list(workspace)
    assert listed["demo"].version == "2"
    assert listed["demo"].python.conda_dependencies.pip_packages == second.python.conda_dependencies.pip_packages
    assert "curated/sklearn" in listed
    assert all(not name.startswith("anonymous/") for name in listed)

    with pytest.raises(TerrariumError):
        Environment.get(workspace, "demo", version="1", label="production")


def test_explicit_versions_are_immutable(workspace: Workspace) -> None:
    env = demo("pinned")
    env.version = "7"
    assert env.register(workspace).version == "7"
    # The same content under the same version: no change.
    assert env.register(workspace).version == "7"
    env.python.conda_dependencies.add_pip_package("scipy")
    with pytest.raises(ConflictError) as caught:
        env.register(workspace)
    assert "immutable" in str(caught.value)
    # Without a version the workspace numbers it.
    env.version = None
    assert env.register(workspace).version == "8"


def test_not_found(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError):
        Environment.get(workspace, "nothing-here")
    demo().register(workspace)
    with pytest.raises(NotFoundError):
        Environment.get(workspace, "demo", version="9")
    with pytest.raises(NotFoundError):
        Environment.get(workspace, "demo", label="nope")
    with pytest.raises(NotFoundError):
        Environment.label(workspace, "demo", "9", ["production"])


def test_every_field_survives_the_workspace(workspace: Workspace) -> None:
    env = Environment("full")
    env.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["numpy=1.26"], pip_packages=["requests==2.32.3"], python_version="3.11"
    )
    env.python.conda_dependencies.set_pip_option("--extra-index-url https://example.org/simple")
    env.environment_variables = {"A": "1", "TOKEN": "${secret:HF_TOKEN}"}
    env.docker.base_image = "docker.io/library/python:3.11-slim"
    env.docker.shm_size = "8g"
    env.spark.repositories = ["https://repo.example.org/maven"]
    from terrarium.core.environment import SparkPackage

    env.spark.packages = [SparkPackage("com.example", "lib", "1.0")]
    env.spark.precache_packages = False
    got = env.register(workspace)
    assert got.python.conda_dependencies.conda_channels == ["conda-forge"]
    assert got.python.conda_dependencies.conda_packages == ["python=3.11", "numpy=1.26"]
    assert got.python.conda_dependencies.pip_packages == ["requests==2.32.3"]
    assert got.python.conda_dependencies.pip_options == ["--extra-index-url https://example.org/simple"]
    assert got.environment_variables == env.environment_variables
    assert got.docker.base_image == "docker.io/library/python:3.11-slim"
    assert got.docker.shm_size == "8g"
    assert got.spark.repositories == ["https://repo.example.org/maven"]
    assert got.spark.packages == [SparkPackage("com.example", "lib", "1.0")]
    assert got.spark.precache_packages is False
    assert got.python.user_managed_dependencies is False
    # Registering what came back is the same version.
    again = got.clone("full")
    assert again.register(workspace).version == "1"


def test_user_managed(workspace: Workspace) -> None:
    mine = Environment("mine")
    mine.python.user_managed_dependencies = True
    mine.python.interpreter_path = "/usr/bin/python3"
    got = mine.register(workspace)
    assert got.python.user_managed_dependencies is True
    assert got.python.interpreter_path == "/usr/bin/python3"


def test_dockerfile(workspace: Workspace, tmp_path: Any) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:bookworm\nRUN apt-get update\n")
    built = Environment.from_dockerfile("docker-env", str(dockerfile)).register(workspace)
    assert built.docker.base_dockerfile == "FROM debian:bookworm\nRUN apt-get update\n"
    assert built.docker.base_image is None
    assert built.python.user_managed_dependencies is True


def test_clone_is_local(workspace: Workspace) -> None:
    first = demo().register(workspace)
    copy = first.clone("demo-copy")
    assert copy.version is None and copy.name == "demo-copy"
    copy.python.conda_dependencies.add_pip_package("scipy")
    assert "scipy" not in first.python.conda_dependencies.pip_packages
    assert copy.register(workspace).version == "1"
    assert "demo-copy" in Environment.list(workspace)


@pytest.mark.parametrize("workspace", ["server-sqlite", "server-postgres"], indirect=True)
def test_a_server_version_read_through_the_cli_is_the_apis(
    workspace: Workspace, tmp_path: Any
) -> None:
    """Against a team server, `Environment.get` reads through the CLI (one run, with the Azure
    ML form): the record is the REST API's, its errors are those of the SDK's own requests, and
    a first cell loads no `urllib`."""
    import os
    import subprocess
    import sys

    from terrarium._rest import RestClient, segment
    from terrarium.workspace import _ServerBackend

    assert isinstance(workspace._backend, _ServerBackend)
    env = demo("both-ways")
    env.register(workspace)
    env.python.conda_dependencies.add_pip_package("scipy")
    env.register(workspace)
    Environment.label(workspace, "both-ways", "1", ["production"])
    rest = workspace._backend.rest

    for reference, path in (
        ({}, ""),
        ({"version": "1"}, "/versions/1"),
        ({"label": "production"}, "/labels/production"),
    ):
        got = Environment.get(workspace, "both-ways", **reference)
        assert got._record == rest.json("GET", f"/environments/{segment('both-ways')}{path}"), reference
    for name, reference in (("nothing-here", {}), ("both-ways", {"version": "9"}), ("both-ways", {"label": "nope"})):
        with pytest.raises(NotFoundError):
            Environment.get(workspace, name, **reference)

    # A refusal and an unreachable server: the same code and hint as a REST request's.
    for other in (Workspace.connect(rest.url, token="not-a-token"), Workspace.connect("http://127.0.0.1:9")):
        other_rest = other._backend.rest  # type: ignore[attr-defined]
        assert isinstance(other_rest, RestClient)
        with pytest.raises(TerrariumError) as through_cli:
            Environment.get(other, "both-ways")
        with pytest.raises(TerrariumError) as through_rest:
            other_rest.json("GET", "/environments/both-ways")
        assert (through_cli.value.code, through_cli.value.hint) == (through_rest.value.code, through_rest.value.hint)
        assert through_cli.value.code in ("unauthorized", "transport"), through_cli.value

    cell = (
        "import sys\n"
        "from terrarium.core import Environment, Workspace\n"
        f"ws = Workspace.connect({rest.url!r}, token=sys.stdin.read())\n"
        "got = Environment.get(ws, 'both-ways', version='1')\n"
        "assert got.python.conda_dependencies.pip_packages == ['numpy==1.26.4', 'pandas>=2']\n"
        "print('urllib.request' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", cell], input=rest._token, capture_output=True, text=True,
        cwd=str(tmp_path), env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
