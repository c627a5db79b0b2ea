"""Deployments: a model served as a web service in an environment version, running Azure ML
entry scripts unchanged (``init()`` once, ``run(raw_data)`` per request).

``deploy`` starts ``terrarium deploy --detach`` on this machine and returns once every worker
is ready; the deployment is recorded in the workspace with its environment version and model
hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    PathLike = Union[str, os.PathLike[str]]

from ._progress import Progress
from .environment import Environment
from .errors import TerrariumError

if TYPE_CHECKING:
    from .workspace import Workspace



class Deployment:
    """A deployment by name in a workspace."""

    def __init__(self, workspace: "Workspace", name: str) -> None:
        self.workspace = workspace
        self.name = name
        self._record: Optional[dict[str, Any]] = None

    def _refresh(self) -> dict[str, Any]:
        self._record = self.workspace._backend.get_deployment(self.name)
        return self._record

    @property
    def state(self) -> str:
        """``starting``, ``ready``, ``failed`` or ``stopped``."""
        return str(self._refresh().get("state"))

    @property
    def scoring_uri(self) -> Optional[str]:
        """Where ``run()`` posts: the service's ``/score``."""
        url = (self._record or self._refresh()).get("url")
        return f"{str(url).rstrip('/')}/score" if url else None

    @property
    def url(self) -> Optional[str]:
        """Where the service listens (``http://host:port``)."""
        url = (self._record or self._refresh()).get("url")
        return str(url) if url else None

    def run(self, input_data: Any, timeout: float = 60.0) -> Any:
        """Score ``input_data`` (a JSON text, bytes, or data to encode as JSON); return the
        answer, decoded from JSON when it is JSON."""
        uri = self.scoring_uri
        if uri is None:
            raise TerrariumError(f"deployment {self.name} has no address", hint="is it running?")
        if isinstance(input_data, bytes):
            body = input_data
        elif isinstance(input_data, str):
            body = input_data.encode()
        else:
            body = json.dumps(input_data).encode()
        # Imported here: urllib.request (http.client, email, ssl) would cost every import of
        # the SDK tens of milliseconds, and only scoring needs it.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            uri, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", errors="replace")
            raise TerrariumError(
                f"deployment {self.name} answered {err.code}: {text.strip()[:500]}",
                code=f"http_{err.code}",
                user_error=err.code < 500,
                hint=f"deployment.get_logs() shows its log",
            ) from None
        except (urllib.error.URLError, OSError) as err:
            raise TerrariumError(
                f"cannot reach deployment {self.name} at {uri}: {getattr(err, 'reason', err)}",
                user_error=False,
            ) from None
        text = answer.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def get_logs(self) -> str:
        """The deployment's log (its workers' output and errors)."""
        return self.workspace._cli.run(["deployments", "logs", self.name])

    def delete(self) -> None:
        """Stop serving (the requests in flight finish first)."""
        self.workspace._cli.run(["deployments", "stop", self.name])
        self._record = None

    def __repr__(self) -> str:
        return f"Deployment({self.name!r})"


def deploy(
    workspace: "Workspace",
    name: str,
    environment: Union[Environment, str],
    model_dir: PathLike,
    entry_script: PathLike,
    workers: int = 1,
    port: Optional[int] = None,
) -> Deployment:
    """Serve ``entry_script`` with the model in ``model_dir`` (``AZUREML_MODEL_DIR``) in the
    environment (an :class:`~terrarium.Environment`, registered first when it has no version,
    or a reference ``NAME[:VERSION|@LABEL]``); returns once every worker is ready.
    ``port`` defaults to the definition's scoring port, else 5001."""
    if isinstance(environment, Environment):
        env = environment._registered(workspace)
        reference = f"{env.name}:{env.version}"
    else:
        reference = environment
    args = [
        "deploy",
        name,
        "--env",
        reference,
        "--model",
        str(Path(model_dir).absolute()),
        "--entry",
        str(Path(entry_script).absolute()),
        "--workers",
        str(workers),
        "--detach",
    ]
    if port is not None:
        args += ["--port", str(port)]
    with Progress(f"deploying {name}") as progress:
        workspace._cli.run(args, on_status=progress.update if progress.active else None)
    deployment = Deployment(workspace, name)
    deployment._refresh()
    return deployment
