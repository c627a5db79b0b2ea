"""Malformed definitions raise DefinitionError with file, line and field, and leave the
workspace unchanged; conda and requirements files are read by Terrarium itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from terrarium import (
    CondaDependencies,
    ConflictError,
    DefinitionError,
    Environment,
    NotFoundError,
    TerrariumError,
    Workspace,
)


def snapshot(workspace: Workspace) -> dict[str, Any]:
    """What a workspace holds: every environment's latest version and content hash."""
    return {
        name: (env.version, env.content_hash, tuple(sorted(env.labels)))
        for name, env in Environment.list(workspace).items()
    }


def test_a_bad_requirement_names_its_line_and_field_and_changes_nothing(workspace: Workspace) -> None:
    good = Environment("demo")
    good.python.conda_dependencies = CondaDependencies.create(pip_packages=["numpy==1.26.4"])
    good.register(workspace)
    before = snapshot(workspace)

    bad = good.clone("demo")
    bad.python.conda_dependencies.add_pip_package("torch ===")
    with pytest.raises(DefinitionError) as caught:
        bad.register(workspace)
    err = caught.value
    assert err.file == "conda_dependencies.yml", err
    assert err.field == "dependencies[0].pip"
    text = bad.python.conda_dependencies.serialize_to_string().splitlines()
    assert err.line is not None and "torch ===" in text[err.line - 1]
    assert "invalid requirement" in str(err)
    assert err.user_error
    # Not the scratch folder the SDK wrote it to.
    assert "terrarium-sdk-" not in str(err)
    assert snapshot(workspace) == before

    brand_new = bad.clone("never-registered")
    with pytest.raises(DefinitionError):
        brand_new.register(workspace)
    with pytest.raises(NotFoundError):
        Environment.get(workspace, "never-registered")
    assert snapshot(workspace) == before


@pytest.mark.parametrize(
    "name, mutate, field",
    [
        ("bad-match-spec", lambda e: e.python.conda_dependencies.add_conda_package("numpy >>= 1"), "dependencies[0]"),
        ("bad-variable", lambda e: e.environment_variables.update({"1BAD NAME": "x"}), "environmentVariables.1BAD NAME"),
        ("bad-image", lambda e: setattr(e.docker, "base_image", "Not An Image"), "docker.baseImage"),
    ],
)
def test_other_bad_fields(workspace: Workspace, name: str, mutate: Any, field: str) -> None:
    before = snapshot(workspace)
    env = Environment(name)
    mutate(env)
    with pytest.raises(DefinitionError) as caught:
        env.register(workspace)
    assert caught.value.field == field, caught.value
    assert caught.value.file in ("conda_dependencies.yml", "azureml_environment.json")
    assert caught.value.line is not None
    assert snapshot(workspace) == before


def test_a_bad_name_is_refused(workspace: Workspace) -> None:
    before = snapshot(workspace)
    with pytest.raises(TerrariumError) as caught:
        Environment("Bad Name!").register(workspace)
    assert caught.value.user_error
    with pytest.raises(ConflictError):
        Environment("curated/sklearn").register(workspace)
    assert snapshot(workspace) == before


def test_conda_files_are_read_by_terrarium(tmp_path: Path) -> None:
    path = tmp_path / "environment.yml"
    path.write_text(
        "name: project\n"
        "channels:\n  - conda-forge\n"
        "dependencies:\n"
        "  - python=3.11  # the interpreter\n"
        "  - numpy=1.26\n"
        "  - pip:\n"
        "    - --index-url https://example.org/simple\n"
        "    - requests==2.32.3\n"
        "variables:\n  OMP_NUM_THREADS: '4'\n"
    )
    env = Environment.from_conda_specification("from-conda", path)
    deps = env.python.conda_dependencies
    assert deps.conda_channels == ["conda-forge"]
    assert deps.conda_packages == ["python=3.11", "numpy=1.26"]
    assert deps.pip_packages == ["requests==2.32.3"]
    assert deps.pip_options == ["--index-url https://example.org/simple"]
    assert deps.get_python_version() == "3.11"
    assert deps.as_dict()["variables"] == {"OMP_NUM_THREADS": "4"}

    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\ndependencies:\n  - python=3.11\n  - pip:\n    - \"torch ===\"\n")
    with pytest.raises(DefinitionError) as caught:
        Environment.from_conda_specification("bad", bad)
    assert (caught.value.file, caught.value.line, caught.value.field) == (
        str(bad),
        5,
        "dependencies[1].pip",
    )
    broken = tmp_path / "broken.yml"
    broken.write_text("dependencies:\n  - [unclosed\n")
    with pytest.raises(DefinitionError) as caught:
        CondaDependencies(broken)
    assert caught.value.file == str(broken) and caught.value.line is not None


def test_requirements_files_are_read_by_terrarium(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("tinydep>=1\n")
    path = tmp_path / "requirements.txt"
    path.write_text(
        "--find-links ./wheels\n-r base.txt\ntinyapp==1.0 \\\n    ; python_version >= '3.8'\n# a comment\n"
    )
    env = Environment.from_pip_requirements("from-pip", path)
    deps = env.python.conda_dependencies
    assert deps.conda_packages == []
    assert "tinydep>=1" in deps.pip_packages
    assert any(p.startswith("tinyapp==1.0") for p in deps.pip_packages)
    assert deps.pip_options == ["--find-links ./wheels"]

    bad = tmp_path / "bad.txt"
    bad.write_text("numpy\ntorch ===\n")
    with pytest.raises(DefinitionError) as caught:
        Environment.from_pip_requirements("bad", bad)
    assert caught.value.file == str(bad) and caught.value.line == 2


def test_existing_conda_environment(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    (meta / "numpy-1.26.4-py311_0.json").write_text(
        '{"name": "numpy", "version": "1.26.4", "build": "py311_0", '
        '"channel": "https://conda.anaconda.org/conda-forge/linux-64", "files": []}'
    )
    env = Environment.from_existing_conda_environment("existing", str(prefix))
    deps = env.python.conda_dependencies
    assert deps.conda_channels == ["conda-forge"]
    assert deps.conda_packages == ["numpy==1.26.4=py311_0"]
    with pytest.raises(NotFoundError):
        Environment.from_existing_conda_environment("x", "no-such-conda-environment")
