"""Scene cuts: where carrying the previous frame's dream would paint over a new shot.

A cut is a frame whose small grey thumbnail differs from the previous frame's by more
than a threshold (mean absolute difference, 0-255 levels). On the bundled clips,
motion stays under about 20 levels (bikes.mp4's fastest pan: 19) and cuts are 40 and
more, so the default threshold of 30 separates them.
"""

from __future__ import annotations

import cv2
import numpy as np

from .flow import to_gray

THUMB_WIDTH = 32  # small enough to ignore motion detail, big enough to see a new shot
DEFAULT_THRESHOLD = 30.0


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    gray = to_gray(image)
    h, w = gray.shape
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)


class SceneCutDetector:
    """Says whether each picture it is shown starts a new shot (the first one does not).

    ``threshold`` 0 disables detection. ``last_score`` is the latest difference, for logs.
    """

    def __init__(self, threshold: float) -> None:
        if threshold < 0:
            raise ValueError(f"scene cut threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self.last_score = 0.0
        self._previous: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> bool:
        thumb = thumbnail(image)
        previous, self._previous = self._previous, thumb
        if previous is None or previous.shape != thumb.shape:
            self.last_score = 0.0
            return False
        self.last_score = float(np.abs(thumb - previous).mean())
        return self.threshold > 0 and self.last_score > self.threshold

    def reset(self) -> None:
        self._previous = None


__all__ = ["DEFAULT_THRESHOLD", "SceneCutDetector", "thumbnail", "THUMB_WIDTH"]
