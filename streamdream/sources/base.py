"""What every source provides to the pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ..frames import Frame, SourceInfo


class Source(Protocol):
    """A video input. Created closed; ``open()`` connects and returns its description.

    ``frames()`` yields RGB frames until the input ends. A file that ends returns
    normally; a live input that stops (server gone, device unplugged, EOF on a
    network stream) raises ``SourceLostError``; an input that cannot be read raises
    ``SourceError`` naming the (redacted) URI and what FFmpeg said. ``close()`` may be
    called from another thread and must interrupt a blocked read promptly.
    """

    info: SourceInfo

    def open(self) -> SourceInfo: ...

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
