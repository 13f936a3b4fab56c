"""Keeping the picture's tonal range: the dream adds patterns, not a tone curve.

Left alone, gradient ascent lifts the dark parts of a picture (near black it can only go up,
and the network likes brighter texture there) and dims the bright ones, so a dark suit, dark
hair or a dark room turns into grey ring texture and the picture looks washed out. Two
corrections, both following the source's luminance:

1. *No tone shift*: the detail's mean luminance over every tonal band of the source (16
   bands of luminance) is taken out, so the dream cannot move the mean of the blacks, the
   mid-tones or the whites; the patterns (which average out within a band) stay.
2. *Fade at the ends*: the detail is weighted by a smooth mask, 0 at black (and white), 1
   from ``shadows`` levels above black (``highlights`` below white), a smoothstep between,
   so deep blacks get no grey texture and whites don't burn.

Numpy and OpenCV only. Pictures are float32 or uint8 RGB 0-255; the detail may be smaller
than the picture it is shown on (it is dreamed at a lower resolution): the mask is computed
at the detail's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..measure import channel_max

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
BANDS = 16  # tonal bands whose mean the detail may not shift


def _smoothstep(edge: float, x: np.ndarray) -> np.ndarray:
    t = np.clip(x / edge, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class ToneKeeper:
    """Weights a dream's detail so that blacks stay black and whites stay white."""

    shadows: float = 32.0  # levels above black where the detail reaches full strength (0: off)
    highlights: float = 24.0  # levels below white where it does (0: off)
    softness: float = 2.0  # Gaussian sigma (px at the detail's size) of the luminance it follows
    smooth: float = 0.8  # Gaussian sigma (px) over the finished detail (0: off)

    @property
    def enabled(self) -> bool:
        return self.shadows > 0 or self.highlights > 0 or self.smooth > 0

    def mask(self, source: np.ndarray) -> np.ndarray:
        """HxW float32 weights (0-1) for detail dreamed on ``source`` (HxWx3, 0-255)."""
        return self._weight(self._luma(source))

    def _luma(self, source: np.ndarray) -> np.ndarray:
        """The local luminance the corrections follow: smoothed, so that they do not trace
        single bright or dark pixels (stars on a night sky) into pixel-sized specks."""
        luma = np.asarray(source, np.float32) @ _LUMA
        return cv2.GaussianBlur(luma, (0, 0), self.softness) if self.softness > 0 else luma

    def _weight(self, luma: np.ndarray) -> np.ndarray:
        weight = np.ones_like(luma)
        if self.shadows > 0:
            weight *= _smoothstep(self.shadows, luma)
        if self.highlights > 0:
            weight *= _smoothstep(self.highlights, 255.0 - luma)
        return weight

    def tone_shift(self, detail: np.ndarray, luma: np.ndarray) -> np.ndarray:
        """HxW: the detail's mean luminance over the tonal band of each pixel (interpolated
        between band centres): what the dream would do to the picture's tone curve. Pixels
        without detail (newly revealed ones, say) neither count nor get a shift: they show
        the picture as it is."""
        dreamed = (channel_max(np.abs(detail)) > 0.05).astype(np.float32)
        position = np.clip(luma * (BANDS / 256.0) - 0.5, 0.0, BANDS - 1.0)
        index = position.astype(np.int32)
        counts = np.bincount(index.ravel(), weights=dreamed.ravel(), minlength=BANDS)
        sums = np.bincount(index.ravel(), weights=((detail @ _LUMA) * dreamed).ravel(), minlength=BANDS)
        curve = (sums / np.maximum(counts, 1e-3)).astype(np.float32)
        upper = np.minimum(index + 1, BANDS - 1)
        frac = position - index
        return (curve[index] * (1.0 - frac) + curve[upper] * frac) * dreamed

    def apply(self, detail: np.ndarray, source: np.ndarray) -> np.ndarray:
        """``detail`` without its tone shift, faded near black and white, following ``source``
        (resized to the detail's size if needed)."""
        if not self.enabled:
            return detail
        height, width = detail.shape[:2]
        if source.shape[:2] != (height, width):
            source = cv2.resize(np.asarray(source, np.float32), (width, height), interpolation=cv2.INTER_AREA)
        source = np.asarray(source, np.float32)
        shown = detail * self._weight(self._luma(source))[..., None]
        # a light blur: the weight follows the picture's luminance, so it traces its finest
        # structure (stars, hair) into the detail, which would show as grain
        if self.smooth > 0:
            shown = cv2.GaussianBlur(shown, (0, 0), self.smooth)
        # last, the tone shift per band of each pixel's own luminance: what stays is mean-free
        # within every band, the blacks' included
        return shown - self.tone_shift(shown, source @ _LUMA)[..., None]


NO_TONE = ToneKeeper(shadows=0.0, highlights=0.0, smooth=0.0)

__all__ = ["NO_TONE", "ToneKeeper"]
