"""A network stream: ``rtsp://``, ``rtsps://``, ``http(s)://``, ``rtmp(s)://``, ``udp://``, ``rtp://``, ``srt://``, ``tcp://``.

Nothing is checked before the model loads (a server is only known once connected; the
daemon waits for one that is down). Live unless it is http(s) with a known duration.
"""

from __future__ import annotations

import re

import av

from ..config import SourceConfig
from ..errors import SourceError
from .av_source import AvSource
from .base import Source
from .kind import OpenContext, SourceKind
from .uri import ALWAYS_LIVE_SCHEMES, NETWORK_SCHEMES, ParsedUri, network_open_args

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def parse(uri: str, display: str) -> ParsedUri | None:
    """``scheme://...`` with a scheme FFmpeg streams from; SourceError for another scheme (but ``file://``)."""
    match = _SCHEME.match(uri)
    if match is None or match.group(1).lower() == "file":
        return None
    scheme = match.group(1).lower()
    if scheme not in NETWORK_SCHEMES:
        known = ", ".join(sorted(s + "://" for s in NETWORK_SCHEMES))
        raise SourceError(f"unsupported input scheme {scheme}:// in {display}; use a file path or one of {known}")
    return ParsedUri("network", uri, display)


def open_network(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    args = network_open_args(parsed.target, transport=config.transport, open_timeout=config.open_timeout,
                             read_timeout=config.read_timeout, libavformat_major=av.library_versions["libavformat"][0])  # fmt: skip
    live = True if parsed.scheme in ALWAYS_LIVE_SCHEMES else None  # http(s): decided on open
    return AvSource(args, kind="network", display=parsed.display, live=live, max_pixels=config.max_pixels,
                    workers=context.workers, audio=context.audio)  # fmt: skip


KIND = SourceKind(
    name="network", forms="rtsp://, rtsps://, http(s)://, rtmp(s)://, udp://, rtp://, srt://, tcp://", what="stream",
    parse=parse, open=open_network, comes_back=True,
)  # fmt: skip

__all__ = ["KIND"]
