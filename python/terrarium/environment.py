"""``Environment``: a named, versioned environment definition, shaped as Azure ML v1's
(``azureml.core.environment``), so that notebooks port by changing their imports.

An object is a local draft: changing an attribute changes nothing in any workspace.
:meth:`Environment.register` makes (or finds) the version. The object's fields are those of the
Azure ML v1 directory format (``azureml_environment.json`` and ``conda_dependencies.yml``),
which Terrarium reads and writes itself: the SDK never maps fields onto Terrarium's definition,
never hashes and never numbers versions; it hands the directory to ``terrarium env create``.
"""

from __future__ import annotations

import os
# `typing` and `pathlib` are for the type checker only (functions off the first cell's path
# import `pathlib` themselves): importing them costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, List, Optional, Union

    PathLike = Union[str, os.PathLike[str]]

from . import _fastjson
from ._cli import Cli
from .conda_dependencies import DEFAULT_NAME, CondaDependencies, conda_document
from .errors import DefinitionError, NotFoundError, TerrariumError

if TYPE_CHECKING:
    from .workspace import Workspace


DEFINITION_FILE = "azureml_environment.json"
CONDA_FILE = "conda_dependencies.yml"
DOCKERFILE_FILE = "BaseDockerfile"
#: Azure ML v1's default shared memory size for containers.
DEFAULT_SHM_SIZE = "2g"


class ContainerRegistry:
    """The registry a base image comes from. Terrarium takes credentials from the docker
    config or ``TERRARIUM_REGISTRY_USERNAME``/``_PASSWORD``; a password set here is written to
    ``save_to_directory`` output (as Azure ML does) but never stored in a workspace."""

    def __init__(
        self,
        address: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        registry_identity: Optional[Any] = None,
    ) -> None:
        self.address = address
        self.username = username
        self.password = password
        self.registry_identity = registry_identity

    def _to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "username": self.username,
            "password": self.password,
            "registryIdentity": self.registry_identity,
        }

    def __repr__(self) -> str:
        # Never the password.
        return f"ContainerRegistry(address={self.address!r}, username={self.username!r})"


class DockerImagePlatform:
    """The image's operating system and CPU architecture."""

    def __init__(self, os: str = "Linux", architecture: str = "amd64") -> None:
        self.os = os
        self.architecture = architecture

    def __repr__(self) -> str:
        return f"DockerImagePlatform(os={self.os!r}, architecture={self.architecture!r})"


class SparkPackage:
    """A Maven package of a Spark session: ``group:artifact:version``."""

    def __init__(
        self,
        group: Optional[str] = None,
        artifact: Optional[str] = None,
        version: Optional[str] = None,
    ) -> None:
        self.group = group
        self.artifact = artifact
        self.version = version

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SparkPackage) and (
            (self.group, self.artifact, self.version)
            == (other.group, other.artifact, other.version)
        )

    def __repr__(self) -> str:
        return f"SparkPackage({self.group!r}, {self.artifact!r}, {self.version!r})"


class PythonSection:
    """The Python part: who manages the packages, the interpreter, the conda document.

    ``user_managed_dependencies=True`` means you install everything and Terrarium records what
    the interpreter (``interpreter_path``) has; otherwise Terrarium resolves and builds the
    packages of ``conda_dependencies``.
    """

    def __init__(self) -> None:
        self.user_managed_dependencies = False
        self.interpreter_path = "python"
        self.conda_dependencies: CondaDependencies = CondaDependencies()
        self.conda_dependencies_file: Optional[str] = None
        self.base_conda_environment: Optional[str] = None
        self._extra: dict[str, Any] = {}


