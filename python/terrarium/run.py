"""Runs, shaped as Azure ML v1's ``Experiment``, ``ScriptRunConfig`` and ``Run``.

A run is ``terrarium run``: the environment version is locked once and built once, the command
runs in it, and the run (id, environment version, lock, command, exit code, log) is recorded in
the workspace. ``compute_target`` is ``local`` (this machine), ``container`` (the version's
image, run with runc) or a compute target of the workspace (a Slurm or Ray cluster, submitted
with ``--detach``).
"""

from __future__ import annotations

import codecs
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Optional, Sequence, Union

    PathLike = Union[str, os.PathLike[str]]

from ._progress import Progress
from .environment import Environment
from .errors import TerrariumError

if TYPE_CHECKING:
    from .workspace import Workspace


#: Terrarium's run states in Azure ML's words (its own words where Azure ML has none).
STATUS = {
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
    "timed_out": "TimedOut",
    "node_failed": "NodeFailed",
    "lost": "Lost",
}
_FINAL = {"completed", "failed", "cancelled", "timed_out", "node_failed", "lost"}
_BUILT_IN_TARGETS = ("local", "container")


class RunFailedError(TerrariumError):
    """A run ended other than ``completed`` (``wait_for_completion(raise_on_error=True)``)."""


class RunConfiguration:
    """Where a run goes and in which environment (Azure ML v1's
    ``azureml.core.runconfig.RunConfiguration``, its ``target`` and ``environment``)."""

    def __init__(self, target: str = "local", environment: Optional[Environment] = None) -> None:
        self.target = target
        self.environment = environment

    def __repr__(self) -> str:
        return f"RunConfiguration(target={self.target!r}, environment={self.environment!r})"


class ScriptRunConfig:
    """What to run, where, and in which environment.

    Give ``script`` (run with the environment's ``python``, followed by ``arguments``) or
    ``command`` (a list, or a string split as a shell would). ``source_directory`` is the
    working directory. ``compute_target`` is ``local``, ``container`` or the name of a compute
    target of the workspace; ``nodes``, ``cpus``, ``gpus``, ``memory`` and
    ``max_run_duration_seconds`` are what a job asks of a compute target, ``base_image`` the
    base of the image a ``container`` run builds. ``compute_target`` and ``environment`` are
    kept in ``run_config`` (a :class:`RunConfiguration`), as in Azure ML.
    """

    def __init__(
        self,
        source_directory: PathLike = ".",
        script: Optional[str] = None,
        arguments: Optional[Sequence[Any]] = None,
        run_config: Optional[RunConfiguration] = None,
        compute_target: Any = None,
        environment: Optional[Environment] = None,
        command: Optional[Union[str, Sequence[Any]]] = None,
        max_run_duration_seconds: Optional[int] = None,
        *,
        nodes: Optional[int] = None,
        cpus: Optional[int] = None,
        gpus: Optional[int] = None,
        memory: Optional[str] = None,
        base_image: Optional[str] = None,
    ) -> None:
        if script is not None and command is not None:
            raise TerrariumError("give script or command, not both")
        if script is None and command is None:
            raise TerrariumError("give script (with arguments) or command")
        self.run_config = run_config if run_config is not None else RunConfiguration()
        if compute_target is not None:
            self.compute_target = compute_target
        if environment is not None:
            self.environment = environment
        self.source_directory = str(source_directory)
        self.script = script
        self.arguments = [str(a) for a in arguments or []]
        self.command: Optional[list[str]] = None
        if command is not None:
            self.command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        self.max_run_duration_seconds = max_run_duration_seconds
        self.nodes = nodes
        self.cpus = cpus
        self.gpus = gpus
        self.memory = memory
        self.base_image = base_image

    @property
    def compute_target(self) -> str:
        """``local``, ``container`` or a compute target's name (``run_config.target``)."""
        return str(self.run_config.target or "local")

    @compute_target.setter
    def compute_target(self, value: Any) -> None:
        # A compute target object (Azure ML's ComputeTarget) is taken by its name.
        name = value if isinstance(value, str) else getattr(value, "name", value)
        self.run_config.target = str(name or "local")

    @property
    def environment(self) -> Optional[Environment]:
        """The environment (``run_config.environment``)."""
        return self.run_config.environment

    @environment.setter
    def environment(self, value: Optional[Environment]) -> None:
        self.run_config.environment = value

    def _argv(self, environment: Environment) -> list[str]:
        if self.command is not None:
            return list(self.command)
        python = "python"
        interpreter = environment.python.interpreter_path
        if environment.python.user_managed_dependencies and interpreter and interpreter != "python":
            python = interpreter
        return [python, str(self.script), *self.arguments]

    def __repr__(self) -> str:
        what = self.command if self.command is not None else [self.script, *self.arguments]
        return f"ScriptRunConfig({what!r}, compute_target={self.compute_target!r})"


