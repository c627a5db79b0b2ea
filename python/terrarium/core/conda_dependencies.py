"""Azure ML v1's ``azureml.core.conda_dependencies`` names."""

from ..conda_dependencies import CondaDependencies

__all__ = ["CondaDependencies"]
