"""Azure ML v1's ``azureml.core.experiment`` names."""

from ..run import Experiment

__all__ = ["Experiment"]
