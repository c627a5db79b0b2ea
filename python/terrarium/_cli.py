"""Running the ``terrarium`` CLI and turning its failures into typed exceptions.

The CLI prints data on stdout (``--json`` where a command has it) and status, warnings and
errors on stderr: ``error: ...``, then ``  Caused by: ...`` lines, then ``hint: ...``, with exit
code 2 when the request was at fault and 1 when something failed. A definition's problem reads
``FILE:LINE: field `FIELD`: message``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Callable, Optional, Sequence

from ._binary import find_binary
from .errors import ConflictError, DefinitionError, NotFoundError, TerrariumError

#: Exit code of the CLI when the request was at fault.
EXIT_USER_ERROR = 2

# `FILE[:LINE][: field `FIELD`]: MESSAGE`, as terrarium-spec's `Location` prints it.
_LOCATION = re.compile(
    r"^(?P<file>[^:]+?|/.+?)(?::(?P<line>\d+))?(?:: field `(?P<field>[^`]*)`)?: (?P<message>.*)$"
)
_CONFLICT = (
    "already exists with different content",
    "versions are immutable",
    "is a curated environment and is read-only",
    " cannot be deleted: ",
)


def error_from_output(
    code: int,
    stderr: str,
    what: str,
    definition: Optional[Path] = None,
    rewrite: Optional[Callable[[str], str]] = None,
) -> TerrariumError:
    """The exception for a CLI run that exited with ``code`` and wrote ``stderr``.

    ``what`` names the command for messages; ``definition`` is the definition file or folder
    the command read, so that a ``FILE: message`` error about it becomes a
    :class:`DefinitionError`; ``rewrite`` changes each message (e.g. scratch paths into names
    the caller knows).
    """
    fix = rewrite or (lambda text: text)
    lines = stderr.splitlines()
    structured = _structured(lines, code, fix)
    if structured is not None:
        return structured
    message: Optional[str] = None
    causes: list[str] = []
    hint: Optional[str] = None
    for line in lines:
        if line.startswith("error: ") and message is None:
            message = fix(line[len("error: "):])
        elif line.startswith("  Caused by: ") and message is not None:
            causes.append(fix(line[len("  Caused by: "):]))
        elif line.startswith("hint: ") and message is not None:
            hint = fix(line[len("hint: "):])
    if hint is not None and "`terrarium " in hint:
        # Advice in CLI commands does not help an SDK caller; the exception's type says it.
        hint = None
    if message is None:
        tail = [line for line in lines if line.strip()]
        message = fix(tail[-1]) if tail else f"terrarium {what} failed with exit code {code}"
    user = code == EXIT_USER_ERROR
    for text in [message, *causes]:
        where = _location(text, definition, user)
        if where is not None:
            file, line_no, field = where
            return DefinitionError(
                message, file=file, line=line_no, field=field, hint=hint, details=causes
            )
    for text in [message, *causes]:
        if text.endswith(" not found"):
            return NotFoundError(message, code="not_found", hint=hint, details=causes)
    for text in [message, *causes]:
        if any(marker in text for marker in _CONFLICT):
            return ConflictError(message, code="conflict", hint=hint, details=causes)
    return TerrariumError(message, hint=hint, user_error=user, details=causes)


def _structured(
    lines: list[str], code: int, fix: Callable[[str], str]
) -> Optional[TerrariumError]:
    """The error from a machine-readable line ``{"error": {...}}``, when the CLI wrote one."""
    for line in reversed(lines):
        if not line.startswith('{"error"'):
            continue
        try:
            body = json.loads(line)["error"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(body, dict):
            return None
        message = fix(str(body.get("message", "")))
        kind = str(body.get("code", ""))
        hint = body.get("hint")
        causes = [fix(str(c)) for c in body.get("causes", []) or []]
        location = body.get("location")
        if isinstance(location, dict) and location.get("file"):
            line_no = location.get("line")
            return DefinitionError(
                message,
                file=fix(str(location["file"])),
                line=int(line_no) if line_no is not None else None,
                field=location.get("field"),
                hint=hint,
                details=causes,
            )
        cls = {"not_found": NotFoundError, "conflict": ConflictError}.get(kind, TerrariumError)
        return cls(
            message,
            code=kind or None,
            hint=hint,
            user_error=code == EXIT_USER_ERROR,
            details=causes,
        )
    return None


def _location(
    text: str, definition: Optional[Path], user: bool
) -> Optional[tuple[str, Optional[int], Optional[str]]]:
    """Where a definition's problem is (file, line, field), when ``text`` names a place."""
    if not user:
        return None
    match = _LOCATION.match(text)
    if match is None:
        return None
    line, field = match.group("line"), match.group("field")
    # `FILE: MESSAGE` is a definition's problem only when FILE is the definition read.
    if line is None and field is None and not (
        definition is not None and _within(match.group("file"), definition)
    ):
        return None
    return match.group("file"), int(line) if line else None, field


def _within(named: str, definition: Path) -> bool:
    """Whether the path a message names is the definition or a file in it (before any
    rewriting of scratch paths, names are compared by their last components too)."""
    path = Path(named)
    try:
        resolved = path.resolve()
        base = definition.resolve()
        if resolved == base or base in resolved.parents:
            return True
    except OSError:
        pass
    known = {definition.name} | ({p.name for p in definition.iterdir()} if definition.is_dir() else set())
    return path.name in known


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
        if self._token:
            env["TERRARIUM_TOKEN"] = self._token
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Optional[str] = None,
        definition: Optional[Path] = None,
        rewrite: Optional[Callable[[str], str]] = None,
        on_status: Optional[Callable[[str], None]] = None,
    ) -> str:
        """Run the CLI; return its stdout, or raise the error it reported.

        ``on_status`` gets each stderr line as it is written (for progress displays)."""
        argv = self.command(args)
        what = " ".join(args[:2])
        try:
            if on_status is None:
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
            else:
                code, stdout, stderr = self._streamed(argv, cwd, on_status)
        except OSError as err:
            raise TerrariumError(
                f"cannot run {self.binary}: {err}", code="no_binary", user_error=False
            ) from None
        if code != 0:
            raise error_from_output(code, stderr, what, definition, rewrite)
        return stdout

    def json(self, args: Sequence[str], **kwargs: Any) -> Any:
        """Run the CLI with ``--json`` output already in ``args``; return the parsed answer."""
        stdout = self.run(args, **kwargs)
        try:
            return json.loads(stdout)
        except ValueError:
            raise TerrariumError(
                f"terrarium {' '.join(args[:2])} printed something that is not JSON: {stdout[:200]!r}",
                user_error=False,
            ) from None

    def _streamed(
        self, argv: list[str], cwd: Optional[str], on_status: Callable[[str], None]
    ) -> tuple[int, str, str]:
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
