"""The exceptions the SDK raises: one base class and a subclass per case a caller handles.

Every failure of the CLI, the team server or the SDK's own checks reaches the caller as a
:class:`TerrariumError` (never a ``CalledProcessError`` or an HTTP traceback). The exception
carries data (``code``, ``hint``, and for definitions ``file``, ``line`` and ``field``) and says
whether the request was at fault (``user_error``) or something failed.
"""

from __future__ import annotations

# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

#: Codes (the team server's, and the CLI's with ``TERRARIUM_ERRORS=json``) that mean the
#: request conflicts with the workspace's state: :class:`ConflictError`.
CONFLICT_CODES = frozenset({"conflict", "curated", "referenced", "archived"})
#: What helps with a team server's ``unauthorized``, whether the SDK or the CLI asked.
UNAUTHORIZED_HINT = "pass token= to Workspace.connect, or set TERRARIUM_TOKEN"


class TerrariumError(Exception):
    """Something Terrarium refused or could not do.

    ``message`` is the text Terrarium gave, ``code`` a stable machine-readable word when one is
    known (the team server's error codes: ``not_found``, ``conflict``, ``invalid``,
    ``unauthorized``, ``forbidden``, ...), ``hint`` what may help, ``user_error`` whether the
    request was at fault (exit code 2, HTTP 4xx) rather than something failing (exit code 1,
    HTTP 5xx, a network error).
    """

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        hint: Optional[str] = None,
        user_error: bool = True,
        details: Optional[list[str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.user_error = user_error
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        text = self.message
        for cause in self.details:
            text += f"\n  Caused by: {cause}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class NotFoundError(TerrariumError):
    """No environment, version, label, run, deployment or compute target by that name."""


class ConflictError(TerrariumError):
    """The request conflicts with the workspace: a version that exists with other content
    (versions are immutable, ``code`` ``conflict``), a curated environment (read-only,
    ``curated``), a version still referenced (``referenced``) or archived (``archived``)."""


class DefinitionError(TerrariumError):
    """A definition that is not valid, with where the problem is: ``file``, and when known
    ``line`` (1-based) and ``field`` (e.g. ``dependencies[1].pip``)."""

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        line: Optional[int] = None,
        field: Optional[str] = None,
        code: Optional[str] = "invalid_definition",
        hint: Optional[str] = None,
        details: Optional[list[str]] = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint, user_error=True, details=details)
        self.file = file
        self.line = line
        self.field = field
