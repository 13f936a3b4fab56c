"""Outputs: files, a window, a virtual camera, RTSP/RTMP publishing, a browser preview, null.

``open_sink(config, audio_source)`` builds the right ``Sink`` from ``config.uri``; the
pipeline then calls ``open(info)``, ``write(frame)`` per frame and ``close()``:

=========================================  ================================================
``out.mp4`` ``.mov`` ``.mkv`` ``.webm``     file (``FileSink``); ``?fragmented=1`` for crash-
``.ts`` (``file:`` prefix optional)         safe MP4, ``?preset=`` and ``?gop=`` too
``window``, ``window:fullscreen``           OpenCV window (``WindowSink``); Esc/q -> quit_event
``virtualcam``, ``virtualcam:DEVICE``       pyvirtualcam (``VirtualCamSink``)
``rtsp://HOST[:PORT]/PATH``                 publish to an RTSP server (``PublishSink``)
``rtmp://HOST[:PORT]/APP/KEY``              publish to an RTMP server (``PublishSink``)
``preview``, ``preview:[HOST:]PORT``        MJPEG over HTTP for a browser (``PreviewSink``)
``ndi:NAME``                                an NDI source (``NdiSink``; cyndilib, optional)
``null``                                    discard and count (``NullSink``)
=========================================  ================================================

Building a sink only parses its URI; devices, files and connections open in ``open(info)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import OutputConfig
from ..errors import SinkError
from .base import Sink
from .file import FileSink
from .ndi import NdiSink
from .null import NullSink
from .preview import PreviewSink
from .publish import PublishSink
from .uri import parse_output_uri
from .virtualcam import VirtualCamSink
from .window import WindowSink

if TYPE_CHECKING:
    from ..runtime.workers import Workers

__all__ = [
    "FileSink",
    "NullSink",
    "PreviewSink",
    "PublishSink",
    "Sink",
    "VirtualCamSink",
    "WindowSink",
    "open_sink",
    "parse_output_uri",
]


def open_sink(config: OutputConfig, audio_source: str | None = None, workers: Workers | None = None) -> Sink:
    """The sink for ``config.uri`` (kinds: ``uri.parse_output_uri``); ``audio_source`` is the real
    (unredacted) input whose audio file outputs carry, or None; ``workers`` starts the threads a
    sink needs (a publish watchdog). Raises SinkError for a URI it cannot use."""
    parsed = parse_output_uri(config.uri)
    if parsed.kind == "null":
        return NullSink()
    if parsed.kind == "window":
        if parsed.rest not in ("", "fullscreen"):
            raise SinkError(f"output {parsed.display!r}: use 'window' or 'window:fullscreen', got window:{parsed.rest}")
        return WindowSink(fullscreen=parsed.rest == "fullscreen")
    if parsed.kind == "virtualcam":
        return VirtualCamSink(device=parsed.rest or None)
    if parsed.kind == "preview":
        return PreviewSink.from_uri(config.uri.strip())
    if parsed.kind == "ndi":
        return NdiSink(parsed.rest)
    if parsed.kind == "publish":
        return PublishSink(config, workers=workers)
    return FileSink(config, audio_source=audio_source)
