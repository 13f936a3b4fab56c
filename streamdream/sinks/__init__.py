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
``null``                                    discard and count (``NullSink``)
=========================================  ================================================

Building a sink only parses its URI; devices, files and connections open in ``open(info)``.
"""

from __future__ import annotations

from ..config import OutputConfig
from ..errors import SinkError
from ..log import redact_url
from .base import Sink
from .file import FileSink
from .null import NullSink
from .preview import PreviewSink
from .publish import PublishSink
from .virtualcam import VirtualCamSink
from .window import WindowSink

__all__ = [
    "FileSink",
    "NullSink",
    "PreviewSink",
    "PublishSink",
    "Sink",
    "VirtualCamSink",
    "WindowSink",
    "open_sink",
]


def open_sink(config: OutputConfig, audio_source: str | None = None) -> Sink:
    """The sink for ``config.uri``; ``audio_source`` is the real (unredacted) input whose
    audio file outputs carry, or None. Raises SinkError for a URI it cannot use."""
    uri = config.uri.strip()
    scheme, sep, rest = uri.partition(":")
    kind = scheme.lower() if sep else uri.lower()
    if kind == "null":
        return NullSink()
    if kind == "window":
        if rest not in ("", "fullscreen"):
            raise SinkError(f"output {uri!r}: use 'window' or 'window:fullscreen', got window:{rest}")
        return WindowSink(fullscreen=rest == "fullscreen")
    if kind == "virtualcam":
        return VirtualCamSink(device=rest or None)
    if kind == "preview":
        return PreviewSink.from_uri(uri)
    if kind in ("rtsp", "rtmp", "rtsps", "rtmps") and rest.startswith("//"):
        return PublishSink(config)
    if "://" in uri and kind != "file":
        raise SinkError(
            f"output {redact_url(uri)}: unsupported scheme {scheme!r}; "
            "use a file path, window, virtualcam, rtsp://, rtmp://, preview or null"
        )
    return FileSink(config, audio_source=audio_source)
