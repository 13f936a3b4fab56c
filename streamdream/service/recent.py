"""The last warnings and errors the daemon logged, for ``/api/state`` and the control page."""

from __future__ import annotations

import collections
import logging
import threading
import time

from ..redact import redact

KEEP = 20  # entries
MAX_MESSAGE = 400  # characters of one entry


class RecentErrors(logging.Handler):
    """A logging handler that keeps the last ``KEEP`` records at WARNING and above, redacted."""

    def __init__(self, keep: int = KEEP) -> None:
        super().__init__(logging.WARNING)
        self._entries: collections.deque[dict[str, str]] = collections.deque(maxlen=keep)
        self._entries_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        message = " ".join(redact(message).split())  # redacted first: a quoted YAML line is found by its line
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        entry = {
            "time": time.strftime("%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "message": message,
        }
        with self._entries_lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, str]]:
        with self._entries_lock:
            return list(self._entries)


__all__ = ["RecentErrors"]
