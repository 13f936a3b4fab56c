"""What the outputs show while the source is down: the dream goes on, never a frozen frame.

When the input is lost, the last *output* (the last dream) becomes the idle picture, and
idle frames go through the same dream as real ones: in mode ``zoom`` the picture slowly
zooms in and out (``idle.zoom`` deep, one cycle per ``idle.period`` seconds), in mode
``still`` it stays put while the dream keeps working over it, and ``pattern`` (also the
fallback before any frame was seen) is a slowly drifting colour field to dream on.

The picture is taken once per outage and never fed back frame by frame: a live dream adds
its detail to every frame it is given, and feedback would pile that up into noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import cv2
import numpy as np

from ..config import IdleConfig
from ..frames import IdleFrame, freeze

__all__ = ["IdleAnimator", "IdleFrame"]


class IdleAnimator:
    """Makes idle pictures of ``width`` x ``height``; ``feedback()`` returns the latest output or None."""

    def __init__(self, config: IdleConfig, feedback: Callable[[], np.ndarray | None] | None = None, clock=time.monotonic) -> None:
        self.config = config
        self._feedback = feedback or (lambda: None)
        self._clock = clock
        self.width = self.height = 0
        self._base: np.ndarray | None = None
        self._last_input: np.ndarray | None = None
        self._new_outage = True
        self._t0 = clock()

    def configure(self, config: IdleConfig) -> None:
        self.config = config

    def start(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def remember_input(self, image: np.ndarray) -> None:
        """A real frame arrived: the next idle frame starts a new outage."""
        self._last_input = image
        self._new_outage = True

    def next_image(self) -> np.ndarray:
        if self._new_outage:
            self._new_outage = False
            self._t0 = self._clock()
            base = self._feedback()
            if base is None:
                base = self._last_input
            self._base = None if base is None else self._fit(base)
        t = self._clock() - self._t0
        if self.config.mode == "pattern" or self._base is None:
            return freeze(self.pattern(t))
        if self.config.mode == "zoom" and self.config.zoom > 1.0:
            # ease in and out: 1 -> zoom -> 1 over one period, no jump when the cycle restarts
            depth = 0.5 - 0.5 * math.cos(2.0 * math.pi * t / self.config.period)
            return freeze(self.zoom(self._base, 1.0 + (self.config.zoom - 1.0) * depth))
        return self._base

    @staticmethod
    def zoom(image: np.ndarray, factor: float) -> np.ndarray:
        """The centre 1/factor of ``image``, scaled back up (no TensorFlow import for this)."""
        h, w = image.shape[:2]
        matrix = np.array([[factor, 0, (1 - factor) * w / 2], [0, factor, (1 - factor) * h / 2]], np.float32)
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.shape[1] != self.width or image.shape[0] != self.height:
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return freeze(np.ascontiguousarray(image, dtype=np.uint8))

    def pattern(self, t: float) -> np.ndarray:
        """Soft colour waves drifting over ~ten seconds: something for the dream to grow on."""
        w, h = max(self.width, 16), max(self.height, 16)
        small_w, small_h = 16, max(2, round(16 * h / w))
        y, x = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
        channels = []
        for k, speed in enumerate((0.11, 0.07, 0.05)):
            wave = np.sin(x * (0.45 + 0.1 * k) + t * speed * 2 * math.pi + k) + np.cos(y * (0.5 - 0.08 * k) - t * speed * 4 + 2 * k)
            channels.append(110 + 60 * wave)
        small = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
