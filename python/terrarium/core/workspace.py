"""Azure ML v1's ``azureml.core.workspace`` names."""

from ..workspace import Workspace

__all__ = ["Workspace"]
