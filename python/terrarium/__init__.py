"""Terrarium's Python SDK: reproducible, versioned environments for machine-learning work, with
Azure ML v1's shape (``azureml.core``), so that notebooks port by changing their imports::

    from terrarium.core import Environment, Experiment, ScriptRunConfig, Workspace
    from terrarium.core.conda_dependencies import CondaDependencies

The SDK drives the ``terrarium`` binary (shipped in the wheel, else ``$TERRARIUM_BIN``, else on
``PATH``) and a team server's REST API; it never hashes, versions or locks anything itself.
"""

# Each name's module is imported when the name is first used, so that a notebook's
# `from terrarium.core import Environment` does not also import runs and deployments.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .conda_dependencies import CondaDependencies
    from .deployment import Deployment, deploy
    from .environment import (
        ContainerRegistry,
        DockerImageDetails,
        DockerImagePlatform,
        DockerSection,
        Environment,
        ImageBuildDetails,
        PythonSection,
        SparkPackage,
        SparkSection,
    )
    from .errors import ConflictError, DefinitionError, NotFoundError, TerrariumError
    from .run import Experiment, Run, RunConfiguration, RunFailedError, ScriptRunConfig
    from .workspace import Workspace

_MODULES = {
    "CondaDependencies": ".conda_dependencies",
    "Deployment": ".deployment",
    "deploy": ".deployment",
    "ContainerRegistry": ".environment",
    "DockerImageDetails": ".environment",
    "DockerImagePlatform": ".environment",
    "DockerSection": ".environment",
    "Environment": ".environment",
    "ImageBuildDetails": ".environment",
    "PythonSection": ".environment",
    "SparkPackage": ".environment",
    "SparkSection": ".environment",
    "ConflictError": ".errors",
    "DefinitionError": ".errors",
    "NotFoundError": ".errors",
    "TerrariumError": ".errors",
    "Experiment": ".run",
    "Run": ".run",
    "RunConfiguration": ".run",
    "RunFailedError": ".run",
    "ScriptRunConfig": ".run",
    "Workspace": ".workspace",
}


def __getattr__(name: str) -> object:
    """Import the module of a public name on its first use (PEP 562)."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # `from <module> import <name>`, without `importlib` (which imports `warnings`).
    level = len(module) - len(module.lstrip("."))
    value = getattr(__import__(module[level:], globals(), None, [name], level), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])


__version__ = "0.1.0"

__all__ = [
    "CondaDependencies",
    "ConflictError",
    "ContainerRegistry",
    "DefinitionError",
    "Deployment",
    "DockerImageDetails",
    "DockerImagePlatform",
    "DockerSection",
    "Environment",
    "Experiment",
    "ImageBuildDetails",
    "NotFoundError",
    "PythonSection",
    "Run",
    "RunConfiguration",
    "RunFailedError",
    "ScriptRunConfig",
    "SparkPackage",
    "SparkSection",
    "TerrariumError",
    "Workspace",
    "deploy",
]
