"""Immutable values that cross threads: frames and source descriptions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


def freeze(image: np.ndarray) -> np.ndarray:
    """Mark an array read-only so no stage can write into a frame another owns."""
    image.flags.writeable = False
    return image


@dataclass(frozen=True)
class Frame:
    """One RGB video frame.

    ``image`` is HxWx3 uint8 RGB and read-only. ``pts`` is the presentation time in
    seconds (``None`` where a live stream gave none). ``index`` counts frames from
    the source, starting at 0. ``captured_at`` is ``time.monotonic()`` when the
    source produced the frame, for latency metrics.
    """

    image: np.ndarray
    index: int
    pts: float | None = None
    captured_at: float = field(default_factory=time.monotonic)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class IdleFrame(Frame):
    """A frame made up while the source was down (the type is the marker)."""


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows about itself once opened."""

    uri: str  # already redacted: safe to log
    width: int
    height: int
    fps: Fraction | None
    live: bool
    frame_count: int | None = None
    duration: float | None = None
    has_audio: bool = False
    kind: str = "file"  # file | webcam | network | demo | image


@dataclass(frozen=True)
class EndOfStream:
    """Marker a worker puts on its output queue in ``finally`` so no reader hangs."""

    reason: str = "end"
    error: BaseException | None = None
