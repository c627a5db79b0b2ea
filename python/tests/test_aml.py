"""Azure ML v1 directories both ways, checked with Microsoft's own ``azureml-core``
(``TERRARIUM_TEST_AML_PYTHON``): what the SDK saves loads in Azure ML with the same fields, and
what Azure ML saves loads here (and survives a workspace) with the same fields."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import needed
from terrarium import CondaDependencies, Environment, Workspace
from terrarium.environment import SparkPackage

# Runs in azureml-core's Python: `save SPEC DIR` builds an Environment from SPEC (JSON) and saves
# it; `load DIR` prints the fields of the Environment it loads.
AML_SCRIPT = r'''
import json, logging, sys, warnings
logging.disable(logging.CRITICAL)
warnings.simplefilter("ignore")
from azureml.core import Environment
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.environment import SparkPackage

def fields(env):
    cd = env.python.conda_dependencies
    return {
        "name": env.name,
        "user_managed": env.python.user_managed_dependencies,
        "interpreter": env.python.interpreter_path,
        "channels": list(cd.conda_channels) if cd else [],
        "conda": list(cd.conda_packages) if cd else [],
        "pip": list(cd.pip_packages) if cd else [],
        "pip_options": list(cd.pip_options) if cd else [],
        "variables": dict(env.environment_variables or {}),
        "base_image": env.docker.base_image,
        "dockerfile": env.docker.base_dockerfile,
        "shm_size": env.docker.shm_size,
        "spark_repositories": list(env.spark.repositories),
        "spark_packages": [[p.group, p.artifact, p.version] for p in env.spark.packages],
        "precache": env.spark.precache_packages,
    }

if sys.argv[1] == "load":
    print(json.dumps(fields(Environment.load_from_directory(sys.argv[2]))))
else:
    spec = json.loads(sys.argv[2])
    if spec.get("dockerfile"):
        env = Environment.from_dockerfile(spec["name"], spec["dockerfile"])
    else:
        env = Environment(spec["name"])
        env.python.conda_dependencies = CondaDependencies.create(
            pip_packages=spec["pip"], conda_packages=spec["conda"],
            python_version=spec["python"], pin_sdk_version=False)
        for option in spec.get("pip_options", []):
            env.python.conda_dependencies.set_pip_option(option)
        env.docker.base_image = spec.get("base_image")
    env.environment_variables = spec["variables"]
    env.docker.shm_size = spec.get("shm_size", "2g")
    env.spark.repositories = spec.get("spark_repositories", [])
    env.spark.packages = [SparkPackage(*p) for p in spec.get("spark_packages", [])]
    env.save_to_directory(sys.argv[3], overwrite=True)
'''


@pytest.fixture
def aml(tmp_path: Path) -> Any:
    python = needed("TERRARIUM_TEST_AML_PYTHON", "the Azure ML v1 checks need azureml-core")
    script = tmp_path / "aml.py"
    script.write_text(AML_SCRIPT)

    def call(*args: str) -> str:
        done = subprocess.run(
            [python, str(script), *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return call


def normal(found: dict[str, Any]) -> dict[str, Any]:
    """Fields with pip options in a canonical order: Terrarium keeps index options by kind
    (index URL, extra index URLs, find-links), each kind in its order, and writes them in that
    order; the order between kinds means nothing to pip."""
    return {**found, "pip_options": sorted(found["pip_options"])}


def fields(env: Environment) -> dict[str, Any]:
    """The same fields as AML_SCRIPT's, of our object."""
    cd = env.python.conda_dependencies
    return {
        "name": env.name,
        "user_managed": env.python.user_managed_dependencies,
        "interpreter": env.python.interpreter_path,
        "channels": cd.conda_channels,
        "conda": cd.conda_packages,
        "pip": cd.pip_packages,
        "pip_options": cd.pip_options,
        "variables": env.environment_variables,
        "base_image": env.docker.base_image,
        "dockerfile": env.docker.base_dockerfile,
        "shm_size": env.docker.shm_size,
        "spark_repositories": env.spark.repositories,
        "spark_packages": [[p.group, p.artifact, p.version] for p in env.spark.packages],
        "precache": env.spark.precache_packages,
    }


