"""Progress of long calls (builds, waits): a live line in a notebook or on a terminal, nothing
otherwise (scripts, CI logs, tests)."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
# `typing` is for the type checker only: importing it costs every notebook's first cell.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _notebook_display() -> Any:
    """IPython's ``display`` when running in a notebook kernel, else None."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            return None
        from IPython.display import display

        return display
    except Exception:  # an IPython too old or too unusual to use: stay quiet
        return None


class Progress:
    """A context manager showing ``title``, the latest status and the time spent."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.status = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        # The ticker thread and the caller both render: one line at a time.
        self._render_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._handle: Any = None
        self._display = _notebook_display()
        self._tty = self._display is None and _isatty()
        self._frame = 0

    @property
    def active(self) -> bool:
        """Whether anything is shown."""
        return self._display is not None or self._tty

    def __enter__(self) -> "Progress":
        if self._display is not None:
            self._handle = self._display(
                {"text/plain": self._text()}, raw=True, display_id=True
            )
        if self.active:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def update(self, status: str) -> None:
        """Show ``status`` as the latest word (blank lines are ignored)."""
        status = status.strip()
        if status:
            with self._lock:
                self.status = status
            self._render()

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.active:
            return
        outcome = "failed" if kind is not None else "done"
        line = f"{self.title}: {outcome} in {time.monotonic() - self._started:.1f}s"
        with self._render_lock:
            if self._handle is not None:
                self._handle.update({"text/plain": line}, raw=True)
            elif self._tty:
                sys.stderr.write("\r\x1b[2K" + line + "\n")
                sys.stderr.flush()

    def _text(self) -> str:
        elapsed = time.monotonic() - self._started
        with self._lock:
            status = self.status
        text = f"{_FRAMES[self._frame % len(_FRAMES)]} {self.title} ({elapsed:.0f}s)"
        return f"{text}: {status}" if status else text

    def _render(self) -> None:
        with self._render_lock:
            if self._handle is not None:
                self._handle.update({"text/plain": self._text()}, raw=True)
            elif self._tty:
                sys.stderr.write("\r\x1b[2K" + self._text()[:200])
                sys.stderr.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.25 if self._tty else 1.0):
            self._frame += 1
            self._render()


def _isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
