"""Inputs: one ``--input URI`` picks the source (see ``uri.py`` for the accepted forms)."""

from __future__ import annotations

import sys

import av

from ..config import SourceConfig
from ..log import redact_url
from ..runtime.workers import Workers
from .av_source import AvSource
from .base import Source
from .demo import DemoSource, demo_settings
from .image import ImageSource, split_image_target
from .uri import (
    ALWAYS_LIVE_SCHEMES,
    AvOpenArgs,
    ParsedUri,
    file_open_args,
    is_realtime_graph,
    lavfi_open_args,
    network_open_args,
    parse_uri,
    webcam_open_args,
)

__all__ = [
    "AvSource",
    "DemoSource",
    "ImageSource",
    "ParsedUri",
    "Source",
    "describe_uri",
    "open_source",
    "parse_uri",
]


def _libavformat_major() -> int:
    return av.library_versions["libavformat"][0]


def av_open_args(parsed: ParsedUri, config: SourceConfig, platform: str = sys.platform) -> AvOpenArgs:
    """The ``av.open`` arguments for a file, webcam, network or lavfi input."""
    timeouts = (config.open_timeout, config.read_timeout)
    if parsed.kind == "webcam":
        return webcam_open_args(
            parsed.target,
            platform=platform,
            width=config.width,
            height=config.height,
            fps=config.fps,
            input_format=config.input_format,
            timeout=timeouts,
        )
    if parsed.kind == "network":
        return network_open_args(
            parsed.target,
            transport=config.transport,
            open_timeout=config.open_timeout,
            read_timeout=config.read_timeout,
            libavformat_major=_libavformat_major(),
        )
    if parsed.kind == "lavfi":
        return lavfi_open_args(parsed.target, live=_flag(parsed.params.get("live", "0")))
    return file_open_args(parsed.target)


def _flag(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def open_source(config: SourceConfig, platform: str = sys.platform, workers: Workers | None = None, audio=None) -> Source:
    """Build the source ``config.uri`` names, closed; the caller calls ``open()``.

    ``workers`` starts the source's reader threads (see ``runtime/workers.py``); ``audio``
    (an ``AudioTap``) hears the input's audio track, for audio-reactive dreaming."""
    parsed = parse_uri(config.uri)
    if parsed.kind == "demo":
        return DemoSource(demo_settings(parsed.params, config.width, config.height, config.fps), parsed.display)
    if parsed.kind == "image":
        path, seconds, fps = split_image_target(parsed.target)
        return ImageSource(path, redact_url(path), seconds=seconds, fps=fps, max_pixels=config.max_pixels)
    args = av_open_args(parsed, config, platform)
    if parsed.kind == "webcam":
        return AvSource(args, kind="webcam", display=args.file, live=True, max_pixels=config.max_pixels, workers=workers,
                        audio=audio)
    if parsed.kind == "network":
        live = True if parsed.scheme in ALWAYS_LIVE_SCHEMES else None  # http(s): decided on open
        return AvSource(args, kind="network", display=parsed.display, live=live, max_pixels=config.max_pixels, workers=workers,
                        audio=audio)
    if parsed.kind == "lavfi":
        # a generated input like demo; lavfi cannot seek, so no loop
        return AvSource(args, kind="demo", display=parsed.display, live=is_realtime_graph(args.file),
                        max_pixels=config.max_pixels, workers=workers, audio=audio)
    return AvSource(args, kind="file", display=parsed.display, live=False, loop=config.loop, max_pixels=config.max_pixels,
                    workers=workers, audio=audio)


def describe_uri(uri: str) -> str:
    """A one-line, credential-free description of an input, e.g. for ``--help`` or logs."""
    parsed = parse_uri(uri)
    names = {
        "file": "video file",
        "webcam": "camera",
        "network": f"{parsed.scheme} stream",
        "demo": "built-in demo scene",
        "lavfi": "FFmpeg filter graph",
        "image": "still image",
    }
    return f"{names[parsed.kind]} {parsed.display}"
