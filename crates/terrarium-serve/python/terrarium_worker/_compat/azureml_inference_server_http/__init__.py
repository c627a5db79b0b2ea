"""Terrarium's stand-in for the parts of azureml-inference-server-http that entry scripts import.
Used only when the environment does not have the real package."""
