"""A dream's octaves on the device: the frame goes there once and its detail comes back once.

``DreamEngine.dream_detail`` walks the octaves of Google's original DeepDream: each octave
dreams its own downscaled copy of the source plus the detail found so far, upsampled. On
the host that is numpy and OpenCV between the steps' calls, one copy to the device and one
back per octave. Here the same walk is written in ``keras.ops`` on the step's own tensors
(``Step.ascend_tensor``), so on a GPU the source is copied there once, every resize, sum
and clip of every octave runs there, and only the finished detail comes back.

The one difference from the host walk: shrinking the source is Keras' antialiased bilinear
resize (a triangle filter) where the host uses OpenCV's area average; the look stays within
a seed's noise (``tests/test_device_step.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from .conditioning import keras_resize
from .step import Step


def shrink(image: Any, height: int, width: int) -> Any:
    """``image`` at height x width: itself at its own size, else antialiased bilinear."""
    if int(image.shape[0]) == height and int(image.shape[1]) == width:
        return image
    antialias = height < int(image.shape[0])
    return ops.image.resize(image, (height, width), interpolation="bilinear", antialias=antialias,
                            data_format="channels_last")


def dream_octaves(step: Step, source: np.ndarray, sizes: list[tuple[int, int]], steps: int, step_size: float,
                  jitter: int, tile: int) -> np.ndarray:
    """The detail a dream over ``sizes`` (width, height; smallest first, the last the
    source's) adds to ``source``, before ``level_detail``: HxWx3 float32 numpy."""
    frame = ops.convert_to_tensor(np.asarray(source, np.float32))  # to the device, once per frame
    detail = ops.zeros((sizes[0][1], sizes[0][0], 3), "float32")
    for width, height in sizes:
        base = shrink(frame, height, width)
        dreamed = ops.clip(base + keras_resize(detail, height, width), 0.0, 255.0)
        dreamed = step.ascend_tensor(dreamed, steps, step_size, jitter, tile)
        detail = dreamed - base
    return ops.convert_to_numpy(detail)  # back to the host, once per frame


__all__ = ["dream_octaves", "shrink"]