class DockerSection:
    """How the environment's image is made: a base image or a Dockerfile (mutually exclusive,
    as in Azure ML: setting one clears the other), shared memory, platform."""

    def __init__(self) -> None:
        self.enabled = False
        self._base_image: Optional[str] = None
        self._base_dockerfile: Optional[str] = None
        self._build_context: Optional[dict[str, Any]] = None
        self.shared_volumes = True
        self.shm_size: Optional[str] = DEFAULT_SHM_SIZE
        self.arguments: list[str] = []
        self.base_image_registry = ContainerRegistry()
        self.platform = DockerImagePlatform()
        self.gpu_support: Optional[bool] = None
        self._extra: dict[str, Any] = {}

    @property
    def base_image(self) -> Optional[str]:
        """The base image (``registry/repository:tag``); clears ``base_dockerfile``."""
        return self._base_image

    @base_image.setter
    def base_image(self, value: Optional[str]) -> None:
        self._base_image = value or None
        if value:
            self._base_dockerfile = None
            self._build_context = None

    @property
    def base_dockerfile(self) -> Optional[str]:
        """The Dockerfile's text (a path to an existing file is read); clears ``base_image``."""
        return self._base_dockerfile

    @base_dockerfile.setter
    def base_dockerfile(self, value: Optional[str]) -> None:
        if value and "\n" not in value and os.path.isfile(value):
            with open(value, encoding="utf-8") as file:
                value = file.read()
        self._base_dockerfile = value or None
        if value:
            self._base_image = None
            self._build_context = None

    @property
    def build_context(self) -> Optional[dict[str, Any]]:
        """A Docker build context as Azure ML v1 writes it (``location``, ``dockerfilePath``),
        kept as read; clears the base image and Dockerfile."""
        return self._build_context

    @build_context.setter
    def build_context(self, value: Optional[dict[str, Any]]) -> None:
        self._build_context = value or None
        if value:
            self._base_image = None
            self._base_dockerfile = None


class SparkSection:
    """Spark session packages: Maven repositories and packages, and whether to precache them."""

    def __init__(self) -> None:
        self.repositories: list[str] = []
        self.packages: list[SparkPackage] = []
        self.precache_packages = True


