"""Azure ML v1's ``azureml.core.container_registry`` names."""

from ..environment import ContainerRegistry

__all__ = ["ContainerRegistry"]
