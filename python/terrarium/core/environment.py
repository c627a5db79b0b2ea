"""Azure ML v1's ``azureml.core.environment`` names."""

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
