"""``image:PATH``: a still image, once; ``image:PATH?seconds=S[&fps=F]``: a clip of it S seconds long.

The one-frame form is what the zoom animation starts from; the clip form lets ``run``
dream a still into a video of a stated length (the flow mode keeps refining the dream).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from urllib.parse import parse_qsl

import numpy as np

from ..config import SourceConfig
from ..errors import SourceError
from ..frames import Frame, SourceInfo, freeze
from ..images import MAX_PIXELS_8K, check_picture, read_rgb8
from ..log import redact_url
from .base import OpenedInfo, Source
from .kind import OpenContext, SourceKind
from .uri import ParsedUri

DEFAULT_FPS = 25
CLIP_OPTIONS = ("seconds", "fps")


def read_image(path: str, display: str | None = None, max_pixels: int = MAX_PIXELS_8K) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; SourceError naming the path if impossible or too large."""
    return read_rgb8(path, display, error=SourceError, max_pixels=max_pixels)


def split_image_target(target: str) -> tuple[str, float | None, Fraction]:
    """'photo.jpg?seconds=10&fps=30' -> ('photo.jpg', 10.0, 30); no query -> (target, None, 25).

    A '?' followed by anything but these options is part of the file name.
    """
    path, sep, query = target.rpartition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if sep else {}
    if not sep or not options or set(options) - set(CLIP_OPTIONS):
        return target, None, Fraction(DEFAULT_FPS)
    try:
        seconds = float(options["seconds"]) if "seconds" in options else None
        fps = Fraction(options.get("fps", DEFAULT_FPS)).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        raise SourceError(f"image:{target}: seconds and fps must be numbers, e.g. image:photo.jpg?seconds=10&fps=25") from None
    if (seconds is not None and not 0 < seconds <= 86400) or not 0 < fps <= 240:
        raise SourceError(f"image:{target}: seconds must be in (0, 86400] and fps in (0, 240]")
    return path, seconds, fps


class ImageSource(OpenedInfo):
    """A still image as a Source: one frame, or ``seconds`` of frames at ``fps``."""

    def __init__(
        self, path: str, display: str | None = None, seconds: float | None = None, fps: Fraction = Fraction(DEFAULT_FPS),
        max_pixels: int = MAX_PIXELS_8K,
    ) -> None:  # fmt: skip
        self._path = path
        self._max_pixels = max_pixels
        self._display = display or path
        self._seconds = seconds
        self._fps = fps
        self._image: np.ndarray | None = None
        self._info: SourceInfo | None = None

    @property
    def frame_count(self) -> int:
        return 1 if self._seconds is None else max(1, round(self._seconds * self._fps))

    def open(self) -> SourceInfo:
        self._image = freeze(read_image(self._path, self._display, self._max_pixels))
        height, width = self._image.shape[:2]
        fps = None if self._seconds is None else self._fps
        self._info = SourceInfo(
            uri=self._display, width=width, height=height, fps=fps, live=False, frame_count=self.frame_count,
            duration=self._seconds, kind="image",
        )  # fmt: skip
        return self._info

    def frames(self) -> Iterator[Frame]:
        if self._image is None:
            raise SourceError(f"{self._display}: not open (call open() first)")
        for index in range(self.frame_count):
            yield Frame(image=self._image, index=index, pts=float(index / self._fps))

    def close(self) -> None:
        pass


def parse(uri: str, display: str) -> ParsedUri | None:
    return ParsedUri("image", uri[6:], display) if uri.lower().startswith("image:") else None


def check(parsed: ParsedUri, config: SourceConfig, command: str) -> None:
    path, seconds, _ = split_image_target(parsed.target)
    check_picture(path, "input", SourceError, max_pixels=config.max_pixels)
    if seconds is None:
        raise SourceError(
            f"input {parsed.display} is one picture, which would make a 1-frame video; give its length, "
            f"e.g. --input 'image:{path}?seconds=10' (fps=25 by default), or use `streamdream image` or `zoom`"
        )


def open_image(parsed: ParsedUri, config: SourceConfig, context: OpenContext) -> Source:
    path, seconds, fps = split_image_target(parsed.target)
    return ImageSource(path, redact_url(path), seconds=seconds, fps=fps, max_pixels=config.max_pixels)


KIND = SourceKind(
    name="image", forms="image:PHOTO?seconds=S[&fps=F]", what="still image", parse=parse, open=open_image, check=check,
    local_paths=lambda parsed: (split_image_target(parsed.target)[0],),
)  # fmt: skip
