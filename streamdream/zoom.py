"""The classic dream-zoom animation: dream a still, zoom in slightly, dream again."""

from __future__ import annotations

import logging
import threading
from fractions import Fraction

from .app import build_engine, to_uint8
from .config import Config, OutputConfig
from .dream.engine import zoom_frame
from .frames import Frame, SourceInfo, freeze
from .images import read_image

log = logging.getLogger(__name__)


def dream_zoom(
    config: Config, image_path: str, output: str, *, frames: int, zoom: float, fps: int, stop: threading.Event
) -> int:
    """Write ``frames`` frames to ``output``; returns how many were written (fewer if stopped)."""
    from .sinks import open_sink

    engine = build_engine(config)
    picture = read_image(image_path)
    height, width = picture.shape[:2]
    info = SourceInfo(uri=image_path, width=width, height=height, fps=Fraction(fps), live=False, frame_count=frames, kind="image")
    sink = open_sink(OutputConfig(uri=output), audio_source=None)
    sink.open(info)
    written = 0
    try:
        for index in range(frames):
            if stop.is_set():
                break
            picture = engine.dream(picture)
            sink.write(Frame(image=freeze(to_uint8(picture)), index=index, pts=index / fps))
            written += 1
            picture = zoom_frame(picture, zoom)
    finally:
        sink.close()
    return written
