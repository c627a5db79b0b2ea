"""``Workspace``: where environments, runs and deployments are recorded. One API over three
backends:

- a workspace directory (SQLite) and a PostgreSQL URL, through the CLI's ``--json`` interface;
- a team server (``http(s)://``), through its REST API with a bearer token, and through the CLI
  pointed at the server (the same API, the same token) where the API has no such operation
  (registering a definition file, building, running, deploying: work done on this machine, or
  reading a definition, which is Terrarium's job) or where one CLI run is cheaper (reading a
  version with its Azure ML form). Errors are the same either way.

Hashing, versioning, locking and workspace storage are never done here: the CLI and the server
do them, so all three faces of Terrarium agree.
"""

from __future__ import annotations

import os
import sys
# `typing` and `pathlib` are for the type checker only (functions off the first cell's path
# import `pathlib` themselves): importing them costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Optional, Union

    PathLike = Union[str, os.PathLike[str]]

from . import _fastjson
from ._cli import Cli
from ._rest import RestClient, segment
from .conda_dependencies import DEFAULT_NAME, conda_document
from .environment import (
    DEFINITION_FILE,
    DOCKERFILE_FILE,
    Environment,
    scratch_directory,
    write_definition,
)
from .errors import DefinitionError, NotFoundError, TerrariumError


#: Environment variables the SDK reads, as the CLI does (crates/terrarium/src/env_vars.rs).
TERRARIUM_WORKSPACE = "TERRARIUM_WORKSPACE"
TERRARIUM_TOKEN = "TERRARIUM_TOKEN"
TERRARIUM_CONFIG = "TERRARIUM_CONFIG"

_FINAL_STATES = {"completed", "failed", "cancelled", "timed_out", "node_failed", "lost"}


def is_server_url(text: str) -> bool:
    """Whether a workspace setting names a team server (the CLI's rule)."""
    return text.startswith("http://") or text.startswith("https://")


def is_database_url(text: str) -> bool:
    """Whether a workspace setting names a PostgreSQL database."""
    return text.startswith("postgres://") or text.startswith("postgresql://")


def _redact(url: str) -> str:
    """A URL without its password, for messages and ``repr``."""
    import re

    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class Workspace:
    """A Terrarium workspace: a directory, a PostgreSQL URL or a team server URL.

    ``Workspace(path)`` opens (and creates) a workspace directory; URLs are accepted too.
    ``Workspace.connect(url, token=None)`` opens a team server or a PostgreSQL database, and
    ``Workspace.from_config()`` the workspace the CLI would use.
    """

    def __init__(
        self,
        path: Optional[PathLike] = None,
        *,
        token: Optional[str] = None,
        _config: Optional[str] = None,
    ) -> None:
        location = None if path is None else os.fspath(path)
        if token is None and location is not None and is_server_url(location):
            token = os.environ.get(TERRARIUM_TOKEN) or _read_config(_config_path())[1]
        extra_env = {TERRARIUM_CONFIG: str(_config)} if _config is not None else {}
        if location is not None and not (is_server_url(location) or is_database_url(location)):
            location = os.path.abspath(os.path.expanduser(location))
        self._location = location
        if location is not None and is_server_url(location):
            self._cli = Cli(location, token, extra_env=extra_env)
            self._backend: _Backend = _ServerBackend(self._cli, RestClient(location, token))
        else:
            self._cli = Cli(location, token, extra_env=extra_env)
            self._backend = _CliBackend(self._cli)

    @classmethod
    def connect(cls, url: str, token: Optional[str] = None) -> "Workspace":
        """A team server (``https://host:port``, with an API token; default
        ``$TERRARIUM_TOKEN``) or a PostgreSQL database (``postgres://user@host/db``)."""
        if not (is_server_url(url) or is_database_url(url)):
            raise TerrariumError(
                f"`{_redact(url)}` is not a server or database URL",
                hint="give https://HOST:PORT or postgres://USER@HOST/DB; Workspace(path) opens a directory",
            )
        return cls(url, token=token)

    @classmethod
    def from_config(cls, path: Optional[PathLike] = None) -> "Workspace":
        """The workspace the CLI would use: ``$TERRARIUM_WORKSPACE``, else the config file's
        ``workspace`` (``$TERRARIUM_CONFIG``, default ``~/.config/terrarium/config.toml``),
        else the CLI's default (``$TERRARIUM_HOME``, else the platform's data directory); the
        token from ``$TERRARIUM_TOKEN``, else the config file's ``token``.

        ``path`` names the config file to read instead; its settings then come before the
        environment variables."""
        if path is not None:
            config = os.path.expanduser(os.fspath(path))
            if not os.path.isfile(config):
                raise NotFoundError(
                    f"config file {config} not found",
                    code="not_found",
                    hint="it holds `workspace = \"...\"` and `token = \"...\"`",
                )
            workspace, token = _read_config(config)
            workspace = workspace or os.environ.get(TERRARIUM_WORKSPACE) or None
            token = token or os.environ.get(TERRARIUM_TOKEN) or None
            return cls(workspace, token=token, _config=os.path.abspath(config))
        config = _config_path()
        file_workspace, file_token = _read_config(config)
        workspace = os.environ.get(TERRARIUM_WORKSPACE) or file_workspace or None
        token = os.environ.get(TERRARIUM_TOKEN) or file_token or None
        return cls(workspace, token=token)

    @property
    def name(self) -> str:
        """The workspace's location (a directory or URL, passwords hidden), or ``default``."""
        return _redact(self._location) if self._location is not None else "default"

    @property
    def kind(self) -> str:
        """``directory``, ``postgres`` or ``server``."""
        location = self._location or ""
        if is_server_url(location):
            return "server"
        if is_database_url(location):
            return "postgres"
        return "directory"

    @property
    def environments(self) -> dict[str, Environment]:
        """The latest version of every environment, by name (``Environment.list(self)``)."""
        return Environment.list(self)

    def get_details(self) -> dict[str, Any]:
        """A summary: the workspace's name and kind."""
        return {"name": self.name, "kind": self.kind}

    def __repr__(self) -> str:
        return f"Workspace({self.name!r})"