class Experiment:
    """A named group of runs in a workspace."""

    def __init__(self, workspace: "Workspace", name: str) -> None:
        self.workspace = workspace
        self.name = name

    def submit(self, config: ScriptRunConfig, tags: Optional[dict[str, str]] = None) -> "Run":
        """Start the run; an environment without a version is registered first.

        On ``local`` the environment is built first (with progress), and the call returns once
        the run has started; on a compute target, once the job is submitted."""
        del tags
        if config.environment is None:
            raise TerrariumError(
                "the run needs an environment", hint="ScriptRunConfig(..., environment=env)"
            )
        env = config.environment._registered(self.workspace)
        reference = f"{env.name}:{env.version}"
        argv = config._argv(env)
        args = ["run", "--env", reference, "--experiment", self.name, "--target", config.compute_target]
        if config.compute_target == "container" and config.base_image:
            args += ["--base", config.base_image]
        cwd = str(Path(config.source_directory).absolute())
        if config.compute_target not in _BUILT_IN_TARGETS:
            for flag, value in (
                ("--nodes", config.nodes),
                ("--cpus", config.cpus),
                ("--gpus", config.gpus),
                ("--memory", config.memory),
            ):
                if value is not None:
                    args += [flag, str(value)]
            if config.max_run_duration_seconds:
                args += ["--time", f"{max(1, -(-config.max_run_duration_seconds // 60))}m"]
            with Progress(f"submitting to {config.compute_target}") as progress:
                stdout = self.workspace._cli.run(
                    [*args, "--detach", "--", *argv],
                    cwd=cwd,
                    on_status=progress.update if progress.active else None,
                )
            run_id = stdout.strip().splitlines()[-1]
            return Run(self, run_id)
        if config.compute_target == "local":
            env.build_local(self.workspace)
        return Run._start(self, [*args, "--", *argv], cwd)

    def get_runs(self) -> list["Run"]:
        """The experiment's runs, newest first."""
        records = self.workspace._backend.list_runs(self.name, 1000)
        return [Run(self, record["id"], record=record) for record in records]

    def __repr__(self) -> str:
        return f"Experiment({self.name!r})"


