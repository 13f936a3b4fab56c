"""``image:PATH``: one still image, yielded once (the zoom animation starts from it)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import SourceError
from ..frames import Frame, SourceInfo, freeze
from ..images import MAX_PIXELS_8K, read_rgb8
from .base import OpenedInfo


def read_image(path: str, display: str | None = None, max_pixels: int = MAX_PIXELS_8K) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; SourceError naming the path if impossible or too large."""
    return read_rgb8(path, display, error=SourceError, max_pixels=max_pixels)


class ImageSource(OpenedInfo):
    """A still image as a one-frame Source."""

    def __init__(self, path: str, display: str | None = None, max_pixels: int = MAX_PIXELS_8K) -> None:
        self._path = path
        self._max_pixels = max_pixels
        self._display = display or path
        self._image: np.ndarray | None = None
        self._info: SourceInfo | None = None

    def open(self) -> SourceInfo:
        self._image = freeze(read_image(self._path, self._display, self._max_pixels))
        height, width = self._image.shape[:2]
        self._info = SourceInfo(
            uri=self._display, width=width, height=height, fps=None, live=False, frame_count=1, kind="image"
        )
        return self._info

    def frames(self) -> Iterator[Frame]:
        if self._image is None:
            raise SourceError(f"{self._display}: not open (call open() first)")
        yield Frame(image=self._image, index=0, pts=0.0)

    def close(self) -> None:
        pass
