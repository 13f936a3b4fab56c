"""An FFmpeg filter graph: ``lavfi:testsrc2=size=320x240:rate=30[?live=1]``, generated like the demo."""

from __future__ import annotations

import av

from ..config import SourceConfig
from ..errors import SourceError
from .av_source import AvSource
from .base import Source
from .kind import OpenContext, SourceKind
from .uri import ParsedUri, is_realtime_graph, lavfi_open_args, query_params


def parse(uri: str, display: str) -> ParsedUri | None:
    if not uri.lower().startswith("lavfi:"):
        return None
    graph, _, query = uri[6:].partition("?")
    if not graph:
        raise SourceError("lavfi input needs a filter graph, e.g. lavfi:testsrc2=size=320x240:rate=30")
    return ParsedUri("lavfi", graph, display, query_params(query))


def check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    """FFmpeg can build the graph (built and closed, nothing decoded)."""
    try:
        av.open(parsed.target, format="lavfi", timeout=5.0).close()
    except (av.FFmpegError, OSError) as exc:
        said = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourceError(f"input {parsed.display}: FFmpeg cannot build this filter graph: {said}") from None


def open_lavfi(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    args = lavfi_open_args(parsed.target, live=parsed.params.get("live", "0").lower() in ("1", "true", "yes"))
    # a generated input like demo; lavfi cannot seek, so no loop
    return AvSource(args, kind="demo", display=parsed.display, live=is_realtime_graph(args.file),
                    max_pixels=config.max_pixels, workers=context.workers, audio=context.audio)  # fmt: skip


KIND = SourceKind(
    name="lavfi", forms="lavfi:GRAPH[?live=1]", what="FFmpeg filter graph", parse=parse, open=open_lavfi, check=check,
)  # fmt: skip

__all__ = ["KIND"]
