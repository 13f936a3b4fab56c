"""A video file: ``clip.mp4``, ``/path/clip.mkv``, ``file:///path/clip.mp4``: read once, or looped."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import av

from ..config import SourceConfig
from ..errors import SourceError
from ..images import MAX_PIXELS_8K, check_picture_size
from ..log import redact_url
from .av_source import AvSource
from .base import Source
from .kind import OpenContext, SourceKind
from .uri import ParsedUri, file_open_args

# what `run --input photo.jpg` should have been
STILL_HELP = (
    "to dream a picture: streamdream image {path} -o dream.png; for a zoom video: "
    "streamdream zoom {path} -o zoom.mp4 --frames 100; for a clip of the still: --input 'image:{path}?seconds=10'"
)


def parse(uri: str, display: str) -> ParsedUri | None:
    """Anything no other kind claimed is a path; ``file://`` URLs are unquoted."""
    if uri.lower().startswith("file://"):
        path = unquote(urlsplit(uri).path)
        return ParsedUri("file", path, redact_url(path))
    return ParsedUri("file", uri, display)


def probe_video_file(path: str, display: str, max_pixels: int = MAX_PIXELS_8K) -> None:
    """A file FFmpeg reads as video, not a still image, within ``max_pixels``: opened and closed, nothing decoded."""
    if not os.path.exists(path):
        raise SourceError(f"input file not found: {display}")
    if os.path.isdir(path):
        raise SourceError(f"input is a directory, not a video file: {display}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {display}: permission denied")
    if os.path.getsize(path) == 0:
        raise SourceError(f"cannot read input file {display}: the file is empty")
    try:
        with av.open(path, timeout=5.0) as container:
            still = container.format.name == "image2" or container.format.name.endswith("_pipe")
            kinds = sorted({s.type for s in container.streams})
            video = container.streams.video[0].codec_context if container.streams.video else None
            size = (video.width, video.height) if video is not None else (0, 0)
    except (av.FFmpegError, OSError) as exc:
        said = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourceError(f"cannot read input file {display}: FFmpeg says: {said} (not a video file FFmpeg can read, or damaged)") from None
    if still:
        raise SourceError(f"input {display} is a still image, not a video; {STILL_HELP.format(path=display)}")
    if "video" not in kinds:
        raise SourceError(f"{display} has no video stream (streams found: {', '.join(kinds) or 'none'})")
    check_picture_size(*size, f"{display}: the video", max_pixels, SourceError)


def check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    probe_video_file(parsed.target, parsed.display, config.max_pixels)


def open_file(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    return AvSource(file_open_args(parsed.target), kind="file", display=parsed.display, live=False, loop=config.loop,
                    max_pixels=config.max_pixels, workers=context.workers, audio=context.audio)  # fmt: skip


KIND = SourceKind(
    name="file", forms="clip.mp4, /path/clip.mkv, file:///path/clip.mp4", what="video file",
    parse=parse, open=open_file, check=check, local_paths=lambda parsed: (parsed.target,),
)  # fmt: skip

__all__ = ["KIND", "STILL_HELP", "probe_video_file"]
