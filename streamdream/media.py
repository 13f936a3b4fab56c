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

# Every conversion of a decoded frame runs on the calling thread alone (swscale's ``threads=1``).
# PyAV (from 18.1.1) keeps one scaling context per thread, in a ``threading.local``, for the
# thread's whole life; one made with PyAV's default (slice threads, one per CPU) deadlocks any
# child that another thread forks with Python code to run before its exec (``subprocess`` with a
# ``preexec_fn``, as Ray starts its nodes): the fork's cleanup frees that context in the child and
# waits forever for slice threads the child does not have. With no slice threads there is nothing
# to wait for. (Two cores gain nothing from them on a frame of this size either: PyAV #2200.)
SCALE_THREADS = 1


def rgb_array(frame: av.VideoFrame, width: int | None = None, height: int | None = None) -> np.ndarray:
    """``frame`` as an RGB uint8 array, scaled to ``width`` x ``height`` when given (see SCALE_THREADS)."""
    return frame.to_ndarray(format="rgb24", width=width, height=height, threads=SCALE_THREADS)


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
            yield rgb_array(frame)


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


__all__ = ["SCALE_THREADS", "frame_count", "open_video", "read_frames", "rgb_array", "video_fps"]
