"""What needs no workspace: CondaDependencies, the YAML it writes, saving and loading Azure ML
v1 directories, finding the workspace from the config, reading CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from terrarium import (
    CondaDependencies,
    ConflictError,
    DefinitionError,
    Environment,
    NotFoundError,
    TerrariumError,
    Workspace,
)
from terrarium._cli import error_from_output
from terrarium._rest import error_from_answer
from terrarium._yaml import dump


def test_conda_dependencies_edits() -> None:
    cd = CondaDependencies.create(pip_packages=["numpy==1.26", "pandas"], python_version="3.11")
    assert cd.conda_packages == ["python=3.11"]
    assert cd.conda_channels == ["conda-forge"], "the first conda package brings a channel"
    assert cd.get_python_version() == "3.11"
    cd.add_pip_package("numpy==2.0")
    assert cd.pip_packages == ["pandas", "numpy==2.0"], "a package is replaced, and moves last"
    cd.remove_pip_package("pandas")
    assert cd.pip_packages == ["numpy==2.0"]
    cd.add_conda_package("scipy")
    cd.add_conda_package("scipy")
    cd.add_conda_package("python=3.12")
    assert cd.conda_packages == ["python=3.12", "scipy"]
    cd.remove_conda_package("scipy")
    assert cd.conda_packages == ["python=3.12"]
    cd.add_channel("bioconda")
    cd.add_channel("bioconda")
    assert cd.conda_channels == ["conda-forge", "bioconda"]
    cd.remove_channel("bioconda")
    cd.set_pip_option("--index-url https://a.example/simple")
    cd.set_pip_option("--index-url https://b.example/simple")
    assert cd.pip_options == ["--index-url https://b.example/simple"]
    cd.remove_pip_option("--index-url")
    assert cd.pip_options == []
    with pytest.raises(TerrariumError):
        cd.add_pip_package("--no-index")
    with pytest.raises(TerrariumError):
        cd.set_pip_option("numpy")
    assert CondaDependencies.merge_requirements(["a>1", "b", "a<3"]) == ["a>1,<3", "b"]

    pip_only = CondaDependencies.create(pip_packages=["requests"])
    assert pip_only.conda_packages == [] and pip_only.conda_channels == []
    assert pip_only.get_python_version() is None


def test_yaml_reads_back_as_written(tmp_path: Path) -> None:
    document = {
        "name": "project_environment",
        "channels": ["conda-forge"],
        "dependencies": [
            "python=3.11",
            "3.10",
            "yes",
            "null",
            "a: b",
            "# not a comment",
            "- dash",
            "",
            {"pip": ["--index-url https://x.example/simple", "numpy==1.26", "rich; python_version >= '3.8'"]},
        ],
        "variables": {"EMPTY": "", "NUM": "4", "MULTI": "line\nbreak"},
    }
    text = dump(document)
    # Terrarium reads it back exactly (and so does any YAML reader: json-style quoting).
    path = tmp_path / "env.yml"
    path.write_text(dump({**document, "dependencies": document["dependencies"][:1] + [document["dependencies"][-1]]}))
    read = CondaDependencies(path).as_dict()
    assert read["dependencies"] == ["python=3.11", {"pip": ["--index-url https://x.example/simple", "numpy==1.26", "rich; python_version >= '3.8'"]}]
    assert read["variables"] == {"EMPTY": "", "NUM": "4", "MULTI": "line\nbreak"}
    for item in ("3.10", "yes", "null", "a: b", "# not a comment", "- dash"):
        assert json.dumps(item) in text, item
    assert dump({"dependencies": []}) == "dependencies: []\n"


def test_save_and_load_a_directory(tmp_path: Path) -> None:
    env = Environment("local")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["requests==2.32.3"])
    env.environment_variables = {"A": "1"}
    env.docker.base_image = "docker.io/library/python:3.11-slim"
    env.save_to_directory(tmp_path / "d")
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names == ["azureml_environment.json", "conda_dependencies.yml"]
    with pytest.raises(TerrariumError):
        env.save_to_directory(tmp_path / "d")
    env.docker.base_dockerfile = "FROM scratch\n"
    assert env.docker.base_image is None, "a Dockerfile replaces the base image"
    env.save_to_directory(tmp_path / "d", overwrite=True)
    assert (tmp_path / "d" / "BaseDockerfile").read_text() == "FROM scratch\n"
    loaded = Environment.load_from_directory(tmp_path / "d")
    assert loaded.docker.base_dockerfile == "FROM scratch\n"
    assert loaded.python.conda_dependencies == env.python.conda_dependencies
    assert loaded.environment_variables == {"A": "1"}
    env.docker.base_image = "docker.io/library/python:3.11-slim"
    env.save_to_directory(tmp_path / "d", overwrite=True)
    assert not (tmp_path / "d" / "BaseDockerfile").exists(), "a stale Dockerfile is removed"

    (tmp_path / "d" / "azureml_environment.json").write_text('{"name": "x",\n "python": [1]\n}\n')
    with pytest.raises(DefinitionError) as caught:
        Environment.load_from_directory(tmp_path / "d")
    assert caught.value.file and caught.value.file.endswith("azureml_environment.json")
    assert caught.value.field == "python" and caught.value.line == 2
    with pytest.raises(DefinitionError):
        Environment.load_from_directory(tmp_path / "missing")


def test_from_config_and_connect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('# team\nworkspace = "https://terrarium.example:8765"\ntoken = "secret-token"\n')
    monkeypatch.setenv("TERRARIUM_CONFIG", str(config))
    ws = Workspace.from_config()
    assert ws.kind == "server" and ws.name == "https://terrarium.example:8765"
    assert ws._cli._token == "secret-token"
    assert "secret-token" not in repr(ws) + repr(ws._cli) + repr(getattr(ws._backend, "rest"))
    monkeypatch.setenv("TERRARIUM_WORKSPACE", str(tmp_path / "ws"))
    assert Workspace.from_config().kind == "directory"
    other = tmp_path / "other.toml"
    other.write_text(f'workspace = "{tmp_path / "elsewhere"}"\n')
    assert Workspace.from_config(other).name == str(tmp_path / "elsewhere"), "an explicit file wins"
    with pytest.raises(NotFoundError):
        Workspace.from_config(tmp_path / "nope.toml")
    config.write_text('workspace = "x"\nsurprise = "y"\n')
    monkeypatch.delenv("TERRARIUM_WORKSPACE")
    with pytest.raises(DefinitionError):
        Workspace.from_config()

    pg = Workspace.connect("postgres://user:hunter2@db.example/terrarium")
    assert pg.kind == "postgres" and "hunter2" not in repr(pg) and "hunter2" not in pg.name
    with pytest.raises(TerrariumError):
        Workspace.connect("/a/directory")


def test_cli_errors_become_typed_exceptions(tmp_path: Path) -> None:
    def described(code: int, body: dict[str, Any], text: str = "error: (for people)\n") -> TerrariumError:
        return error_from_output(code, text + json.dumps({"error": body}) + "\n", "env create")

    located = described(
        2,
        {
            "code": "invalid_definition",
            "message": "environment.yml:7: field `dependencies[1].pip`: invalid requirement `torch ===`",
            "causes": [],
            "location": {"file": "environment.yml", "line": 7, "field": "dependencies[1].pip"},
        },
        "warning: something\nerror: environment.yml:7: ...\n",
    )
    assert isinstance(located, DefinitionError) and located.code == "invalid_definition"
    assert (located.file, located.line, located.field) == ("environment.yml", 7, "dependencies[1].pip")
    assert "invalid requirement" in str(located)
    missing_file = described(
        2,
        {
            "code": "invalid_definition",
            "message": "/scratch/x.yml: cannot open",
            "causes": ["No such file or directory (os error 2)"],
            "location": {"file": "/scratch/x.yml"},
        },
    )
    assert isinstance(missing_file, DefinitionError) and missing_file.line is None
    rewritten = error_from_output(
        2,
        json.dumps({"error": {"code": "invalid_definition", "message": "/scratch/x.yml:1: bad",
                              "causes": [], "location": {"file": "/scratch/x.yml", "line": 1}}}),
        "env create",
        rewrite=lambda text: text.replace("/scratch/", ""),
    )
    assert isinstance(rewritten, DefinitionError)
    assert (rewritten.file, rewritten.message) == ("x.yml", "x.yml:1: bad")
    missing = described(
        2,
        {
            "code": "not_found",
            "message": "environment `nope` not found",
            "causes": [],
            "hint": "`terrarium env list` shows the environments in this workspace",
        },
    )
    assert isinstance(missing, NotFoundError) and missing.code == "not_found"
    assert missing.hint is None, "CLI advice is not an SDK caller's"
    for code in ("conflict", "curated", "referenced", "archived"):
        conflict = described(2, {"code": code, "message": "m", "causes": ["c"], "hint": "h"})
        assert isinstance(conflict, ConflictError) and conflict.code == code
        assert conflict.details == ["c"] and conflict.hint == "h"
    unauthorized = described(2, {"code": "unauthorized", "message": "no token", "causes": []})
    assert type(unauthorized) is TerrariumError and unauthorized.code == "unauthorized"
    assert unauthorized.user_error
    failure = described(1, {"code": "failure", "message": "database error", "causes": ["disk full"]})
    assert type(failure) is TerrariumError and not failure.user_error and failure.details == ["disk full"]
    # No description: a CLI that crashed; its last lines are the details.
    crashed = error_from_output(101, "thread 'main' panicked at src/x.rs:1:1:\noops\n", "env list")
    assert type(crashed) is TerrariumError and not crashed.user_error
    assert "exit code 101" in crashed.message and crashed.details[-1] == "oops"

    assert isinstance(error_from_answer(404, b'{"error": {"status": 404, "code": "not_found", "message": "x not found"}}', "u"), NotFoundError)
    assert isinstance(error_from_answer(409, b'{"error": {"status": 409, "code": "curated", "message": "read-only"}}', "u"), ConflictError)
    unauthorized = error_from_answer(401, b'{"error": {"status": 401, "code": "unauthorized", "message": "no token"}}', "u")
    assert unauthorized.code == "unauthorized" and unauthorized.hint
    assert not error_from_answer(502, b"<html>bad gateway</html>", "u").user_error


def test_an_unreachable_server_is_a_typed_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = Workspace.connect(f"http://127.0.0.1:{port}", token="t")
    with pytest.raises(TerrariumError) as caught:
        Environment.get(ws, "x")
    assert not caught.value.user_error and "cannot reach" in str(caught.value)


def test_a_server_refuses_a_bad_token(tmp_path: Path, binary: str) -> None:
    from conftest import Server

    server = Server(binary, f"sqlite://{tmp_path / 'db'}", tmp_path / "server.log")
    try:
        ws = Workspace.connect(server.url, token="not-a-token")
        with pytest.raises(TerrariumError) as caught:
            Environment.list(ws)
        assert caught.value.code == "unauthorized"
        with pytest.raises(TerrariumError) as registering:
            Environment("x").register(ws)
        assert registering.value.user_error
    finally:
        server.stop()


def older_pythons() -> list[str]:
    """Interpreters of Python 3.9 and 3.10 that run (PATH, then pyenv's versions)."""
    import glob
    import shutil

    candidates = [shutil.which(p) for p in ("python3.9", "python3.10")]
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")))
    found = []
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            found.append(candidate)
    return found


def test_python_3_9_can_import_the_package() -> None:
    for found in older_pythons()[:1]:
        done = subprocess.run(
            [found, "-c", "import terrarium, terrarium.core.conda_dependencies as c; "
             "d = c.CondaDependencies.create(pip_packages=['x']); print(d.serialize_to_string())"],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parents[1]),
        )
        assert done.returncode == 0, done.stderr
        assert "- x" in done.stdout
        return
    pytest.skip("no python3.9 or python3.10 on PATH")


