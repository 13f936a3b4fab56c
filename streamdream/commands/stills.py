"""Dreaming one picture at a chosen width: what `image` and `zoom` do with ``--width``.

Like the video path (``coherence/processors.py``): the picture is dreamed at ``width``
(aspect kept, never upscaled) and the dream's *detail* is upsampled and added to the
full-size picture, so a 4000 px photo dreams in the time of a 640 px one and stays sharp.
A ``blend_with`` picture is blended in at full size first (``sources/blend.py``'s
``still_blend``); only the detail comes from the small dream.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def dream_size(width: int, height: int, dream_width: int | None) -> tuple[int, int]:
    """``dream_width`` wide with the aspect kept; the picture's own size if that is smaller."""
    if dream_width is None or dream_width >= width:
        return width, height
    return dream_width, max(1, round(height * dream_width / width))


def dream_at_width(
    engine, picture: np.ndarray, width: int | None, on_step: Callable[[int, int], None] | None = None,
    blend: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """``picture`` (float32 RGB 0-255), blended by ``blend`` if given, dreamed at ``width``;
    returned at its own size."""
    if blend is not None:
        picture = blend(picture)
    height, full_width = picture.shape[:2]
    size = dream_size(full_width, height, width)
    if size == (full_width, height):
        return engine.dream(picture, on_step=on_step)
    small = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    detail = engine.dream(small, on_step=on_step) - small
    detail = cv2.resize(detail, (full_width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(picture + detail, 0, 255)


def total_steps(config, width: int, height: int) -> int:
    """Gradient steps ``dream_at_width`` runs for a ``width`` x ``height`` picture.

    ``config``: the engine's own (``engine.config``), whose octaves and steps the preset filled in.
    """
    from ..dream.engine import octave_sizes  # noqa: PLC0415 - loads Keras and its backend

    dream_width, dream_height = dream_size(width, height, config.width)
    return config.steps * len(octave_sizes(dream_width, dream_height, config.octaves, config.octave_scale))
