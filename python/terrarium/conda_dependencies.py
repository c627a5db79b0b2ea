"""``CondaDependencies``: the conda environment document of an environment, as in Azure ML v1
(``azureml.core.conda_dependencies``).

The document is a plain mapping (``name``, ``channels``, ``dependencies`` with a nested ``pip``
list, ``variables``), edited in memory and written as YAML. Reading a conda file is left to
Terrarium itself (``terrarium env validate --format conda``), so a file means the same to the
SDK, the CLI and the team server, and a bad file raises :class:`~terrarium.errors.DefinitionError`
naming its line and field.

Differences from Azure ML: no ``azureml-defaults`` is added (Terrarium's deployments carry their
own worker), ``create`` adds no Python unless asked (an environment without a ``python`` conda
package is pip-only: it uses a base interpreter), and the first conda package of a document
without channels brings the ``conda-forge`` channel.
"""

from __future__ import annotations

import os
# `typing` and `pathlib` are for the type checker only (functions off the first cell's path
# import `pathlib` themselves): importing them costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Optional, Union

    PathLike = Union[str, os.PathLike[str]]

from . import _fastjson, _yaml
from .errors import TerrariumError

PIP = "pip"
CHANNELS = "channels"
PACKAGES = "dependencies"
PYTHON_PREFIX = "python"
#: The channel a document without channels gets with its first conda package.
DEFAULT_CHANNEL = "conda-forge"
#: The name Azure ML gives the conda environment of a definition.
DEFAULT_NAME = "project_environment"
# Compiled on first use (re caches it), not at import.
_VERSION = r"(\d+)\.(\d+)(\.(\d+))?([ab](\d+))?$"


def _version_at_end(spec: str) -> Optional[str]:
    """The Python version a ``python`` spec ends with (``python=3.11`` gives ``3.11``)."""
    import re

    found = re.search(_VERSION, spec)
    return found.group() if found else None



def _pip_lines(definition: dict[str, Any]) -> list[str]:
    """A definition's pip section as requirements lines: index options first, then packages
    (Terrarium's ``IndexOptions::to_lines`` and ``PipRequirement::to_line``)."""
    python = definition.get("python") or {}
    index = python.get("index") or {}
    lines: list[str] = []
    if index.get("index_url"):
        lines.append(f"--index-url {index['index_url']}")
    lines += [f"--extra-index-url {url}" for url in index.get("extra_index_urls") or []]
    lines += [f"--find-links {url}" for url in index.get("find_links") or []]
    if index.get("no_index"):
        lines.append("--no-index")
    for requirement in python.get("pip") or []:
        line = ("-e " if requirement.get("editable") else "") + requirement["spec"]
        for digest in requirement.get("hashes") or []:
            line += f" --hash={digest}"
        lines.append(line)
    return lines


def conda_document(
    definition: dict[str, Any], *, name: Optional[str] = None, variables: bool = False
) -> dict[str, Any]:
    """The conda document of a Terrarium definition (its JSON form), as Terrarium's own conda
    and Azure ML v1 exports write it: ``name``, ``channels``, ``dependencies`` (a pip-only
    definition's Python version as ``python=X``, the pip lines last), and with ``variables``
    the definition's variables."""
    conda = definition.get("conda") or {}
    dependencies: list[Any] = list(conda.get("dependencies") or [])
    version = (definition.get("python") or {}).get("version")
    if not dependencies and version:
        dependencies.append(f"python={version}")
    pip = _pip_lines(definition)
    if pip:
        dependencies.append({PIP: pip})
    document: dict[str, Any] = {
        "name": name or definition.get("name") or DEFAULT_NAME,
        CHANNELS: list(conda.get("channels") or []),
        PACKAGES: dependencies,
    }
    env = definition.get("environment_variables") or {}
    if variables and env:
        document["variables"] = dict(env)
    return document


def _package_name(value: str) -> str:
    """The package a pip line names (Azure ML's rule: up to the first ``[=<>~!``; a wheel's
    file name up to its first ``-``)."""
    if value.endswith(".whl"):
        return value.split("/")[-1].split("-")[0]
    # Azure ML splits on the pattern `[\[=|<|>|~|!]`: a class that holds `|` too.
    cut = len(value)
    for mark in "[=|<>~!":
        found = value.find(mark, 0, cut)
        if found >= 0:
            cut = found
    return value[:cut].strip()


def _is_python(spec: str) -> bool:
    return spec.startswith(PYTHON_PREFIX) and _package_name(spec) == PYTHON_PREFIX