class Run:
    """One recorded run; ``id`` is its id in the workspace."""

    def __init__(self, experiment: Experiment, run_id: str, *, record: Optional[dict[str, Any]] = None) -> None:
        self.experiment = experiment
        self.id = run_id
        self._record = record
        self._process: Optional["subprocess.Popen[bytes]"] = None
        self._output: Optional[Path] = None
        self._shown = 0
        self._log_shown = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @staticmethod
    def get(workspace: "Workspace", run_id: str) -> "Run":
        """A recorded run by id."""
        record = workspace._backend.get_run(run_id)
        return Run(Experiment(workspace, record.get("experiment", "default")), run_id, record=record)

    @property
    def workspace(self) -> "Workspace":
        """The run's workspace."""
        return self.experiment.workspace

    @classmethod
    def _start(cls, experiment: Experiment, args: list[str], cwd: str) -> "Run":
        """Start ``terrarium run`` in the background and wait until the run is recorded: it
        writes the run's id to ``--id-file`` then, before the command starts."""
        cli = experiment.workspace._cli
        scratch = Path(tempfile.mkdtemp(prefix="terrarium-run-"))
        output = scratch / "output.log"
        id_file = scratch / "run-id"
        run_args = [args[0], "--id-file", str(id_file), *args[1:]]
        with open(output, "wb") as sink:
            try:
                process = subprocess.Popen(
                    cli.command(run_args),
                    cwd=cwd,
                    env=cli.environ(),
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    # Its own session: an interrupt of this kernel or script leaves the run going.
                    start_new_session=True,
                )
            except OSError as err:
                shutil.rmtree(scratch, ignore_errors=True)
                raise TerrariumError(f"cannot run {cli.binary}: {err}", user_error=False) from None
        with Progress("starting the run") as progress:
            while True:
                # Written whole (renamed into place) by `terrarium run`.
                run_id = id_file.read_text().strip() if id_file.exists() else ""
                if run_id:
                    run = cls(experiment, run_id)
                    run._process = process
                    run._output = output
                    return run
                code = process.poll()
                if code is not None and not id_file.exists():
                    from ._cli import error_from_output

                    text = output.read_bytes().decode("utf-8", errors="replace")
                    shutil.rmtree(scratch, ignore_errors=True)
                    raise error_from_output(code, text, "run")
                lines = output.read_bytes().decode("utf-8", errors="replace").strip().splitlines()
                if lines:
                    progress.update(lines[-1])
                time.sleep(0.05)

    def _refresh(self) -> dict[str, Any]:
        self._record = self.workspace._backend.get_run(self.id)
        return self._record

    def get_status(self) -> str:
        """``Queued``, ``Running``, ``Completed``, ``Failed``, ``Canceled``, ``TimedOut``,
        ``NodeFailed`` or ``Lost``."""
        state = str(self._refresh().get("state", "running"))
        return STATUS.get(state, state)

    def get_details(self) -> dict[str, Any]:
        """The run's details, in Azure ML's keys (``runId``, ``status``, ``startTimeUtc``, ...)
        and Terrarium's (``environment``, ``lockHash``, ``exitCode``, ``job``)."""
        record = self._refresh()
        state = str(record.get("state", "running"))
        details: dict[str, Any] = {
            "runId": record.get("id", self.id),
            "experiment": record.get("experiment"),
            "target": record.get("target"),
            "status": STATUS.get(state, state),
            "startTimeUtc": record.get("started_at"),
            "endTimeUtc": record.get("finished_at"),
            "exitCode": record.get("exit_code"),
            "environment": {"name": record.get("environment"), "version": record.get("version")},
            "lockHash": record.get("lock_hash"),
            "command": record.get("command"),
            "workingDirectory": record.get("cwd"),
            "submittedBy": record.get("actor"),
        }
        if record.get("job"):
            details["job"] = record["job"]
        return details

    def get_environment(self) -> Environment:
        """The environment version the run used."""
        record = self._record or self._refresh()
        return Environment.get(self.workspace, record["environment"], version=record["version"])

    def get_logs(self) -> str:
        """The run's output (stdout and stderr, secrets masked), as saved in the workspace."""
        record = self._record or self._refresh()
        if record.get("job"):
            return self.workspace._cli.run(["runs", "logs", self.id])
        return self.workspace._backend.run_log(self.id)

    def wait_for_completion(
        self,
        show_output: bool = False,
        wait_post_processing: bool = False,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:
        """Wait until the run ends; return its details. ``show_output`` prints its output as
        it comes; ``raise_on_error`` raises :class:`RunFailedError` unless it completed."""
        del wait_post_processing
        if show_output:
            self._wait(sys.stdout)
        else:
            with Progress(f"run {self.id}") as progress:
                self._wait(None, progress)
        details = self.get_details()
        if raise_on_error and details["status"] != "Completed":
            code = details.get("exitCode")
            raise RunFailedError(
                f"run {self.id} ended {details['status'].lower()}"
                + (f" with exit code {code}" if code is not None else ""),
                code="run_failed",
                hint="run.get_logs() shows its output",
            )
        return details

    def _wait(self, out: Optional[IO[str]], progress: Optional[Progress] = None) -> None:
        delay = 0.05
        while True:
            if self._process is not None:
                done = self._process.poll() is not None
                self._show(out)
                if done:
                    self._process = None
                    if self._output is not None:
                        shutil.rmtree(self._output.parent, ignore_errors=True)
                        self._output = None
                    return
            else:
                state = str(self._refresh().get("state", "running"))
                if out is not None:
                    self._show_log(out)
                if state in _FINAL:
                    return
                if progress is not None:
                    progress.update(STATUS.get(state, state))
                delay = min(delay * 1.5, 2.0)
            time.sleep(delay)

    def _show(self, out: Optional[IO[str]]) -> None:
        """Print what the local run wrote since last time."""
        if out is None or self._output is None:
            return
        with open(self._output, "rb") as file:
            file.seek(self._shown)
            data = file.read()
        if data:
            self._shown += len(data)
            out.write(self._decoder.decode(data))
            out.flush()

    def _show_log(self, out: IO[str]) -> None:
        """Print what a run recorded elsewhere (a job) wrote since last time."""
        try:
            text = self.get_logs()
        except TerrariumError:
            return
        if len(text) > self._log_shown:
            out.write(text[self._log_shown:])
            out.flush()
            self._log_shown = len(text)

    def cancel(self) -> None:
        """Stop the run (``terrarium runs cancel``): a job through its engine, a run on this
        machine by stopping its program; it is recorded as ``Canceled``. Returns once the run
        has ended."""
        record = self._record or self._refresh()
        if str(record.get("state")) in _FINAL:
            return
        self.workspace._cli.run(["runs", "cancel", self.id])
        if self._process is not None:
            self._process.wait()

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, experiment={self.experiment.name!r})"

