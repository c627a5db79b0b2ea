"""Fixtures: the real ``terrarium`` binary, a fresh workspace of each kind (a directory, a team
server on SQLite, a team server on PostgreSQL, a PostgreSQL database), and a local wheelhouse
so that environments lock and build offline.

Variables read (as the Rust tests do): ``TERRARIUM_BIN`` (default ``target/HOST/debug/terrarium``),
``TERRARIUM_UV`` (uv; tests that lock are skipped without it), ``TERRARIUM_TEST_POSTGRES``
(a PostgreSQL URL, ``scripts/postgres.sh start DIR``), ``TERRARIUM_TEST_AML_PYTHON`` (a Python
with ``azureml-core``), ``TERRARIUM_TEST_BASE_IMAGE`` (a base image with Python);
``scripts/test-tools.sh`` prints them. Under ``CI`` a missing one fails
instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE_WHEEL = REPO / "crates" / "terrarium" / "tests" / "fixtures" / "make_wheel.py"
BACKENDS = ["local", "server-sqlite", "server-postgres", "postgres"]


def needed(variable: str, why: str, source: str = "scripts/test-tools.sh") -> str:
    """The value of ``variable``; skips the test without it (fails under CI). ``source``
    says what prints it."""
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is not set: {why} ({source} prints it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return value


def _host() -> str:
    """The folder cargo builds this machine's binaries in (the workspace names its host target,
    `.cargo/config.toml`)."""
    return subprocess.run(["rustc", "--print", "host-tuple"], capture_output=True, text=True, check=True).stdout.strip()


def terrarium_bin() -> str:
    """The binary under test."""
    binary = os.environ.get("TERRARIUM_BIN") or str(REPO / "target" / _host() / "debug" / "terrarium")
    if not os.access(binary, os.X_OK):
        pytest.exit(
            f"no terrarium binary at {binary}: cargo build -p terrarium, or set TERRARIUM_BIN",
            returncode=2,
        )
    return binary


@pytest.fixture(scope="session")
def binary() -> str:
    """The ``terrarium`` binary."""
    return terrarium_bin()


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by the session: caches, wheelhouse."""
    return tmp_path_factory.mktemp("session")


@pytest.fixture(autouse=True)
def isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, session_dir: Path, binary: str
) -> Iterator[None]:
    """Each test: its own Terrarium home and no config file; one cache for the session (built
    environments are keyed by their lock, so sharing it only saves time)."""
    monkeypatch.setenv("TERRARIUM_BIN", binary)
    monkeypatch.setenv("TERRARIUM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TERRARIUM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("TERRARIUM_CACHE_DIR", str(session_dir / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(session_dir / "uv-cache"))
    monkeypatch.setenv("TERRARIUM_USER", "tester")
    monkeypatch.setenv("RUST_BACKTRACE", "0")
    for name in ("TERRARIUM_WORKSPACE", "TERRARIUM_TOKEN", "TERRARIUM_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield


class Server:
    """A ``terrarium server`` process on a free loopback port."""

    def __init__(self, binary: str, db: str, log: Path) -> None:
        self.process = subprocess.Popen(
            [binary, "server", "--db", db, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = log
        found: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            with open(log, "a") as sink:
                for line in self.process.stderr:
                    sink.write(line)
                    sink.flush()
                    prefix = "terrarium server listening on "
                    if line.startswith(prefix):
                        found.append(line[len(prefix):].strip())
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        # No sleeping: wait for the line that says it listens, with a deadline.
        if not ready.wait(60) or not found:
            self.stop()
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        self.url = found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def admin_token(binary: str, db: str) -> str:
    """An admin token made directly in the database (as `token create --db` does)."""
    done = subprocess.run(
        [binary, "token", "create", "--db", db, "--role", "admin", "--name", "tests", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    token: str = json.loads(done.stdout)["token"]
    return token


def postgres_database(prefix: str) -> str:
    """A fresh database on ``$TERRARIUM_TEST_POSTGRES``."""
    url = needed(
        "TERRARIUM_TEST_POSTGRES",
        "the PostgreSQL backends need a server",
        "scripts/postgres.sh start DIR",
    )
    name = f"{prefix}_{os.getpid()}_{time.time_ns() % 1_000_000_000}"
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to create test databases")
    subprocess.run(
        [psql, url, "-q", "-c", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
    )
    return f"{url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(params=BACKENDS)
def workspace(request: pytest.FixtureRequest, tmp_path: Path, binary: str) -> Iterator[Any]:
    """A fresh, empty workspace of each kind."""
    from terrarium import Workspace

    kind = request.param
    if kind == "local":
        yield Workspace(tmp_path / "workspace")
        return
    if kind == "postgres":
        yield Workspace.connect(postgres_database("sdk"))
        return
    db = (
        f"sqlite://{tmp_path / 'server-ws'}"
        if kind == "server-sqlite"
        else postgres_database("sdk_server")
    )
    server = Server(binary, db, tmp_path / "server.log")
    try:
        yield Workspace.connect(server.url, token=admin_token(binary, db))
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wheelhouse(session_dir: Path) -> Path:
    """Pure-Python wheels for offline environments: ``tinyapp 1.0`` (needs ``tinydep>=1``, has
    a ``tinyapp`` script) and ``tinydep 1.0`` and ``1.2``."""
    out = session_dir / "wheels"
    subprocess.run(
        [sys.executable, str(MAKE_WHEEL), str(out), "tinyapp==1.0:tinydep>=1:tinyapp",
         "tinydep==1.0", "tinydep==1.2"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


@pytest.fixture
def uv() -> str:
    """uv for locking, never downloaded by the tests."""
    return needed("TERRARIUM_UV", "locking pip packages needs uv")


def base_python() -> str:
    """A real interpreter (not a virtual environment's link) for pip-only environments."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def pip_env(name: str, wheels: Path, packages: Optional[list[str]] = None) -> Any:
    """A pip-only environment that locks and builds from the local wheelhouse."""
    from terrarium import CondaDependencies, Environment

    env = Environment(name)
    dependencies = CondaDependencies.create(pip_packages=packages or ["tinyapp==1.0"])
    dependencies.set_pip_option("--no-index")
    dependencies.set_pip_option(f"--find-links {wheels}")
    env.python.conda_dependencies = dependencies
    env.python.interpreter_path = base_python()
    return env
