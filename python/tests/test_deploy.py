"""A model served by an Azure ML entry script in a registered environment."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from conftest import pip_env
from terrarium import Deployment, TerrariumError, Workspace, deploy

SCORE = """\
import json, os

def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as f:
        model = f.read()

def run(raw_data):
    data = json.loads(raw_data)["data"]
    if data == "boom":
        raise ValueError("boom")
    import tinydep
    return {"model": model, "sum": sum(data), "tinydep": tinydep.__version__}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_deploy_score_and_delete(
    workspace: Workspace, tmp_path: Path, uv: str, wheelhouse: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.txt").write_text("weights-v1")
    entry = tmp_path / "score.py"
    entry.write_text(SCORE)
    env = pip_env("serving", wheelhouse)
    deployment = deploy(workspace, "tiny-service", env, model, entry, workers=1, port=free_port())
    try:
        assert deployment.state == "ready"
        assert deployment.scoring_uri and deployment.scoring_uri.endswith("/score")
        assert deployment.run({"data": [1, 2, 3]}) == {
            "model": "weights-v1",
            "sum": 6,
            "tinydep": "1.2",
        }
        assert deployment.run('{"data": [4]}')["sum"] == 4
        with pytest.raises(TerrariumError) as caught:
            deployment.run({"data": "boom"})
        assert caught.value.code == "http_500"
        # The worker's traceback reaches the log as it is written: poll with a deadline.
        deadline = time.monotonic() + 30
        while "ValueError: boom" not in deployment.get_logs():
            assert time.monotonic() < deadline, deployment.get_logs()
            time.sleep(0.1)
        assert Deployment(workspace, "tiny-service").state == "ready"
    finally:
        deployment.delete()
    assert deployment.state == "stopped"
