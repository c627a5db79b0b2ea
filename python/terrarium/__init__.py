"""Terrarium's Python SDK: reproducible, versioned environments for machine-learning work, with
Azure ML v1's shape (``azureml.core``), so that notebooks port by changing their imports::

    from terrarium.core import Environment, Experiment, ScriptRunConfig, Workspace
    from terrarium.core.conda_dependencies import CondaDependencies

The SDK drives the ``terrarium`` binary (shipped in the wheel, else ``$TERRARIUM_BIN``, else on
``PATH``) and a team server's REST API; it never hashes, versions or locks anything itself.
"""

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