class Environment:
    """A named environment definition; ``version`` is set once it is registered.

    ``Environment(name)`` is an empty, system-managed, pip-only definition: add packages
    through ``python.conda_dependencies``.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TerrariumError("an environment needs a name (a non-empty string)")
        self.name = name
        self.version: Optional[str] = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.spark = SparkSection()
        self.environment_variables: dict[str, str] = {}
        self.databricks: Any = {
            "mavenLibraries": [],
            "pypiLibraries": [],
            "rcranLibraries": [],
            "jarLibraries": [],
            "eggLibraries": [],
        }
        self.r: Any = None
        self.inferencing_stack_version: Optional[str] = None
        self.asset_id: Optional[str] = None
        self._extra: dict[str, Any] = {}
        self._record: Optional[dict[str, Any]] = None
        # The files this object had when it came from a workspace: changed since, it is a
        # draft again, registered before it is used.
        self._snapshot: Optional[dict[str, str]] = None

    # -- what the workspace says -------------------------------------------------------------

    @property
    def labels(self) -> List[str]:
        """The labels of this version in its workspace (``latest`` included), when it came
        from one."""
        return list((self._record or {}).get("labels", []))

    @property
    def content_hash(self) -> Optional[str]:
        """The version's content hash, computed by Terrarium, when it came from a workspace."""
        return (self._record or {}).get("content_hash")

    @property
    def lock_hash(self) -> Optional[str]:
        """The hash of the version's lock, once it has one."""
        return (self._record or {}).get("lock_hash")

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, version={self.version!r})"

    # -- constructors ------------------------------------------------------------------------

    @staticmethod
    def from_conda_specification(name: str, file_path: PathLike) -> "Environment":
        """An environment with the packages of a conda environment file."""
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(file_path)
        return env

    @staticmethod
    def from_pip_requirements(
        name: str, file_path: PathLike, pip_version: Optional[str] = None
    ) -> "Environment":
        """A pip-only environment with the requirements of a requirements file (its index
        options, ``-r`` includes and hashes read by Terrarium). ``pip_version`` is accepted for
        Azure ML's signature: Terrarium installs with uv, not pip."""
        del pip_version
        answer = Cli(None).json(
            ["env", "validate", os.fspath(file_path), "--format", "requirements", "--json"]
        )
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(
            _underlying_structure=conda_document(answer["definition"], name=DEFAULT_NAME)
        )
        return env

    @staticmethod
    def from_existing_conda_environment(name: str, conda_environment_name: str) -> "Environment":
        """An environment with the exact packages of an existing conda environment (a name
        ``conda env list`` shows, or its prefix directory), read from its ``conda-meta``."""
        prefix = _conda_prefix(conda_environment_name)
        answer = Cli(None).json(["env", "validate", str(prefix), "--format", "conda-prefix", "--json"])
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(
            _underlying_structure=conda_document(answer["definition"], name=DEFAULT_NAME)
        )
        return env

    @staticmethod
    def _from_dependencies(
        name: str, conda_specification: Optional[PathLike], pip_requirements: Optional[PathLike]
    ) -> "Environment":
        if conda_specification and pip_requirements:
            raise TerrariumError(
                "give conda_specification or pip_requirements, not both",
                hint="a conda file can list pip packages in its `pip:` section",
            )
        if conda_specification:
            return Environment.from_conda_specification(name, conda_specification)
        if pip_requirements:
            return Environment.from_pip_requirements(name, pip_requirements)
        env = Environment(name)
        env.python.user_managed_dependencies = True
        return env

    @staticmethod
    def from_dockerfile(
        name: str,
        dockerfile: str,
        conda_specification: Optional[PathLike] = None,
        pip_requirements: Optional[PathLike] = None,
    ) -> "Environment":
        """An environment built from a Dockerfile (its text, or a path to it). Without conda
        or pip packages it is user-managed: the Dockerfile installs everything."""
        env = Environment._from_dependencies(name, conda_specification, pip_requirements)
        env.docker.base_dockerfile = dockerfile
        return env

    @staticmethod
    def from_docker_image(
        name: str,
        image: str,
        container_registry: Optional[ContainerRegistry] = None,
        conda_specification: Optional[PathLike] = None,
        pip_requirements: Optional[PathLike] = None,
    ) -> "Environment":
        """An environment on a base image. Without conda or pip packages it is user-managed:
        the image has everything."""
        env = Environment._from_dependencies(name, conda_specification, pip_requirements)
        env.docker.base_image = image
        if container_registry is not None:
            env.docker.base_image_registry = container_registry
        return env

    # -- local operations --------------------------------------------------------------------

    def clone(self, new_name: str) -> "Environment":
        """A copy under another name, not registered (no version)."""
        import copy

        if not new_name:
            raise TerrariumError("a clone needs a name")
        env = copy.deepcopy(self)
        env.name = new_name
        env.version = None
        env.asset_id = None
        env._record = None
        env._snapshot = None
        return env

    def save_to_directory(self, path: PathLike, overwrite: bool = False) -> None:
        """Write the Azure ML v1 directory (``azureml_environment.json``, and
        ``conda_dependencies.yml`` and ``BaseDockerfile`` when there is something to put in
        them), which Azure ML's ``Environment.load_from_directory`` and ``terrarium env create
        -f DIR`` read."""
        from pathlib import Path

        target = Path(path)
        if target.exists() and not overwrite:
            raise TerrariumError(f"{target} already exists", hint="pass overwrite=True to replace")
        target.mkdir(parents=True, exist_ok=True)
        files = self._files()
        for name in (DEFINITION_FILE, CONDA_FILE, DOCKERFILE_FILE):
            if name not in files and (target / name).is_file():
                (target / name).unlink()
        for name, text in files.items():
            (target / name).write_text(text, encoding="utf-8")

    @staticmethod
    def load_from_directory(path: PathLike) -> "Environment":
        """Read an Azure ML v1 directory (as ``save_to_directory`` or Azure ML write it).

        Terrarium checks it first, so a problem raises
        :class:`~terrarium.errors.DefinitionError` naming its file, line and field."""
        from pathlib import Path

        directory = Path(path)
        if not (directory / DEFINITION_FILE).is_file():
            raise DefinitionError(
                f"{directory / DEFINITION_FILE}: no such file",
                file=str(directory / DEFINITION_FILE),
                hint="an Azure ML v1 directory holds azureml_environment.json",
            )
        cli = Cli(None)
        cli.run(["env", "validate", str(directory), "--format", "aml-v1", "--json"])
        with open(directory / DEFINITION_FILE, encoding="utf-8") as file:
            data = _fastjson.loads(file.read())
        conda_file = directory / CONDA_FILE
        document = None
        if conda_file.is_file():
            answer = cli.json(["env", "validate", str(conda_file), "--format", "conda", "--json"])
            document = conda_document(answer["definition"], variables=True)
        env = Environment._from_aml_dict(data, document, str(directory / DEFINITION_FILE))
        dockerfile = directory / DOCKERFILE_FILE
        if dockerfile.is_file():
            env.docker.base_dockerfile = dockerfile.read_text(encoding="utf-8")
        return env

    # -- workspace operations ----------------------------------------------------------------

    def register(self, workspace: "Workspace") -> "Environment":
        """Register this definition; return the version as the workspace has it.

        Without ``version`` the workspace numbers it: the same content as the latest version
        returns that version, other content makes the next one. With ``version`` set, that
        version is made, or found with the same content; other content raises
        :class:`~terrarium.errors.ConflictError` (versions are immutable). Nothing is locked or
        built yet: that happens at first use (``build_local``, ``build``, a run)."""
        record = workspace._backend.register(self)
        return workspace._backend.environment(record)

    @staticmethod
    def get(
        workspace: "Workspace",
        name: str,
        version: Optional[str] = None,
        label: Optional[str] = None,
    ) -> "Environment":
        """The version ``version``, or the one labelled ``label``, or the latest."""
        if version is not None and label is not None:
            raise TerrariumError("give version or label, not both")
        backend = workspace._backend
        return backend.environment(backend.resolve(name, version, label))

    @staticmethod
    def list(workspace: "Workspace") -> dict[str, "Environment"]:
        """The latest version of every environment, by name (curated ones included, archived
        and anonymous ones not)."""
        backend = workspace._backend
        return {
            record["name"]: backend.environment(record) for record in backend.list_latest()
        }

    @staticmethod
    def label(workspace: "Workspace", name: str, version: str, labels: List[str]) -> None:
        """Point each label at ``name:version`` (moving it from another version)."""
        if isinstance(labels, str):
            labels = [labels]
        for label in labels:
            workspace._backend.set_label(name, version, label)

    def _registered(self, workspace: "Workspace") -> "Environment":
        """This version in the workspace: the object as it came from the workspace, else
        registered now (a changed object with a version set raises ConflictError)."""
        if self._record is not None and self._snapshot == self._files():
            return self
        return self.register(workspace)

    def build_local(
        self, workspace: "Workspace", platform: Optional[str] = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Lock (once) and build the environment on this machine; registers it first when it
        has no version. Returns ``name``, ``version``, ``lock_hash``, ``prefix`` (the built
        environment), ``built`` (False when it was built already) and ``user_managed``; a
        user-managed environment has nothing to build: its ``prefix`` is None, and
        ``interpreter`` is the interpreter it uses as it is."""
        import warnings

        if platform is not None:
            warnings.warn("build_local builds for this machine; `platform` is ignored", stacklevel=2)
        if kwargs:
            warnings.warn(
                f"build_local ignores {', '.join(sorted(kwargs))}: use build() for images",
                stacklevel=2,
            )
        env = self._registered(workspace)
        from ._progress import Progress

        with Progress(f"building {env.name}:{env.version}") as progress:
            answer: dict[str, Any] = workspace._cli.json(
                ["env", "build", f"{env.name}:{env.version}", "--json"],
                on_status=progress.update if progress.active else None,
            )
        return answer

    def build(
        self,
        workspace: "Workspace",
        base: Optional[str] = None,
        push: Optional[str] = None,
        builder: Optional[str] = None,
        image_build_compute: Optional[str] = None,
    ) -> "ImageBuildDetails":
        """Build the environment's container image with ``terrarium image build`` (no Docker
        daemon); registers it first when it has no version.

        ``base`` is the base image (needed for pip-only environments), ``push``
        ``REGISTRY/REPO[:TAG]`` to push to, ``builder`` (``buildah`` or ``docker``) the builder
        of a Dockerfile environment."""
        import warnings

        if image_build_compute is not None:
            warnings.warn("images are built on this machine; `image_build_compute` is ignored", stacklevel=2)
        env = self._registered(workspace)
        args = ["image", "build", f"{env.name}:{env.version}", "--json"]
        if base:
            args += ["--base", base]
        if push:
            args += ["--push", push]
        if builder:
            args += ["--builder", builder]
        from ._progress import Progress

        with Progress(f"building the image of {env.name}:{env.version}") as progress:
            stdout = workspace._cli.run(args, on_status=progress.update if progress.active else None)
        try:
            details = _fastjson.loads(stdout) if stdout.strip() else {}
        except ValueError:
            # Dockerfile environments built by buildah or docker print lines, not JSON.
            details = {"output": stdout.strip()}
        return ImageBuildDetails(details)

    def get_image_details(self, workspace: "Workspace") -> "DockerImageDetails":
        """The latest image built from this version (empty when none was)."""
        if self.version is None:
            raise TerrariumError(
                f"{self.name} is not registered", hint="register it (or build it) first"
            )
        builds = workspace._backend.image_builds(self.name, self.version)
        return DockerImageDetails(builds[0] if builds else {})

    # -- the Azure ML v1 form ----------------------------------------------------------------

    def _to_aml_dict(self) -> dict[str, Any]:
        """``azureml_environment.json``'s content, as Azure ML's ``save_to_directory`` writes
        it (the conda document and Dockerfile go in their own files)."""
        python: dict[str, Any] = {
            "userManagedDependencies": self.python.user_managed_dependencies,
            "interpreterPath": self.python.interpreter_path,
            "condaDependenciesFile": self.python.conda_dependencies_file,
            "baseCondaEnvironment": self.python.base_conda_environment,
        }
        python.update(self.python._extra)
        docker: dict[str, Any] = {
            "enabled": self.docker.enabled,
            "baseImage": self.docker.base_image,
            "baseDockerfile": None,
            "buildContext": self.docker.build_context,
            "sharedVolumes": self.docker.shared_volumes,
            "shmSize": self.docker.shm_size,
            "arguments": list(self.docker.arguments),
            "baseImageRegistry": self.docker.base_image_registry._to_dict(),
            "platform": {
                "os": self.docker.platform.os,
                "architecture": self.docker.platform.architecture,
            },
        }
        if self.docker.gpu_support is not None:
            docker["gpuSupport"] = self.docker.gpu_support
        docker.update(self.docker._extra)
        if self.docker.base_dockerfile:
            del docker["baseDockerfile"]
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "environmentVariables": dict(self.environment_variables),
            "python": python,
            "docker": docker,
            "spark": {
                "repositories": list(self.spark.repositories),
                "packages": [
                    {"group": p.group, "artifact": p.artifact, "version": p.version}
                    for p in self.spark.packages
                ],
                "precachePackages": self.spark.precache_packages,
            },
            "databricks": _fastjson.copy(self.databricks),
            "r": _fastjson.copy(self.r),
            "inferencingStackVersion": self.inferencing_stack_version,
            "assetId": self.asset_id,
        }
        data.update(self._extra)
        return data

    def _files(self) -> dict[str, str]:
        """The files of the Azure ML v1 directory, by name."""
        files = {DEFINITION_FILE: _fastjson.dumps(self._to_aml_dict(), indent=4) + "\n"}
        dependencies = self.python.conda_dependencies
        if dependencies is not None and not dependencies._is_empty():
            files[CONDA_FILE] = dependencies.serialize_to_string()
        if self.docker.base_dockerfile:
            files[DOCKERFILE_FILE] = self.docker.base_dockerfile
        return files

    @staticmethod
    def _from_aml_dict(
        data: Any, document: Optional[dict[str, Any]], source: str
    ) -> "Environment":
        """An object from ``azureml_environment.json``'s content and the conda document (from
        the conda file, else the JSON's inline ``python.condaDependencies``)."""
        def section(key: str) -> dict[str, Any]:
            value = data.get(key)
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise DefinitionError(
                    f"{source}: field `{key}`: expected an object", file=str(source), field=key
                )
            return dict(value)

        if not isinstance(data, dict):
            raise DefinitionError(f"{source}: expected an object", file=str(source))
        env = Environment(str(data.get("name") or "unnamed"))
        version = data.get("version")
        env.version = None if version is None else str(version)
        env.environment_variables = {
            str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()
        }

        python = section("python")
        env.python.user_managed_dependencies = bool(python.pop("userManagedDependencies", False))
        env.python.interpreter_path = python.pop("interpreterPath", None) or "python"
        env.python.conda_dependencies_file = python.pop("condaDependenciesFile", None)
        env.python.base_conda_environment = python.pop("baseCondaEnvironment", None)
        inline = python.pop("condaDependencies", None)
        env.python._extra = python
        if document is None and isinstance(inline, dict):
            document = inline
        env.python.conda_dependencies = CondaDependencies(_underlying_structure=document or None)

        docker = section("docker")
        env.docker.enabled = bool(docker.pop("enabled", False))
        image = docker.pop("baseImage", None)
        dockerfile = docker.pop("baseDockerfile", None)
        context = docker.pop("buildContext", None)
        env.docker._base_image = image
        env.docker._base_dockerfile = dockerfile
        env.docker._build_context = context
        env.docker.shared_volumes = bool(docker.pop("sharedVolumes", True))
        env.docker.shm_size = docker.pop("shmSize", DEFAULT_SHM_SIZE)
        env.docker.arguments = list(docker.pop("arguments", None) or [])
        registry = docker.pop("baseImageRegistry", None) or {}
        env.docker.base_image_registry = ContainerRegistry(
            registry.get("address"),
            registry.get("username"),
            registry.get("password"),
            registry.get("registryIdentity"),
        )
        platform = docker.pop("platform", None) or {}
        env.docker.platform = DockerImagePlatform(
            platform.get("os") or "Linux", platform.get("architecture") or "amd64"
        )
        env.docker.gpu_support = docker.pop("gpuSupport", None)
        env.docker._extra = docker

        spark = section("spark")
        env.spark.repositories = [str(r) for r in spark.get("repositories") or []]
        env.spark.packages = [
            SparkPackage(p.get("group"), p.get("artifact"), p.get("version"))
            if isinstance(p, dict)
            else SparkPackage(*(str(p).split(":", 2) + [None, None])[:3])
            for p in spark.get("packages") or []
        ]
        env.spark.precache_packages = bool(spark.get("precachePackages", True))

        if "databricks" in data:
            env.databricks = _fastjson.copy(data["databricks"])
        env.r = _fastjson.copy(data.get("r"))
        env.inferencing_stack_version = data.get("inferencingStackVersion")
        env.asset_id = data.get("assetId")
        known = {
            "name", "version", "environmentVariables", "python", "docker", "spark",
            "databricks", "r", "inferencingStackVersion", "assetId",
        }
        env._extra = {k: _fastjson.copy(v) for k, v in data.items() if k not in known}
        return env


