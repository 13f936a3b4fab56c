"""Output URIs: the parsed form every kind of output shares.

Which kind a URI names is each kind's own ``parse`` (``sinks/__init__.py`` tries them in
order); ``open_sink`` builds the sink from the result, the output set picks its queue
policy and its metric label from it.

=========================================  ================================================
``out.mp4`` ``.mov`` ``.mkv`` ``.webm``     file (``file:`` prefix optional; ``?`` options)
``.ts``
``window``, ``window:fullscreen``           OpenCV window
``virtualcam``, ``virtualcam:DEVICE``       virtual camera
``rtsp://`` ``rtsps://`` ``rtmp://``        publish to a media server
``rtmps://``
``preview``, ``preview:[HOST:]PORT``        MJPEG over HTTP for a browser
``webrtc:``                                 WebRTC from the daemon's port (``serve``; aiortc)
``ndi:NAME``                                an NDI source (``pip install 'streamdream[ndi]'``)
``null``                                    discard and count
=========================================  ================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutputKind = Literal["file", "window", "virtualcam", "preview", "webrtc", "publish", "ndi", "null"]


@dataclass(frozen=True)
class ParsedOutput:
    """An output URI split by its kind's ``parse`` (``sinks/kind.py``)."""

    kind: OutputKind
    rest: str  # what follows ``kind:`` (window, virtualcam, preview, ndi) or the whole URI
    display: str  # redacted: safe to log
    live: bool = False  # someone watches it now: a stale frame is worth less than a dropped one
    label: str = ""  # a short, secret-free name for metrics: no credentials, no stream key, no date


def file_path_and_query(uri: str) -> tuple[str, str]:
    """A file output's path and its ``?`` options: 'file:out.mp4?fragmented=1' -> ('out.mp4', 'fragmented=1')."""
    path = uri[5:] if uri.startswith("file:") else uri
    path, _, query = path.partition("?")
    return path, query


__all__ = ["ParsedOutput", "file_path_and_query"]
