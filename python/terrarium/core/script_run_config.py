"""Azure ML v1's ``azureml.core.script_run_config`` names."""

from ..run import ScriptRunConfig

__all__ = ["ScriptRunConfig"]