def test_every_public_name_has_a_docstring() -> None:
    import importlib
    import inspect
    import pkgutil

    import terrarium

    missing = []
    checked = 0
    for module_info in pkgutil.walk_packages(terrarium.__path__, "terrarium."):
        module = importlib.import_module(module_info.name)
        checked += 1
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        public = getattr(module, "__all__", None) or [
            n for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
            and (inspect.isclass(v) or inspect.isfunction(v))
        ]
        for name in public:
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            checked += 1
            if not (value.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(value):
                for attr, member in vars(value).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        checked += 1
                        if not (member.__doc__ or "").strip():
                            missing.append(f"{module.__name__}.{name}.{attr}")
    assert checked > 150, checked
    assert not missing, missing


def test_spawned_cli_output_is_read_whole() -> None:
    """The SDK runs the CLI without `subprocess`: both streams are read to their end however
    much each writes (no deadlock on a full pipe), bytes that are not UTF-8 are replaced, the
    exit code comes back, and stdin is the null device."""
    import sys

    from terrarium._cli import spawn_captured

    script = (
        "import os, sys\n"
        "assert sys.stdin.read() == ''\n"
        "for i in range(2000):\n"
        "    os.write(2, b'e' * 511 + b'\\n')\n"
        "    os.write(1, b'o' * 511 + b'\\n')\n"
        "os.write(1, b'\\xff end')\n"
        "sys.exit(3)\n"
    )
    import threading

    answers: list[tuple[int, str, str]] = []
    reader = threading.Thread(
        target=lambda: answers.append(spawn_captured([sys.executable, "-c", script], dict(os.environ))),
        daemon=True,
    )
    reader.start()
    reader.join(60)
    assert answers, "the output was not read to its end within 60 s"
    code, out, err = answers[0]
    assert code == 3
    assert len(err) == 2000 * 512 and set(err) == {"e", "\n"}
    assert out.endswith("\ufffd end") and len(out) == 2000 * 512 + 5
    with pytest.raises(OSError):
        spawn_captured(["/nonexistent/terrarium"], dict(os.environ))


def test_spawned_cli_gets_no_other_descriptors() -> None:
    """An inheritable descriptor of this process (a C library's, or one this process was
    given) does not reach the CLI, as with `subprocess`; the CLI's stdio works even when this
    process has its own stdin closed."""
    import sys

    from terrarium._cli import spawn_captured

    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        code, out, _ = spawn_captured(
            [sys.executable, "-c", "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"],
            dict(os.environ),
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert code == 0
    assert out.strip() == "[0, 1, 2, 3]", "stdio and the listing's own descriptor only"
    # A parent without stdin: its pipes must not land on descriptor 0.
    child = (
        "import os, sys\n"
        "os.close(0)\n"
        "from terrarium._cli import spawn_captured\n"
        "code, out, err = spawn_captured([sys.executable, '-c', 'import sys; print(sys.stdin.read() == \\'\\')'], dict(os.environ))\n"
        "print(code, out.strip())\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0 True", done.stderr


def test_a_missing_binary_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from terrarium._cli import Cli

    with pytest.raises(TerrariumError) as caught:
        Cli(str(tmp_path), binary=str(tmp_path / "no-such-terrarium")).run(["env", "list"])
    assert caught.value.code == "no_binary" and "cannot run" in str(caught.value)


def test_the_first_cell_imports_no_more_than_it_needs(tmp_path: Path) -> None:
    """A notebook's first cell (import, from_conda_specification, register, get on a
    directory) leaves out the modules that made it slow: a process and its modules are what
    the cell costs, so this pins them rather than timing them."""
    import sys

    conda = tmp_path / "environment.yml"
    conda.write_text("name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n", encoding="utf-8")
    cell = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from terrarium.core import Environment, Workspace\n"
        "ws = Workspace.from_config()\n"
        f"env = Environment.from_conda_specification('cell', {str(conda)!r})\n"
        "env.register(ws)\n"
        "assert Environment.get(ws, 'cell').version == '1'\n"
        "heavy = ['subprocess', 'threading', 'pathlib', 'typing', 'tempfile', 'shutil',\n"
        "         'urllib.request', 'importlib.metadata', 'selectors', 'json', 're', 'enum',\n"
        "         'copy', 'csv', 'signal', 'tomllib']\n"
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))\n"
    )
    # The workspace from the config file, as a notebook's first cell usually has it.
    config = tmp_path / "config.toml"
    config.write_text(f'workspace = "{tmp_path / "ws"}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("TERRARIUM_WORKSPACE", "TERRARIUM_TOKEN")}
    env["TERRARIUM_CONFIG"] = str(config)
    done = subprocess.run(
        [sys.executable, "-c", cell], capture_output=True, text=True, cwd=str(tmp_path), env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "ws" / "workspace.db").is_file(), "the config file's workspace was used"


def test_the_config_file_is_read_as_toml_reads_it() -> None:
    """The config file's fast reader (no `tomllib`) gives what `tomllib` gives, and leaves to
    `tomllib` everything it is not sure of."""
    import random
    import tomllib

    from terrarium.workspace import _plain_lines as _plain_config

    same = [
        'workspace = "/data/ws"\ntoken = "t0k3n"\n',
        "# team\n\nworkspace = 'C:\\\\raw\\\\path'  # literal\n",
        'workspace = "a \\"quoted\\" \\\\ path\\twith\\ttabs"\r\ntoken=""\n',
        'workspace = "/ünïcödé/wş"\n',
        "",
    ]
    for text in same:
        assert _plain_config(text) == tomllib.loads(text), text
    declined = [
        'workspace = "\\u00e9"\n',  # \u escapes: TOML refuses surrogates, JSON does not
        'workspace = "\\/x"\n',  # JSON's escape, not TOML's
        'workspace = "a"\x0c\n',  # a form feed: not TOML's whitespace
        "# a\x01comment\n",  # control characters in a comment
        'workspace = "a"\rtoken = "b"\n',  # a lone CR: not a TOML line end
        "workspace = 'a",
        'workspace = "a" b\n',
        'workspace = "a"\nworkspace = "b"\n',  # a duplicate: TOML's error
        '[server]\nworkspace = "a"\n',
        'workspace = """a"""\n',
        'workspace = 3\n',
        '"workspace" = "a"\n',
    ]
    for text in declined:
        assert _plain_config(text) is None, text
    # Whatever it reads from random text, TOML reads alike.
    pieces = list("wk-_ \t=\"'\\ntu#\n\r\x0c\x7f\x00é\u2028x1[.b") + ["\r\n"]
    rng = random.Random(7)
    read = 0
    for _ in range(100_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        got = _plain_config(text)
        if got is None:
            continue
        try:
            assert got == tomllib.loads(text), text
        except tomllib.TOMLDecodeError:
            raise AssertionError(f"read what TOML refuses: {text!r}") from None
        read += 1
    assert read > 1000
