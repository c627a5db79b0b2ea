"""Azure ML v1's ``azureml.core.environment`` names."""

from ..conda_dependencies import CondaDependencies
from ..environment import (
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

__all__ = [
    "CondaDependencies",
    "ContainerRegistry",
    "DockerImageDetails",
    "DockerImagePlatform",
    "DockerSection",
    "Environment",
    "ImageBuildDetails",
    "PythonSection",
    "SparkPackage",
    "SparkSection",
]
