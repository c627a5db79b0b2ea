"""Azure ML v1's ``azureml.core`` names: ``from azureml.core import Environment`` becomes
``from terrarium.core import Environment``."""

from ..environment import Environment
from ..run import Experiment, Run, ScriptRunConfig
from ..workspace import Workspace

__all__ = ["Environment", "Experiment", "Run", "ScriptRunConfig", "Workspace"]