class ImageBuildDetails(dict):  # type: ignore[type-arg]
    """What ``Environment.build`` made: the ``terrarium image build --json`` answer (digest,
    size, layers, output, push), as a dict. The build has finished when it is returned."""

    @property
    def status(self) -> str:
        """Always ``Succeeded``: a failed build raises instead."""
        return "Succeeded"

    def wait_for_completion(self, show_output: bool = True) -> None:
        """Nothing to wait for (kept for Azure ML's shape)."""
        del show_output

    def get_log(self) -> str:
        """What the build said, when it said something."""
        return str(self.get("log", ""))


class DockerImageDetails(dict):  # type: ignore[type-arg]
    """The latest image built from a version, as the workspace recorded it (``digest``,
    ``pushed_to``, ``output``, ``size``, ``layers``, ``built_at``, ...)."""

    @property
    def image_exist(self) -> bool:
        """Whether an image was built."""
        return bool(self.get("digest"))

    @property
    def image(self) -> Optional[str]:
        """Where the image is: the registry it was pushed to, else its OCI layout."""
        value = self.get("pushed_to") or self.get("output")
        return str(value) if value else None


def _conda_prefix(name_or_prefix: str) -> Path:
    """The prefix of a conda environment given by name or path."""
    import shutil
    from pathlib import Path
    import subprocess

    given = Path(name_or_prefix).expanduser()
    if (given / "conda-meta").is_dir():
        return given
    conda = shutil.which("conda") or os.environ.get("CONDA_EXE")
    if conda:
        try:
            listed = subprocess.run(
                [conda, "env", "list", "--json"], capture_output=True, text=True, timeout=60
            )
            for prefix in _fastjson.loads(listed.stdout).get("envs", []):
                if Path(prefix).name == name_or_prefix or (
                    name_or_prefix == "base" and (Path(prefix) / "condabin").is_dir()
                ):
                    return Path(prefix)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    roots = [Path(p) for p in os.environ.get("CONDA_ENVS_PATH", "").split(os.pathsep) if p]
    for var in ("CONDA_PREFIX", "MAMBA_ROOT_PREFIX"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]) / "envs")
    home = Path.home()
    roots += [home / ".conda" / "envs"] + [
        home / d / "envs" for d in ("miniconda3", "anaconda3", "miniforge3", "mambaforge")
    ]
    for root in roots:
        if (root / name_or_prefix / "conda-meta").is_dir():
            return root / name_or_prefix
    raise NotFoundError(
        f"conda environment {name_or_prefix} not found",
        code="not_found",
        hint="give its prefix (the directory holding conda-meta), or a name `conda env list` shows",
    )


