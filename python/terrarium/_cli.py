"""Running the ``terrarium`` CLI and turning its failures into typed exceptions.

The CLI prints data on stdout (``--json`` where a command has it) and status, warnings and
errors on stderr, with exit code 2 when the request was at fault and 1 when something failed.
The SDK runs it with ``TERRARIUM_ERRORS=json``, so that after an error's text for people the
last stderr line describes it for programs::

    {"error": {"code": "invalid_definition", "message": "...", "causes": ["..."],
               "hint": "...", "location": {"file": "...", "line": 7, "field": "..."}}}

(``hint`` and ``location`` only when known). The exception is chosen by ``code``.
"""

from __future__ import annotations

import os
# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Optional, Sequence

from . import _fastjson
from ._binary import find_binary
from .errors import (
    CONFLICT_CODES,
    UNAUTHORIZED_HINT,
    ConflictError,
    DefinitionError,
    NotFoundError,
    TerrariumError,
)

#: Exit code of the CLI when the request was at fault.
EXIT_USER_ERROR = 2
#: What makes the CLI describe its errors for programs too.
ERRORS_ENV = {"TERRARIUM_ERRORS": "json"}


def error_from_output(
    code: int,
    stderr: str,
    what: str,
    rewrite: Optional[Callable[[str], str]] = None,
) -> TerrariumError:
    """The exception for a CLI run that exited with ``code`` and wrote ``stderr``.

    ``what`` names the command for messages; ``rewrite`` changes each message and file name
    (e.g. scratch paths into names the caller knows).
    """
    fix = rewrite or (lambda text: text)
    lines = stderr.splitlines()
    structured = _structured(lines, code, fix)
    if structured is not None:
        return structured
    # No description: the CLI did not end by reporting an error (it crashed or was killed).
    tail = [fix(line) for line in lines if line.strip()][-20:]
    return TerrariumError(
        f"terrarium {what} failed with exit code {code}",
        user_error=False,
        details=tail,
    )


def _structured(
    lines: list[str], code: int, fix: Callable[[str], str]
) -> Optional[TerrariumError]:
    """The error from the CLI's last line ``{"error": {...}}``, when it wrote one."""
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            body = _fastjson.loads(line)["error"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(body, dict):
            return None
        message = fix(str(body.get("message", "")))
        kind = str(body.get("code") or "") or None
        hint = body.get("hint")
        if hint is not None and "`terrarium " in str(hint):
            # Advice in CLI commands does not help an SDK caller; the exception's type says it.
            hint = None
        if kind == "unauthorized" and hint is None:
            hint = UNAUTHORIZED_HINT  # as the SDK's own requests to the server say
        causes = [fix(str(c)) for c in body.get("causes", []) or []]
        location = body.get("location")
        if kind == "invalid_definition" or isinstance(location, dict):
            where = location if isinstance(location, dict) else {}
            line_no = where.get("line")
            return DefinitionError(
                message,
                file=fix(str(where["file"])) if where.get("file") else None,
                line=int(line_no) if line_no is not None else None,
                field=where.get("field"),
                hint=hint,
                details=causes,
            )
        cls = TerrariumError
        if kind == "not_found":
            cls = NotFoundError
        elif kind in CONFLICT_CODES:
            cls = ConflictError
        return cls(
            message,
            code=kind,
            hint=hint,
            user_error=code == EXIT_USER_ERROR,
            details=causes,
        )
    return None


class Cli:
    """The ``terrarium`` binary pointed at one workspace (``None``: the CLI's default)."""

    def __init__(
        self,
        workspace: Optional[str],
        token: Optional[str] = None,
        binary: Optional[str] = None,
        extra_env: Optional[dict[str, str]] = None,
    ) -> None:
        self.workspace = workspace
        self._token = token
        self._binary = binary
        self._extra_env = dict(extra_env or {})

    def __repr__(self) -> str:
        # Never the token.
        return f"Cli(workspace={self.workspace!r})"

    @property
    def binary(self) -> str:
        """The binary, found on first use."""
        if self._binary is None:
            self._binary = find_binary()
        return self._binary

    def command(self, args: Sequence[str]) -> list[str]:
        """The argument vector for ``args`` against this workspace."""
        argv = [self.binary]
        if self.workspace is not None:
            argv += ["--workspace", self.workspace]
        return argv + list(args)

    def environ(self) -> dict[str, str]:
        """The child's environment: ours, with the token when there is one."""
        env = dict(os.environ)
        env.update(self._extra_env)
        env.update(ERRORS_ENV)
        if self._token:
            env["TERRARIUM_TOKEN"] = self._token
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Optional[str] = None,
        rewrite: Optional[Callable[[str], str]] = None,
        on_status: Optional[Callable[[str], None]] = None,
    ) -> str:
        """Run the CLI; return its stdout, or raise the error it reported.

        ``on_status`` gets each stderr line as it is written (for progress displays)."""
        argv = self.command(args)
        what = " ".join(args[:2])
        try:
            if on_status is not None:
                code, stdout, stderr = self._streamed(argv, cwd, on_status)
            elif cwd is None and hasattr(os, "posix_spawn"):
                code, stdout, stderr = spawn_captured(argv, self.environ())
            else:
                import subprocess

                done = subprocess.run(
                    argv,
                    cwd=cwd,
                    env=self.environ(),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    errors="replace",
                )
                code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except OSError as err:
            raise TerrariumError(
                f"cannot run {self.binary}: {err}", code="no_binary", user_error=False
            ) from None
        if code != 0:
            raise error_from_output(code, stderr, what, rewrite)
        return stdout

    def json(self, args: Sequence[str], **kwargs: Any) -> Any:
        """Run the CLI with ``--json`` output already in ``args``; return the parsed answer."""
        stdout = self.run(args, **kwargs)
        try:
            return _fastjson.loads(stdout)
        except ValueError:
            raise TerrariumError(
                f"terrarium {' '.join(args[:2])} printed something that is not JSON: {stdout[:200]!r}",
                user_error=False,
            ) from None

    def _streamed(
        self, argv: list[str], cwd: Optional[str], on_status: Callable[[str], None]
    ) -> tuple[int, str, str]:
        import subprocess
        import threading

        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=self.environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        out: list[str] = []
        err: list[str] = []

        def pump(stream: Optional[IO[str]], sink: list[str], notify: bool) -> None:
            assert stream is not None
            for line in stream:
                sink.append(line)
                if notify:
                    on_status(line.rstrip("\n"))

        threads = [
            threading.Thread(target=pump, args=(process.stdout, out, False), daemon=True),
            threading.Thread(target=pump, args=(process.stderr, err, True), daemon=True),
        ]
        for thread in threads:
            thread.start()
        code = process.wait()
        for thread in threads:
            thread.join()
        return code, "".join(out), "".join(err)


