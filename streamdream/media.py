"""Opening a recorded video for reading, with PyAV's errors mapped to ``SourceError``.

The commands and tools that read a whole file (``evaluate``, the cluster's planner and
workers, the benchmarks) open it here; the live readers (``sources/av_source.py``) add
timeouts, reconnects and timestamps of their own on top of the same ``av.open``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import av.container
import numpy as np

from .errors import SourceError


def open_video(path: str | Path) -> av.container.InputContainer:
    """``path`` opened for reading; SourceError naming the file if PyAV cannot open it."""
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot open video {path}: {exc}") from None


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file, decoded with PyAV."""
    with open_video(path) as container:
        if not container.streams.video:
            raise SourceError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if max_frames is not None and n >= max_frames:
                return
            yield frame.to_ndarray(format="rgb24")


def frame_count(path: str | Path) -> int | None:
    """The frame count the video's header states, if any (for a progress bar)."""
    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].frames or None
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def video_fps(path: str | Path) -> float | None:
    """The video's average frame rate, if the file states one."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else None
    except (av.error.FFmpegError, OSError, IndexError):
        return None


__all__ = ["frame_count", "open_video", "read_frames", "video_fps"]
