"""Runs submitted through an Experiment: built, run, recorded with their logs, on every kind of
workspace."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import pip_env
from terrarium import (
    Environment,
    Experiment,
    NotFoundError,
    Run,
    RunFailedError,
    ScriptRunConfig,
    TerrariumError,
    Workspace,
)


def user_managed(name: str = "mine") -> Environment:
    """This interpreter, as it is: nothing to resolve or build."""
    env = Environment(name)
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    return env


def test_a_local_run_completes_and_its_logs_are_read(
    workspace: Workspace, tmp_path: Path, uv: str, wheelhouse: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        "import sys, tinyapp, tinydep\n"
        "print('training with', tinyapp.NAME, tinyapp.__version__, 'and tinydep', tinydep.__version__)\n"
        "print('arguments', sys.argv[1:])\n"
        "open('model.txt', 'w').write('weights')\n"
    )
    env = pip_env("tiny", wheelhouse)
    assert env.version is None
    experiment = Experiment(workspace, "training")
    config = ScriptRunConfig(
        source_directory=str(source),
        script="train.py",
        arguments=["--alpha", 0.5],
        compute_target="local",
        environment=env,
    )
    run = experiment.submit(config)
    details = run.wait_for_completion()
    assert details["status"] == "Completed"
    assert details["exitCode"] == 0
    assert run.get_status() == "Completed"
    assert details["environment"] == {"name": "tiny", "version": "1"}, "registered on submit"
    assert details["lockHash"]
    assert (source / "model.txt").read_text() == "weights", "it ran in source_directory"
    logs = run.get_logs()
    assert "training with tinyapp 1.0 and tinydep 1.2" in logs
    assert "arguments ['--alpha', '0.5']" in logs
    used = run.get_environment()
    assert (used.name, used.version) == ("tiny", "1")
    assert used.lock_hash == details["lockHash"]

    # The same environment again: the same version, no new build.
    again = experiment.submit(config)
    assert again.wait_for_completion()["environment"]["version"] == "1"
    assert {r.id for r in experiment.get_runs()} == {run.id, again.id}
    assert Run.get(workspace, run.id).get_status() == "Completed"


def test_failures_and_output(workspace: Workspace, tmp_path: Path, capsys: Any) -> None:
    experiment = Experiment(workspace, "checks")
    env = user_managed()
    ok = experiment.submit(
        ScriptRunConfig(
            source_directory=str(tmp_path),
            command=[sys.executable, "-c", "print('hello from the run')"],
            environment=env,
        )
    )
    ok.wait_for_completion(show_output=True)
    assert "hello from the run" in capsys.readouterr().out

    # The program knows its run: TERRARIUM_RUN_ID.
    knows = experiment.submit(
        ScriptRunConfig(
            source_directory=str(tmp_path),
            command=[sys.executable, "-c", "import os; print('run id', os.environ['TERRARIUM_RUN_ID'])"],
            environment=env,
        )
    )
    knows.wait_for_completion()
    assert f"run id {knows.id}" in knows.get_logs()
    # A user-managed environment has nothing to build, and says so.
    built = env.build_local(workspace)
    assert built["user_managed"] is True and built["prefix"] is None and built["built"] is False
    assert built["interpreter"] == sys.executable

    failing = experiment.submit(
        ScriptRunConfig(
            source_directory=str(tmp_path),
            command="python3 -c 'import sys; print(\"bad input\"); sys.exit(3)'",
            environment=env,
        )
    )
    with pytest.raises(RunFailedError) as caught:
        failing.wait_for_completion()
    assert "exit code 3" in str(caught.value)
    assert failing.get_status() == "Failed"
    assert failing.wait_for_completion(raise_on_error=False)["exitCode"] == 3
    assert "bad input" in failing.get_logs()

    with pytest.raises(NotFoundError):
        Run.get(workspace, "20000101T000000-000000").get_status()
    with pytest.raises(TerrariumError) as refused:
        experiment.submit(
            ScriptRunConfig(
                source_directory=str(tmp_path),
                command=["true"],
                compute_target="no-such-cluster",
                environment=env,
            )
        )
    assert "no-such-cluster" in str(refused.value)


def test_cancel_a_local_run(workspace: Workspace, tmp_path: Path) -> None:
    experiment = Experiment(workspace, "long")
    run = experiment.submit(
        ScriptRunConfig(
            source_directory=str(tmp_path),
            command=[sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"],
            environment=user_managed(),
        )
    )
    assert run.get_status() == "Running"
    deadline = time.monotonic() + 60
    while "started" not in (run._output.read_text() if run._output else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.cancel()
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled", details
    assert run.get_status() == "Canceled"


def test_build_an_image_and_read_its_details(
    workspace: Workspace, uv: str, wheelhouse: Path
) -> None:
    from conftest import needed

    base = needed("TERRARIUM_TEST_BASE_IMAGE", "images of pip-only environments need a base image")
    env = pip_env("imaged", wheelhouse)
    built = env.build(workspace, base=base)
    assert built.status == "Succeeded"
    assert str(built["digest"]).startswith("sha256:")
    assert [layer["holds"] for layer in built["layers"]][:2] == ["tinyapp (pypi) 1.0", "tinydep (pypi) 1.2"]
    registered = Environment.get(workspace, "imaged")
    details = registered.get_image_details(workspace)
    assert details.image_exist
    assert details["digest"] == built["digest"]
    assert details.image == built["output"]
    # Built already: the same image, at once.
    assert env.build(workspace, base=base)["digest"] == built["digest"]


def test_a_changed_environment_is_registered_before_it_runs(
    workspace: Workspace, tmp_path: Path
) -> None:
    from terrarium import ConflictError

    user_managed("mine").register(workspace)
    got = Environment.get(workspace, "mine")
    experiment = Experiment(workspace, "changes")
    config = ScriptRunConfig(
        source_directory=str(tmp_path),
        command=[sys.executable, "-c", "import os; print('mode', os.environ['MODE'])"],
        environment=got,
    )
    # Unchanged, it runs as the version it is; changed, it would be another version.
    got.environment_variables = {"MODE": "first"}
    with pytest.raises(ConflictError):
        experiment.submit(config)
    got.version = None
    run = experiment.submit(config)
    assert run.wait_for_completion()["environment"] == {"name": "mine", "version": "2"}
    assert "mode first" in run.get_logs()
    second = Environment.get(workspace, "mine", version="2")
    config.environment = second
    assert experiment.submit(config).wait_for_completion()["environment"]["version"] == "2"