def spawn_captured(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``argv`` with stdin from the null device; return its exit code, stdout and stderr.

    What ``subprocess.run(..., capture_output=True)`` does, with ``os.posix_spawn`` and one
    ``poll`` loop: the ``subprocess`` module (with ``selectors``, ``signal`` handling and
    ``threading``) costs a notebook's first cell about 4 ms to import, more than a CLI run.
    As ``subprocess`` does: the child gets only stdin, stdout and stderr (every other
    inheritable descriptor is closed in it), SIGPIPE is reset to its default there, the pipes
    are kept off descriptors 0-2 when this process has them closed, and an interrupted call
    (e.g. KeyboardInterrupt) kills and reaps the child. An ``OSError`` means the program could
    not be started; a failure after that is a :class:`TerrariumError`."""
    import select

    try:
        # The signal numbers without `signal`'s enums (`enum` costs a first cell milliseconds).
        import _signal as signal  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - other implementations
        import signal

    opened: list[int] = []
    pid = 0
    try:
        out_r, out_w = _above_stdio(os.pipe(), opened)
        err_r, err_w = _above_stdio(os.pipe(), opened)
        (null,) = _above_stdio((os.open(os.devnull, os.O_RDONLY),), opened)
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_descriptors()]
        spawn = os.posix_spawn if os.sep in argv[0] else os.posix_spawnp
        pid = spawn(argv[0], argv, env, file_actions=actions, setsigdef=(signal.SIGPIPE,))
        for fd in (null, out_w, err_w):
            os.close(fd)
            opened.remove(fd)
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        try:
            poller = select.poll()
            for fd in chunks:
                poller.register(fd, select.POLLIN)
            open_fds = len(chunks)
            while open_fds:
                for fd, _ in poller.poll():
                    data = os.read(fd, 1 << 16)
                    if data:
                        chunks[fd].append(data)
                    else:
                        poller.unregister(fd)
                        open_fds -= 1
            try:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                # SIGCHLD ignored: the child was reaped for us and its status is gone
                # (`subprocess` reports 0 then too).
                code = 0
            pid = 0
        except OSError as err:
            raise TerrariumError(
                f"reading the output of {argv[0]} failed: {err}", user_error=False
            ) from None
    finally:
        if pid:
            # Interrupted: the child goes too, and is reaped.
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass
    stdout = b"".join(chunks[out_r]).decode("utf-8", "replace")
    stderr = b"".join(chunks[err_r]).decode("utf-8", "replace")
    return code, stdout, stderr


def _above_stdio(fds: tuple[int, ...], opened: list[int]) -> tuple[int, ...]:
    """``fds``, each moved to 3 or above (a process started with stdin, stdout or stderr
    closed gets them from ``pipe``); every descriptor is noted in ``opened`` to be closed."""
    opened.extend(fds)
    moved = []
    for fd in fds:
        if fd < 3:
            import fcntl

            above = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            opened.append(above)
            opened.remove(fd)
            os.close(fd)
            fd = above
        moved.append(fd)
    return tuple(moved)


def _inheritable_descriptors() -> list[int]:
    """This process's descriptors above 2 that a child would inherit (those Python opened are
    not; a C library's or an inherited one may be)."""
    try:
        listed = os.listdir("/proc/self/fd")
    except OSError:
        try:
            listed = os.listdir("/dev/fd")
        except OSError:
            return []
    found = []
    for name in listed:
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # the listing's own descriptor, closed since
    return found
