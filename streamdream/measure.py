"""Numbers that say how a dream looks: grain, strength, and what it does to blacks and whites.

Numpy and OpenCV only (no TensorFlow), so tests, benchmarks and ``streamdream evaluate``
can use them without loading a model. Pictures are RGB, uint8 or float 0-255, and a
dream's *detail* is the dreamed picture minus the picture it was dreamed from.

* ``grain_share``: the share of the detail's luminance spectral energy at periods under
  4 px (|f| > 0.25 cycles/px, Hann window, mean removed). Pixel-level dot grids (the raw
  gradient of a strided network) score high; DeepDream patterns at 8-64 px score low.
* ``detail_strength``: mean |dreamed - source| over all pixels and channels, in levels.
* ``tone_shift``: the change of mean luminance over the darkest (or brightest) share of
  the source's pixels: how far the dream lifts blacks into grey (or burns whites).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

GRAIN_FREQUENCY = 0.25  # cycles per pixel: periods under 4 px
TONE_SHARE = 0.20  # the darkest / brightest 20% of the picture

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601, as OpenCV's RGB2GRAY


def channel_max(values: np.ndarray) -> np.ndarray:
    """HxW: the largest of each pixel's channels (HxWxC). Taken plane by plane: numpy's
    reduction over a short last axis costs ten times as much, a few ms a frame."""
    planes = np.moveaxis(values, -1, 0)
    out = planes[0].copy()
    for plane in planes[1:]:
        np.maximum(out, plane, out=out)
    return out


def channel_mean(values: np.ndarray) -> np.ndarray:
    """HxW: the mean of each pixel's channels (HxWxC), the same values as ``values.mean(axis=2)``
    (summed in the same order), taken plane by plane for the reason ``channel_max`` gives."""
    planes = np.moveaxis(values, -1, 0)
    total = planes[0] + planes[1] if len(planes) > 1 else planes[0].copy()
    for plane in planes[2:]:
        total += plane
    return total / len(planes)


def luminance(image: np.ndarray) -> np.ndarray:
    """HxW float32 luminance (0-255) of an RGB picture."""
    image = np.asarray(image, np.float32)
    return image if image.ndim == 2 else image @ _LUMA


def grain_share(source: np.ndarray, dreamed: np.ndarray, frequency: float = GRAIN_FREQUENCY) -> float:
    """Share (0-1) of the detail's luminance energy above ``frequency`` cycles/px."""
    detail = luminance(dreamed) - luminance(source)
    detail = detail - detail.mean()
    height, width = detail.shape
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    power = np.abs(np.fft.rfft2(detail * window)) ** 2
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    # rfft2 keeps half the spectrum: every column but the first and (even widths) the last
    # stands for itself and its mirror image
    weight = np.full(power.shape[1], 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    power = power * weight
    total = power.sum()
    if total <= 0:
        return 0.0
    return float(power[np.hypot(fx, fy) > frequency].sum() / total)


def detail_strength(source: np.ndarray, dreamed: np.ndarray) -> float:
    """Mean |dreamed - source| over all pixels and channels, in levels of 255."""
    return float(np.abs(np.asarray(dreamed, np.float32) - np.asarray(source, np.float32)).mean())


def tone_shift(source: np.ndarray, dreamed: np.ndarray, share: float = TONE_SHARE, dark: bool = True) -> float:
    """Mean luminance change (levels, signed) over the darkest (``dark``) or brightest
    ``share`` of the source's pixels."""
    before, after = luminance(source).ravel(), luminance(dreamed).ravel()
    count = max(1, int(round(share * before.size)))
    order = np.argpartition(before, count - 1)[:count] if dark else np.argpartition(-before, count - 1)[:count]
    return float(after[order].mean() - before[order].mean())


@dataclass(frozen=True)
class LookFigures:
    """The look of one dream, as the issue tracker and the benchmarks report it."""

    grain: float  # share of detail energy at periods under 4 px
    strength: float  # mean |detail|, levels
    blacks: float  # mean luminance change over the darkest 20%
    whites: float  # mean luminance change over the brightest 20%

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def look_figures(source: np.ndarray, dreamed: np.ndarray) -> LookFigures:
    return LookFigures(
        grain=grain_share(source, dreamed),
        strength=detail_strength(source, dreamed),
        blacks=tone_shift(source, dreamed, dark=True),
        whites=tone_shift(source, dreamed, dark=False),
    )


__all__ = ["GRAIN_FREQUENCY", "LookFigures", "TONE_SHARE", "channel_max", "channel_mean", "detail_strength", "grain_share", "look_figures", "luminance", "tone_shift"]
