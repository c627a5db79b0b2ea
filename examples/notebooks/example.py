"""The training script the environments notebook runs: it reads the environment's variable and
imports a package the environment installs."""

import os

import requests

print(os.environ.get("MESSAGE"), "(requests", requests.__version__ + ")")
