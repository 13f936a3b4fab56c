"""What every output provides to the pipeline."""

from __future__ import annotations

from typing import Protocol

from ..frames import Frame, SourceInfo


class Sink(Protocol):
    """A video output. ``open(info)`` is called once with the source's description
    (size, fps, whether it is live, its URI for audio); ``write(frame)`` for every
    output frame in order (``frame.image`` is the dreamed RGB picture, ``frame.pts``
    the source timestamp); ``close()`` finalizes (an MP4 stays playable) and is
    safe to call twice or after a failed ``open``.
    """

    name: str

    def open(self, info: SourceInfo) -> None: ...

    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...
