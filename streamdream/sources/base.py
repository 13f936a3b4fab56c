"""What every source provides to the pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ..errors import SourceError
from ..frames import Frame, SourceInfo


class Source(Protocol):
    """A video input. Created closed; ``open()`` connects and returns its description.

    ``frames()`` yields RGB frames until the input ends. A file that ends returns
    normally; a live input that stops (server gone, device unplugged, EOF on a
    network stream) raises ``SourceLostError``; an input that cannot be read raises
    ``SourceError`` naming the (redacted) URI and what FFmpeg said. ``close()`` may be
    called from another thread and must interrupt a blocked read promptly.
    """

    @property
    def info(self) -> SourceInfo: ...

    def open(self) -> SourceInfo: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class OpenedInfo:
    """The ``info`` every source shares: set by ``open()``, an error before it."""

    _info: SourceInfo | None = None
    _display: str = "source"

    @property
    def info(self) -> SourceInfo:
        if self._info is None:
            raise SourceError(f"{self._display}: the source is not open; call open() first")
        return self._info