class CondaDependencies:
    """A conda environment document: conda channels and packages, pip packages and options.

    ``CondaDependencies(path)`` reads a conda environment file; ``CondaDependencies()`` is an
    empty document named ``project_environment``.
    """

    def __init__(
        self,
        conda_dependencies_file_path: Optional[PathLike] = None,
        _underlying_structure: Optional[dict[str, Any]] = None,
    ) -> None:
        if conda_dependencies_file_path is not None:
            self._document = read_conda_file(os.fspath(conda_dependencies_file_path))
        elif _underlying_structure is not None:
            if not isinstance(_underlying_structure, dict):
                raise TerrariumError("a conda document must be a mapping")
            self._document = _fastjson.copy(_underlying_structure)
        else:
            self._document = {"name": DEFAULT_NAME, CHANNELS: [], PACKAGES: []}

    @staticmethod
    def create(
        pip_indexurl: Optional[str] = None,
        pip_packages: Optional[list[str]] = None,
        conda_packages: Optional[list[str]] = None,
        python_version: Optional[str] = None,
        pin_sdk_version: bool = False,
    ) -> "CondaDependencies":
        """A document with these packages.

        ``python_version`` adds ``python=VERSION`` as a conda package (and ``conda-forge``);
        without it and without conda packages the environment is pip-only. ``pin_sdk_version``
        is accepted for Azure ML's signature: there are no SDK packages to pin.
        """
        del pin_sdk_version
        dependencies = CondaDependencies()
        if pip_indexurl:
            dependencies.set_pip_option(f"--index-url {pip_indexurl}")
        if python_version:
            dependencies.set_python_version(python_version)
        for package in pip_packages or []:
            dependencies.add_pip_package(package)
        for package in conda_packages or []:
            dependencies.add_conda_package(package)
        return dependencies

    @staticmethod
    def merge_requirements(requirements: list[str]) -> list[str]:
        """Merge requirements naming the same package into one (``a>1``, ``a<3`` -> ``a>1,<3``)."""
        packages: dict[str, list[str]] = {}
        for requirement in requirements:
            name = _package_name(requirement)
            packages.setdefault(name, []).append(requirement[len(name):].strip())
        return [name + ",".join(part for part in parts if part) for name, parts in packages.items()]

    # -- reading ---------------------------------------------------------------------------

    def _dependencies(self) -> list[Any]:
        dependencies = self._document.get(PACKAGES)
        if not isinstance(dependencies, list):
            dependencies = []
            self._document[PACKAGES] = dependencies
        return dependencies

    def _pip_section(self) -> Optional[list[str]]:
        for item in self._document.get(PACKAGES) or []:
            if isinstance(item, dict) and PIP in item:
                section = item[PIP]
                if not isinstance(section, list):
                    section = []
                    item[PIP] = section
                return section
        return None

    @property
    def conda_channels(self) -> list[str]:
        """The channels, in priority order (a copy)."""
        return [str(c) for c in self._document.get(CHANNELS) or []]

    @property
    def conda_packages(self) -> list[str]:
        """The conda packages (a copy)."""
        return [str(d) for d in self._document.get(PACKAGES) or [] if not isinstance(d, dict)]

    @property
    def pip_packages(self) -> list[str]:
        """The pip packages, without options (a copy)."""
        return [p for p in self._pip_section() or [] if not str(p).startswith("-")]

    @property
    def pip_options(self) -> list[str]:
        """The pip options such as ``--index-url URL`` (a copy)."""
        return [p for p in self._pip_section() or [] if str(p).startswith("-")]

    def get_python_version(self) -> Optional[str]:
        """The version of the ``python`` conda package, if there is one."""
        for item in self._document.get(PACKAGES) or []:
            if isinstance(item, str) and _is_python(item):
                return _version_at_end(item)
        return None

    # -- editing ---------------------------------------------------------------------------

    def set_python_version(self, version: str) -> None:
        """Set the ``python`` conda package to ``python=VERSION``."""
        dependencies = self._dependencies()
        for i, item in enumerate(dependencies):
            if isinstance(item, str) and _is_python(item):
                dependencies[i] = f"{PYTHON_PREFIX}={version}"
                return
        self._ensure_channel()
        dependencies.insert(0, f"{PYTHON_PREFIX}={version}")

    def add_channel(self, channel: str) -> None:
        """Add a conda channel (last: lowest priority)."""
        channels = self._document.get(CHANNELS)
        if not isinstance(channels, list):
            channels = []
            self._document[CHANNELS] = channels
        if channel not in channels:
            channels.append(channel)

    def remove_channel(self, channel: str) -> None:
        """Remove a conda channel."""
        channels = self._document.get(CHANNELS) or []
        if channel in channels:
            channels.remove(channel)

    def _ensure_channel(self) -> None:
        if not self._document.get(CHANNELS):
            self.add_channel(DEFAULT_CHANNEL)

    def add_conda_package(self, conda_package: str) -> None:
        """Add a conda package (``python=X`` sets the Python version instead)."""
        if _is_python(conda_package):
            version = _version_at_end(conda_package)
            if version:
                self.set_python_version(version)
                return
        dependencies = self._dependencies()
        if conda_package not in dependencies:
            self._ensure_channel()
            # Before the pip section, where conda tools expect conda packages.
            at = next(
                (i for i, d in enumerate(dependencies) if isinstance(d, dict)), len(dependencies)
            )
            dependencies.insert(at, conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        """Remove a conda package, given as it is written."""
        dependencies = self._dependencies()
        if conda_package in dependencies:
            dependencies.remove(conda_package)

    def add_pip_package(self, pip_package: str) -> None:
        """Add a pip package; one already there by that name is replaced (and moves last)."""
        if pip_package.startswith("-"):
            raise TerrariumError(
                f"invalid package name {pip_package}",
                hint="pip options go through set_pip_option",
            )
        self.remove_pip_package(pip_package)
        section = self._pip_section()
        if section is None:
            self._dependencies().append({PIP: [pip_package]})
        elif pip_package not in section:
            section.append(pip_package)

    def remove_pip_package(self, pip_package: str) -> None:
        """Remove the pip package of that name (whatever its version)."""
        if pip_package.startswith("-"):
            raise TerrariumError(f"invalid package name {pip_package}")
        section = self._pip_section()
        if section is None:
            return
        name = _package_name(pip_package)
        section[:] = [
            p for p in section if str(p).startswith("-") or _package_name(str(p)) != name
        ]

    def set_pip_option(self, pip_option: str) -> None:
        """Add a pip option such as ``--index-url URL``; one with the same flag is replaced."""
        if not pip_option.startswith("-"):
            raise TerrariumError(f"invalid pip option {pip_option}")
        section = self._pip_section()
        if section is None:
            self._dependencies().append({PIP: [pip_option]})
            return
        flag = pip_option.split()[0]
        for i, item in enumerate(section):
            if str(item).startswith("-") and str(item).split()[0] == flag:
                section[i] = pip_option
                return
        # Options before packages, as requirements files write them.
        at = next((i for i, p in enumerate(section) if not str(p).startswith("-")), len(section))
        section.insert(at, pip_option)

    def remove_pip_option(self, pip_option: str) -> None:
        """Remove the pip option with this flag."""
        if not pip_option.startswith("-"):
            raise TerrariumError(f"invalid pip option {pip_option}")
        section = self._pip_section()
        if section is None:
            return
        flag = pip_option.split()[0]
        section[:] = [
            p for p in section if not (str(p).startswith("-") and str(p).split()[0] == flag)
        ]

    def set_pip_index_url(self, index_url: str) -> None:
        """Set the pip index: ``--index-url URL`` (a bare URL is taken as that)."""
        option = index_url if index_url.startswith("-") else f"--index-url {index_url}"
        self.set_pip_option(option)

    def set_pip_requirements(self, pip_requirements: list[str]) -> None:
        """Replace the whole pip section with these lines (packages and options)."""
        section = self._pip_section()
        if section is None:
            self._dependencies().append({PIP: list(pip_requirements)})
        else:
            section[:] = list(pip_requirements)

    # -- writing ---------------------------------------------------------------------------

    def serialize_to_string(self) -> str:
        """The document as YAML."""
        return _yaml.dump(self._document)

    def save(self, path: PathLike) -> str:
        """Write the document to the file ``path``; return the path."""
        from pathlib import Path

        target = Path(path)
        if target.is_dir():
            raise TerrariumError(
                f"{target} is a directory", hint="give the path of the file to write"
            )
        target.write_text(self.serialize_to_string(), encoding="utf-8")
        return str(target)

    def save_to_file(self, base_directory: PathLike, conda_file_path: Optional[str] = None) -> str:
        """Write the document to ``conda_file_path`` (default ``conda_dependencies.yml``) in
        ``base_directory``; return the relative path."""
        relative = conda_file_path or "conda_dependencies.yml"
        self.save(os.path.join(base_directory, relative))
        return relative

    def as_dict(self) -> dict[str, Any]:
        """The document as plain data (a copy)."""
        document: dict[str, Any] = _fastjson.copy(self._document)
        return document

    def _is_empty(self) -> bool:
        return not any(self._document.get(key) for key in (CHANNELS, PACKAGES, "variables"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CondaDependencies) and self._document == other._document

    def __repr__(self) -> str:
        return f"CondaDependencies({self._document!r})"


def read_conda_file(path: str) -> dict[str, Any]:
    """A conda environment file as a document, read by Terrarium (``env validate --format
    conda``): :class:`~terrarium.errors.DefinitionError` names the line and field of a problem."""
    from ._cli import Cli

    answer = Cli(None).json(["env", "validate", path, "--format", "conda", "--json"])
    return conda_document(answer["definition"], variables=True)
