"""Azure ML v1's ``azureml.core`` names: ``from azureml.core import Environment`` becomes
``from terrarium.core import Environment``."""

from .. import __version__
from ..environment import Environment
from ..run import Experiment, Run, RunConfiguration, ScriptRunConfig
from ..workspace import Workspace

#: The SDK's version (Azure ML's ``azureml.core.VERSION``).
VERSION = __version__

__all__ = ["VERSION", "Environment", "Experiment", "Run", "RunConfiguration", "ScriptRunConfig", "Workspace"]
