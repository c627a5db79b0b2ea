"""A small client for a team server's REST API (``/api/v1``), with ``urllib`` only.

Every error answer has one shape, ``{"error": {"status", "code", "message", "subject"}}``; it
becomes a :class:`~terrarium.errors.TerrariumError` subclass by its code. Network failures
become a ``TerrariumError`` too, never a bare ``URLError``.
"""

from __future__ import annotations

# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

from . import _fastjson
from .errors import CONFLICT_CODES, UNAUTHORIZED_HINT, ConflictError, NotFoundError, TerrariumError

API_PREFIX = "/api/v1"


def segment(text: str) -> str:
    """One path segment: environment names may hold ``/`` (``curated/sklearn``)."""
    import urllib.parse

    return urllib.parse.quote(text, safe="")


class RestClient:
    """Requests to one server, with a bearer token when there is one."""

    def __init__(self, url: str, token: Optional[str], timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self._token = token or None
        self.timeout = timeout

    def __repr__(self) -> str:
        # Never the token.
        return f"RestClient(url={self.url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[dict[str, str]] = None,
        body: Any = None,
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body) of a success, raise on an error answer."""
        # Imported here: urllib.request (http.client, email, ssl) would cost every import of
        # the SDK tens of milliseconds, and only a team server's workspace needs it.
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.url}{API_PREFIX}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {"Accept": "application/json", "User-Agent": "terrarium-python"}
        if body is not None:
            data = _fastjson.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            raise error_from_answer(err.code, err.read(), self.url) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TerrariumError(
                f"cannot reach the workspace server at {self.url}: {reason}",
                code="transport",
                user_error=False,
            ) from None

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose answer is JSON."""
        _, body = self.request(method, path, **kwargs)
        try:
            return _fastjson.loads(body)
        except ValueError:
            raise TerrariumError(
                f"{self.url} answered {method} {path} with something that is not JSON",
                code="transport",
                user_error=False,
            ) from None

    def all(self, path: str, query: Optional[dict[str, str]] = None) -> list[Any]:
        """Every item of a paged list."""
        items: list[Any] = []
        while True:
            page_query = dict(query or {})
            page_query.update({"limit": "1000", "offset": str(len(items))})
            page = self.json("GET", path, query=page_query)
            batch = page.get("items", [])
            items.extend(batch)
            if not batch or len(items) >= int(page.get("total", 0)):
                return items


def error_from_answer(status: int, body: bytes, url: str) -> TerrariumError:
    """The exception for an error answer of the API."""
    try:
        detail = _fastjson.loads(body)["error"]
        code = str(detail["code"])
        message = str(detail["message"])
    except (ValueError, KeyError, TypeError):
        return TerrariumError(
            f"{url} answered {status} with something that is not the Terrarium API",
            code="transport",
            user_error=False,
        )
    user = status < 500
    hint = None
    if status == 401:
        hint = UNAUTHORIZED_HINT
    if code == "not_found":
        return NotFoundError(message, code=code, hint=hint)
    if code in CONFLICT_CODES:
        return ConflictError(message, code=code, hint=hint)
    return TerrariumError(message, code=code, hint=hint, user_error=user)
