"""Azure ML v1's ``azureml.core.runconfig`` names."""

from ..run import RunConfiguration

__all__ = ["RunConfiguration"]
