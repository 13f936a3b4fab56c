"""Output URIs: the one place that says what kind of output a ``--output`` value names.

Pure functions only (no I/O): ``open_sink`` builds the sink from the result, the output
set picks its queue policy and its metric label from it.

=========================================  ================================================
``out.mp4`` ``.mov`` ``.mkv`` ``.webm``     file (``file:`` prefix optional; ``?`` options)
``.ts``
``window``, ``window:fullscreen``           OpenCV window
``virtualcam``, ``virtualcam:DEVICE``       virtual camera
``rtsp://`` ``rtsps://`` ``rtmp://``        publish to a media server
``rtmps://``
``preview``, ``preview:[HOST:]PORT``        MJPEG over HTTP for a browser
``ndi:NAME``                                an NDI source (``pip install 'streamdream[ndi]'``)
``null``                                    discard and count
=========================================  ================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..errors import SinkError
from ..log import redact_url

OutputKind = Literal["file", "window", "virtualcam", "preview", "publish", "ndi", "null"]
PUBLISH_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps")
LIVE_KINDS = frozenset({"window", "virtualcam", "preview", "publish", "ndi"})  # a viewer wants the latest frame


@dataclass(frozen=True)
class ParsedOutput:
    kind: OutputKind
    rest: str  # what follows ``kind:`` (window, virtualcam, preview) or the whole URI
    display: str  # redacted: safe to log

    @property
    def live(self) -> bool:
        """Someone watches it now: a stale frame is worth less than a dropped one."""
        return self.kind in LIVE_KINDS

    @property
    def label(self) -> str:
        """A short, secret-free name for metrics: no credentials, no stream key, no date."""
        if self.kind == "file":
            return os.path.basename(file_path_and_query(self.rest)[0])
        if self.kind == "publish":
            parts = urlsplit(self.rest)
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme.lower()}://{parts.hostname}{port}"
        return self.display if self.kind == "preview" else self.kind + (":" + self.rest if self.rest else "")


def file_path_and_query(uri: str) -> tuple[str, str]:
    """A file output's path and its ``?`` options: 'file:out.mp4?fragmented=1' -> ('out.mp4', 'fragmented=1')."""
    path = uri[5:] if uri.startswith("file:") else uri
    path, _, query = path.partition("?")
    return path, query


def parse_output_uri(uri: str) -> ParsedOutput:
    """Classify an output; raises SinkError for a scheme no sink speaks."""
    uri = uri.strip()
    display = redact_url(uri)
    scheme, sep, rest = uri.partition(":")
    kind = scheme.lower() if sep else uri.lower()
    if kind in ("null", "window", "virtualcam", "preview", "ndi"):
        return ParsedOutput(kind, rest, display)  # type: ignore[arg-type]
    if kind in PUBLISH_SCHEMES and rest.startswith("//"):
        return ParsedOutput("publish", uri, display)
    if "://" in uri and kind != "file":
        raise SinkError(
            f"output {display}: unsupported scheme {scheme!r}; "
            "use a file path, window, virtualcam, rtsp://, rtmp://, preview, ndi:NAME or null"
        )
    return ParsedOutput("file", uri, display)


__all__ = ["LIVE_KINDS", "ParsedOutput", "file_path_and_query", "parse_output_uri"]
