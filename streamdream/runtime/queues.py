"""Bounded frame queues with named overflow policies.

Files use ``WAIT`` (the producer blocks: nothing is lost); live sources use
``DROP_OLDEST`` (the consumer always gets the freshest frame). Every dropped item
is reported to ``on_drop(queue_name, reason)`` so it can be counted.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueuePolicy(enum.Enum):
    WAIT = "wait"  # block the producer until there is room
    DROP_OLDEST = "drop_oldest"  # discard the oldest item to make room
    DROP_NEWEST = "drop_newest"  # discard the item being put


class QueueClosed(Exception):
    """Raised by ``get`` on a closed, empty queue and by ``put`` on a closed queue."""


class FrameQueue(Generic[T]):
    """A bounded queue whose ``put`` follows a policy and whose waits take a timeout.

    ``close()`` wakes every waiter; a reader keeps getting queued items, then
    ``QueueClosed``. Markers (``force=True``) bypass the bound so an end marker can
    always be delivered.
    """

    def __init__(
        self,
        name: str,
        maxsize: int,
        policy: QueuePolicy,
        on_drop: Callable[[str, str], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"queue {name}: maxsize must be >= 1, got {maxsize}")
        self.name = name
        self.maxsize = maxsize
        self.policy = policy
        self._on_drop = on_drop or (lambda queue, reason: None)
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.high_water = 0
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, timeout: float | None = None, force: bool = False) -> bool:
        """Queue ``item``; return False if it was dropped or the wait timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        dropped_reason = None
        with self._cond:
            if self._closed:
                raise QueueClosed(self.name)
            if not force and len(self._items) >= self.maxsize:
                if self.policy is QueuePolicy.DROP_NEWEST:
                    dropped_reason = "queue_full"
                elif self.policy is QueuePolicy.DROP_OLDEST:
                    self._items.popleft()
                    dropped_reason = "stale"
                else:
                    while len(self._items) >= self.maxsize and not self._closed:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return False
                        self._cond.wait(remaining)
                    if self._closed:
                        raise QueueClosed(self.name)
            if dropped_reason != "queue_full":
                self._items.append(item)
                self.high_water = max(self.high_water, len(self._items))
                self._cond.notify_all()
        if dropped_reason:
            self.dropped += 1
            self._on_drop(self.name, dropped_reason)
        return dropped_reason != "queue_full"

    def get(self, timeout: float | None = None) -> T:
        """Next item; ``TimeoutError`` after ``timeout``; ``QueueClosed`` once closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise QueueClosed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(self.name)
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def drain(self) -> list[T]:
        """Remove and return everything queued now."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
