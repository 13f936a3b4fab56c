"""Outputs: each kind of output is one module declaring a ``SinkKind``; ``SINK_KINDS`` is the registry.

``open_sink(config, workers, audio_source)`` builds the right ``Sink`` from ``config.uri``; the
pipeline then calls ``open(info)``, ``write(frame)`` per frame and ``close()``:

=========================================  ================================================
``out.mp4`` ``.mov`` ``.mkv`` ``.webm``     file (``FileSink``); ``?fragmented=1`` for crash-
``.ts`` (``file:`` prefix optional)         safe MP4, ``?preset=`` and ``?gop=`` too
``window``, ``window:fullscreen``           OpenCV window (``WindowSink``); Esc/q -> quit_event
``virtualcam``, ``virtualcam:DEVICE``       pyvirtualcam (``VirtualCamSink``)
``rtsp://HOST[:PORT]/PATH``                 publish to an RTSP server (``PublishSink``)
``rtmp://HOST[:PORT]/APP/KEY``              publish to an RTMP server (``PublishSink``)
``preview``, ``preview:[HOST:]PORT``        MJPEG over HTTP for a browser (``PreviewSink``)
``webrtc:``                                 WebRTC from ``serve``'s HTTP port (``WebRtcSink``)
``ndi:NAME``                                an NDI source (``NdiSink``; cyndilib, optional)
``null``                                    discard and count (``NullSink``)
=========================================  ================================================

Building a sink only parses its URI; devices, files and connections open in ``open(info)``.
A new kind of output is one module and one line in ``SINK_KINDS``.
"""

from __future__ import annotations

from ..config import OutputConfig
from ..errors import SinkError
from ..log import redact_url
from ..runtime.workers import NoThreads, Workers
from . import file, ndi, null, preview, publish, virtualcam, webrtc, window
from .base import Sink
from .file import FileSink
from .kind import CheckContext, OpenContext, SinkKind
from .ndi import NdiSink
from .null import NullSink
from .preview import PreviewSink
from .publish import PublishSink
from .uri import ParsedOutput
from .virtualcam import VirtualCamSink
from .webrtc import WebRtcSink
from .window import WindowSink

# tried in this order; a file path matches anything the others did not take, so it comes last
SINK_KINDS: tuple[SinkKind, ...] = (null.KIND, window.KIND, virtualcam.KIND, preview.KIND, webrtc.KIND, ndi.KIND, publish.KIND, file.KIND)
KINDS = {kind.name: kind for kind in SINK_KINDS}

__all__ = [
    "KINDS",
    "SINK_KINDS",
    "CheckContext",
    "FileSink",
    "NdiSink",
    "NullSink",
    "OpenContext",
    "ParsedOutput",
    "PreviewSink",
    "PublishSink",
    "Sink",
    "SinkKind",
    "VirtualCamSink",
    "WebRtcSink",
    "WindowSink",
    "check_sink",
    "exclusive_key",
    "open_sink",
    "parse_output_uri",
]


def parse_output_uri(uri: str) -> ParsedOutput:
    """Which kind of output ``uri`` names; SinkError for a scheme no sink speaks."""
    uri = uri.strip()
    display = redact_url(uri)
    for kind in SINK_KINDS:
        parsed = kind.parse(uri, display)
        if parsed is not None:
            return parsed
    raise SinkError(f"output {display}: no kind of output takes it")  # pragma: no cover - file takes any path


def open_sink(config: OutputConfig, workers: Workers, audio_source: str | None = None,
              parsed: ParsedOutput | None = None) -> Sink:  # fmt: skip
    """The sink for ``config.uri`` (built, not opened); ``audio_source`` is the real (unredacted)
    input whose audio file outputs carry, or None; ``workers`` starts the threads a sink needs
    (a publish watchdog). Raises SinkError for a URI it cannot use."""
    parsed = parsed or parse_output_uri(config.uri)
    return KINDS[parsed.kind].open(parsed, config, OpenContext(audio_source=audio_source, workers=workers))


def check_sink(config: OutputConfig, context: CheckContext, parsed: ParsedOutput | None = None) -> ParsedOutput:
    """The preflight of one output: built (a bad option or codec is refused), then its kind's own check."""
    parsed = parsed or parse_output_uri(config.uri)
    kind = KINDS[parsed.kind]
    kind.open(parsed, config, OpenContext(workers=NoThreads()))
    kind.check(parsed, config, context)
    return parsed


def exclusive_key(parsed: ParsedOutput) -> str | None:
    """What two outputs may not share (a file, the window, a preview port), or None."""
    return KINDS[parsed.kind].exclusive(parsed)
