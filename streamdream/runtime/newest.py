"""The newest of a sequence of values, awaited by many readers on one asyncio loop.

The browser preview's JPEG parts and the WebRTC output's packets are both made once and handed
to every client: each reader asks for the value after the sequence number it last had and
waits on one shared future (no task or copy per reader). Only the loop's thread touches it.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Newest(Generic[T]):
    """``publish(seq, value)``; ``await after(seq)`` returns the first newer ``(seq, value)``, None once stopped."""

    def __init__(self) -> None:
        self.latest: tuple[int, T] | None = None
        self.stopped = False
        self._next: asyncio.Future | None = None

    def publish(self, seq: int, value: T) -> None:
        self.latest = (seq, value)
        self._wake(self.latest)

    def stop(self) -> None:
        self.stopped = True
        self._wake(None)

    def restart(self) -> None:
        self.stopped, self.latest, self._next = False, None, None

    def _wake(self, value: tuple[int, T] | None) -> None:
        waiting, self._next = self._next, None
        if waiting is not None and not waiting.done():
            waiting.set_result(value)

    async def after(self, seq: int) -> tuple[int, T] | None:
        """The first value newer than ``seq``; None once stopped. A reader that leaves is cancelled here."""
        if self.latest is not None and self.latest[0] > seq:
            return self.latest
        if self.stopped:
            return None
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)


__all__ = ["Newest"]