def ours() -> Environment:
    env = Environment("ours")
    env.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["numpy=1.26", "scipy"],
        pip_packages=["requests==2.32.3", "rich>=13"],
        python_version="3.11",
    )
    env.python.conda_dependencies.set_pip_option("--extra-index-url https://example.org/simple")
    env.environment_variables = {"OMP_NUM_THREADS": "4", "MODE": "train"}
    env.docker.base_image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    env.docker.shm_size = "16g"
    env.spark.repositories = ["https://repo.example.org/maven"]
    env.spark.packages = [SparkPackage("com.example", "lib", "1.0")]
    return env


SPEC = {
    "name": "theirs",
    "python": "3.10",
    "conda": ["numpy=1.26", "pandas"],
    "pip": ["requests==2.32.3", "scikit-learn>=1.4"],
    "pip_options": ["--extra-index-url https://example.org/simple"],
    "variables": {"A": "1", "B": "two words"},
    "base_image": "docker.io/library/python:3.10-slim",
    "shm_size": "4g",
    "spark_repositories": ["https://repo.example.org/maven"],
    "spark_packages": [["com.example", "lib", "1.0"]],
}


def test_what_we_save_loads_in_azure_ml(aml: Any, tmp_path: Path) -> None:
    env = ours()
    env.save_to_directory(tmp_path / "ours")
    assert json.loads(aml("load", str(tmp_path / "ours"))) == fields(env)
    # And back: our own load reads the same.
    assert fields(Environment.load_from_directory(tmp_path / "ours")) == fields(env)


def test_what_azure_ml_saves_loads_here(aml: Any, tmp_path: Path) -> None:
    aml("save", json.dumps(SPEC), str(tmp_path / "theirs"))
    expected = normal(json.loads(aml("load", str(tmp_path / "theirs"))))
    loaded = Environment.load_from_directory(tmp_path / "theirs")
    assert normal(fields(loaded)) == expected
    # Saved again by us, Azure ML reads what it wrote.
    loaded.save_to_directory(tmp_path / "again")
    assert normal(json.loads(aml("load", str(tmp_path / "again")))) == expected


def test_azure_ml_directories_survive_a_workspace(
    aml: Any, workspace: Workspace, tmp_path: Path
) -> None:
    aml("save", json.dumps(SPEC), str(tmp_path / "theirs"))
    expected = normal(json.loads(aml("load", str(tmp_path / "theirs"))))
    registered = Environment.load_from_directory(tmp_path / "theirs").register(workspace)
    got = Environment.get(workspace, "theirs", version=registered.version)
    got.save_to_directory(tmp_path / "out")
    assert normal(json.loads(aml("load", str(tmp_path / "out")))) == expected


def test_dockerfiles_both_ways(aml: Any, tmp_path: Path) -> None:
    dockerfile = "FROM debian:bookworm\nRUN echo hello\n"
    spec = {"name": "docker", "dockerfile": dockerfile, "variables": {}}
    aml("save", json.dumps(spec), str(tmp_path / "theirs"))
    loaded = Environment.load_from_directory(tmp_path / "theirs")
    assert loaded.docker.base_dockerfile == dockerfile
    assert loaded.docker.base_image is None
    assert loaded.python.user_managed_dependencies is True
    ours_env = Environment.from_dockerfile("docker", dockerfile)
    ours_env.save_to_directory(tmp_path / "ours")
    loaded_there = json.loads(aml("load", str(tmp_path / "ours")))
    assert loaded_there["dockerfile"] == dockerfile
    assert loaded_there["user_managed"] is True
