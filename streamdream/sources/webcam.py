"""A camera: ``webcam``, ``webcam:N``, ``webcam:NAME``, ``/dev/videoN`` (v4l2, avfoundation or dshow)."""

from __future__ import annotations

import os
import re
import sys

from ..config import SourceConfig
from ..errors import SourceError
from .av_source import AvSource
from .base import Source
from .kind import OpenContext, SourceKind
from .uri import AvOpenArgs, ParsedUri, webcam_open_args

_DEVICE_PATH = re.compile(r"^/dev/(video\d+|v4l/.+)$")


def parse(uri: str, display: str) -> ParsedUri | None:
    lower = uri.lower()
    if lower == "webcam" or lower.startswith("webcam:"):
        return ParsedUri("webcam", uri[7:], display)
    if _DEVICE_PATH.match(uri):
        return ParsedUri("webcam", uri, display)
    return None


def open_args(parsed: ParsedUri, config: SourceConfig, platform: str) -> AvOpenArgs:
    return webcam_open_args(parsed.target, platform=platform, width=config.width, height=config.height, fps=config.fps,
                            input_format=config.input_format, timeout=(config.open_timeout, config.read_timeout))  # fmt: skip


def check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    """On Linux, ``run`` needs the device now; ``serve`` waits for a camera to come."""
    if command != "run" or not sys.platform.startswith("linux"):
        return
    device = open_args(parsed, config, "linux").file
    if not os.path.exists(device):
        raise SourceError(
            f"webcam {device} not found: no such device; check that a camera is connected "
            "and that the user may read it (group 'video')"
        )


def open_webcam(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    args = open_args(parsed, config, context.platform)
    return AvSource(args, kind="webcam", display=args.file, live=True, max_pixels=config.max_pixels, workers=context.workers,
                    audio=context.audio)  # fmt: skip


KIND = SourceKind(
    name="webcam", forms="webcam, webcam:N, webcam:NAME, /dev/videoN", what="camera",
    parse=parse, open=open_webcam, check=check, comes_back=True,
)  # fmt: skip

__all__ = ["KIND", "open_args"]
