"""Azure ML v1's ``azureml.core.run`` names."""

from ..run import Run

__all__ = ["Run"]