def _config_path() -> str:
    """The CLI's config file (a string path: `pathlib` costs a notebook's first cell)."""
    explicit = os.environ.get(TERRARIUM_CONFIG)
    if explicit:
        return explicit
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    if sys.platform == "darwin" and not os.environ.get("XDG_CONFIG_HOME"):
        base = os.path.join(home, "Library", "Application Support")
    return os.path.join(base, "terrarium", "config.toml")


def _read_config(path: str) -> tuple[Optional[str], Optional[str]]:
    """``workspace`` and ``token`` of a config file (absent file: neither)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return None, None
    except OSError as err:
        raise TerrariumError(f"cannot read {path}: {err}", user_error=False) from None
    values = _parse_config(text, path)
    unknown = sorted(set(values) - {"workspace", "token"})
    if unknown:
        raise DefinitionError(
            f"{path}: unknown key `{unknown[0]}` (the config file holds `workspace` and `token`)",
            file=str(path),
            field=unknown[0],
        )
    workspace, token = values.get("workspace"), values.get("token")
    return (str(workspace) if workspace else None, str(token) if token else None)


def _parse_config(text: str, path: str) -> dict[str, Any]:
    # The file as the CLI writes it (`key = "string"` lines) is read without `tomllib`, which
    # with `typing` costs a notebook's first cell about 6 ms, or `re`; anything else goes to
    # `tomllib`.
    plain = _plain_lines(text)
    if plain is not None:
        return plain
    if sys.version_info < (3, 11):
        # All the config file can hold, without a TOML parser.
        simple, bad = _simple_lines(text)
        if simple is None:
            raise DefinitionError(f"{path}:{bad}: invalid config line", file=str(path), line=bad)
        return simple
    import tomllib

    try:
        return dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise DefinitionError(
            f"{path}: invalid config file: {err}", file=str(path), line=getattr(err, "lineno", None)
        ) from None


_KEY_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
#: The escapes of a basic string that TOML reads as JSON does.
_ESCAPES = {'"': '"', "\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _plain_lines(text: str) -> Optional[dict[str, str]]:
    """The values of a config file made only of comments, blank lines and ``key = "string"``
    (or ``'string'``) lines with distinct bare keys, strings without control characters and with
    only the escapes ``\\"``, ``\\\\``, ``\\b``, ``\\f``, ``\\n``, ``\\r`` and ``\\t``, and
    an optional comment after them: what TOML reads, read as TOML reads it. Anything else, or
    anything TOML would refuse: None (for ``tomllib`` to read, or to say what is wrong)."""
    if text.count("\r") != text.count("\r\n"):
        return None  # TOML's line ends are LF and CRLF
    values: dict[str, str] = {}
    for raw in text.split("\n"):
        line = (raw[:-1] if raw.endswith("\r") else raw).strip(" \t")
        if not line:
            continue
        if line[0] == "#":
            if not _plain_comment(line):
                return None
            continue
        end = 0
        while end < len(line) and line[end] in _KEY_CHARACTERS:
            end += 1
        key = line[:end]
        rest = line[end:].lstrip(" \t")
        if not key or key in values or not rest.startswith("="):
            return None
        rest = rest[1:].lstrip(" \t")
        quote = rest[:1]
        if quote not in ('"', "'"):
            return None
        value: list[str] = []
        i = 1
        while i < len(rest) and rest[i] != quote:
            c = rest[i]
            if c < " " or c == "\x7f":
                return None
            if c == "\\" and quote == '"':
                escaped = _ESCAPES.get(rest[i + 1 : i + 2])
                if escaped is None:
                    return None
                value.append(escaped)
                i += 2
                continue
            value.append(c)
            i += 1
        if i >= len(rest):
            return None  # no closing quote
        after = rest[i + 1 :].lstrip(" \t")
        if after and not (after[0] == "#" and _plain_comment(after)):
            return None
        values[key] = "".join(value)
    return values


def _plain_comment(comment: str) -> bool:
    """Whether a comment has no control character but tabs (TOML refuses the others)."""
    return all(c >= " " or c == "\t" for c in comment) and "\x7f" not in comment


#: A ``key = "string"`` line with any escape, read as JSON reads it (Python < 3.11, which has
#: no TOML parser).
_SIMPLE_LINE = r"""^([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*')\s*(?:#.*)?$"""


def _simple_lines(text: str) -> tuple[Optional[dict[str, Any]], int]:
    """The values of a file made only of comments, blank lines and ``_SIMPLE_LINE`` lines;
    else None and the number of the first line that is not so."""
    import re

    values: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(_SIMPLE_LINE, line)
        if not match:
            return None, number
        value = match.group(2)
        values[match.group(1)] = _fastjson.loads(value) if value.startswith('"') else value[1:-1]
    return values, 0


class _Backend:
    """What the SDK asks of a workspace. The CLI does the work for every backend; a team
    server answers reads through its API."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    # environments

    def register(self, env: Environment) -> dict[str, Any]:
        """Register ``env`` (written as an Azure ML v1 directory) with ``terrarium env
        create``; return the version's record."""
        with scratch_directory() as scratch:
            directory = os.path.join(scratch, "definition")
            os.mkdir(directory)
            write_definition(env, directory)

            def rewrite(text: str) -> str:
                # Messages name the files as the SDK wrote them, not the scratch folder.
                return text.replace(directory + os.sep, "").replace(directory, env.name)

            # With its Azure ML v1 form (`--export`), so that making the object takes no
            # second run of the CLI.
            record: dict[str, Any] = self.cli.json(
                [
                    "env", "create", "-f", directory, "--format", "aml-v1", "--no-lock",
                    "--json", "--export", "aml-v1",
                ],
                rewrite=rewrite,
            )
        return record

    def environment(self, record: dict[str, Any]) -> Environment:
        """The object for a version's record: its Azure ML v1 form, as Terrarium exports it
        (the record's ``export``, when the CLI added it, else asked for)."""
        record = dict(record)
        export = record.pop("export", None)
        if isinstance(export, dict) and export.get("format") == "aml-v1":
            data, dockerfile = aml_files(export, record["name"], record["version"])
        else:
            data, dockerfile = self.aml_export(record["name"], record["version"])
        document = conda_document(record.get("definition") or {}, name=DEFAULT_NAME)
        env = Environment._from_aml_dict(data, document, DEFINITION_FILE)
        if dockerfile is not None:
            env.docker._base_dockerfile = dockerfile
        env.name = record["name"]
        env.version = record["version"]
        env._record = record
        env._snapshot = env._files()
        return env

    def resolve(self, name: str, version: Optional[str], label: Optional[str]) -> dict[str, Any]:
        """The record of a version (latest, ``version`` or ``label``), through the CLI: with its
        Azure ML v1 form, which ``environment`` needs, so that it takes no second run."""
        record: dict[str, Any] = self.cli.json(
            ["env", "show", _reference(name, version, label), "--json", "--export", "aml-v1"]
        )
        return record

    def list_latest(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def aml_export(self, name: str, version: str) -> tuple[dict[str, Any], Optional[str]]:
        """The version's Azure ML v1 form, as Terrarium exports it: the JSON, and the
        Dockerfile when there is one."""
        raise NotImplementedError

    def set_label(self, name: str, version: str, label: str) -> None:
        raise NotImplementedError

    def image_builds(self, name: str, version: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    # runs

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's record, brought up to date (a job's state asked of its engine)."""
        record: dict[str, Any] = self.cli.json(["runs", "show", run_id, "--json"])
        return record

    def run_log(self, run_id: str) -> str:
        """The run's saved output."""
        return self.cli.run(["runs", "logs", run_id])

    def list_runs(self, experiment: Optional[str], limit: int) -> list[dict[str, Any]]:
        """Runs, newest first, up to date."""
        args = ["runs", "list", "--limit", str(limit), "--json"]
        if experiment is not None:
            args += ["--experiment", experiment]
        runs: list[dict[str, Any]] = self.cli.json(args)
        return runs

    # deployments: processes on this machine, so the CLI, which checks the process is there

    def get_deployment(self, name: str) -> dict[str, Any]:
        """The deployment's record, reconciled with its process."""
        record: dict[str, Any] = self.cli.json(["deployments", "show", name, "--json"])
        return record


def aml_files(
    answer: dict[str, Any], name: str, version: str
) -> tuple[dict[str, Any], Optional[str]]:
    """``azureml_environment.json``'s content and the Dockerfile of an aml-v1 export as the
    server's export and the CLI's ``--export`` give it (``files``: ``path`` and ``content``)."""
    files = {str(f.get("path")): str(f.get("content")) for f in answer.get("files", [])}
    text = files.get(DEFINITION_FILE, files.get(""))
    if text is None:
        raise TerrariumError(
            f"the aml-v1 export of {name}:{version} has no azureml_environment.json",
            user_error=False,
        )
    data: dict[str, Any] = _fastjson.loads(text)
    return data, files.get(DOCKERFILE_FILE)


def _reference(name: str, version: Optional[str], label: Optional[str]) -> str:
    if version is not None:
        return f"{name}:{version}"
    if label is not None:
        return f"{name}@{label}"
    return name


class _CliBackend(_Backend):
    """A workspace directory or PostgreSQL database: everything through the CLI."""

    def list_latest(self) -> list[dict[str, Any]]:
        # With each one's Azure ML v1 form: `environment` needs it, and so the whole list
        # takes one run.
        records: list[dict[str, Any]] = self.cli.json(
            ["env", "list", "--json", "--export", "aml-v1"]
        )
        return records

    def aml_export(self, name: str, version: str) -> tuple[dict[str, Any], Optional[str]]:
        from pathlib import Path

        with scratch_directory() as scratch:
            out = Path(scratch) / "export"
            self.cli.run(["env", "export", f"{name}:{version}", "--format", "aml-v1", "-o", str(out)])
            with open(out / DEFINITION_FILE, encoding="utf-8") as file:
                data: dict[str, Any] = _fastjson.loads(file.read())
            dockerfile = out / DOCKERFILE_FILE
            text = dockerfile.read_text(encoding="utf-8") if dockerfile.is_file() else None
        return data, text

    def set_label(self, name: str, version: str, label: str) -> None:
        self.cli.run(["env", "label", f"{name}:{version}", label])

    def image_builds(self, name: str, version: str) -> list[dict[str, Any]]:
        builds: list[dict[str, Any]] = self.cli.json(["image", "list", f"{name}:{version}", "--json"])
        return builds


class _ServerBackend(_Backend):
    """A team server: reads and labels through the REST API; registering, building, running
    and deploying through the CLI pointed at the server (which speaks the same API with the
    same token). Reading a version goes through the CLI too, which gives it with its Azure ML
    form in one run: through ``urllib`` it is two requests, and a process's first request
    loads ``urllib.request`` (25 ms, most of a script's or notebook's first cell)."""

    def __init__(self, cli: Cli, rest: RestClient) -> None:
        super().__init__(cli)
        self.rest = rest

    def list_latest(self) -> list[dict[str, Any]]:
        return [
            record
            for record in self.rest.all("/environments")
            if not str(record.get("name", "")).startswith("anonymous/")
        ]

    def aml_export(self, name: str, version: str) -> tuple[dict[str, Any], Optional[str]]:
        answer = self.rest.json(
            "GET",
            f"/environments/{segment(name)}/versions/{segment(version)}/export",
            query={"format": "aml-v1"},
        )
        return aml_files(answer, name, version)

    def set_label(self, name: str, version: str, label: str) -> None:
        self.rest.request(
            "PUT",
            f"/environments/{segment(name)}/labels/{segment(label)}",
            body={"version": version},
        )

    def image_builds(self, name: str, version: str) -> list[dict[str, Any]]:
        return self.rest.all(f"/environments/{segment(name)}/images", {"version": version})

    def get_run(self, run_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self.rest.json("GET", f"/runs/{segment(run_id)}")
        if record.get("job") and record.get("state") not in _FINAL_STATES:
            # The server does not talk to engines: the CLI asks the job's engine and records it.
            return super().get_run(run_id)
        return record

    def run_log(self, run_id: str) -> str:
        try:
            _, body = self.rest.request("GET", f"/runs/{segment(run_id)}/log")
            return body.decode("utf-8", errors="replace")
        except NotFoundError:
            # Not stored yet (a run still going): the CLI reads this machine's copy.
            return super().run_log(run_id)