def write_definition(env: Environment, directory: str) -> None:
    """Write ``env`` as an Azure ML v1 directory into ``directory`` (which exists)."""
    for name, text in env._files().items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as file:
            file.write(text)


class scratch_directory:
    """A private scratch directory for a definition handed to the CLI, removed with what it
    holds when the ``with`` block ends. Made with ``os.mkdir`` (mode 0700, a random name, never
    an existing directory) in the temporary directory: importing ``tempfile`` (with ``shutil``
    and ``random``) costs a notebook's first cell a few milliseconds."""

    def __init__(self) -> None:
        self.path = ""

    def __enter__(self) -> str:
        base = os.environ.get("TMPDIR") or os.environ.get("TEMP") or os.environ.get("TMP")
        if not base:
            if os.name == "nt":
                import tempfile

                base = tempfile.gettempdir()
            else:
                base = "/tmp"
        for _ in range(100):
            path = os.path.join(base, "terrarium-sdk-" + os.urandom(8).hex())
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError as err:
                raise TerrariumError(f"cannot make a scratch directory in {base}: {err}", user_error=False) from None
            self.path = path
            return path
        raise TerrariumError(f"cannot make a scratch directory in {base}", user_error=False)

    def __exit__(self, *exc: object) -> None:
        # Bottom up; a symbolic link is removed, never followed.
        try:
            for root, dirs, files in os.walk(self.path, topdown=False):
                for name in files:
                    os.unlink(os.path.join(root, name))
                for name in dirs:
                    full = os.path.join(root, name)
                    if os.path.islink(full):
                        os.unlink(full)
                    else:
                        os.rmdir(full)
            os.rmdir(self.path)
        except OSError:
            pass
