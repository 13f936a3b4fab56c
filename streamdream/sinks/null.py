"""An output that discards frames and counts them (benchmarks, dry runs)."""

from __future__ import annotations

import logging

from ..config import OutputConfig
from ..frames import Frame, SourceInfo
from .base import Sink
from .kind import OpenContext, SinkKind, prefixed
from .uri import ParsedOutput

log = logging.getLogger(__name__)


class NullSink:
    """Discards every frame; ``frames_written`` and ``last_pts`` tell what arrived."""

    def __init__(self) -> None:
        self.name = "null"
        self.frames_written = 0
        self.last_pts: float | None = None
        self.info: SourceInfo | None = None
        self.closed = False

    def open(self, info: SourceInfo) -> None:
        self.info = info

    def write(self, frame: Frame) -> None:
        self.frames_written += 1
        self.last_pts = frame.pts

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            log.debug("null output discarded %d frames", self.frames_written)


def open_null(parsed: ParsedOutput, config: OutputConfig, context: OpenContext) -> Sink:
    return NullSink()


KIND = SinkKind(name="null", forms="null", parse=prefixed("null", live=False), open=open_null)
