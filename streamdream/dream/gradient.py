"""The random transform of a dream step on TensorFlow: drawn in the graph, warped on the device.

Stage 1 of ``conditioning.py``'s five (which says why each is there), in the form
TensorFlow's step needs: the transform's random numbers come from a ``tf.random.Generator``
inside the compiled step, and the warp is one of two (``engine.transform``):

* ``opencv``: on the host through OpenCV's ``warpAffine`` (2.6x faster than TensorFlow's
  CPU kernel), the CPU's choice;
* ``tensorflow``: TensorFlow's own ``ImageProjectiveTransformV3`` in the graph, so on a GPU
  the picture never leaves the device during a step (OpenCV would cost two host round
  trips per step).

``auto`` picks ``tensorflow`` when TensorFlow sees a GPU, else ``opencv``. Stages 2-5 are
``conditioning.condition``, given ``tf_resize`` because the graph leaves the frame size open.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import tensorflow as tf

from .conditioning import Conditioning

# --- 1. transformation robustness -------------------------------------------------------------


def random_transform(rng: tf.random.Generator, height: tf.Tensor, width: tf.Tensor, jitter: tf.Tensor,
                     cond: Conditioning) -> tuple[tf.Tensor, tf.Tensor]:
    """A random similarity transform about the centre and its inverse, as the 8-vectors
    ``ImageProjectiveTransformV3`` takes (output pixel -> input pixel)."""
    params = rng.uniform([4], -1.0, 1.0)
    scale = 1.0 + cond.scale * params[0]
    angle = math.radians(cond.rotate) * params[1]
    jit = tf.cast(jitter, tf.float32)
    shift_x, shift_y = jit * params[2], jit * params[3]
    cx, cy = (tf.cast(width, tf.float32) - 1.0) / 2.0, (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = M (output - c) + c + shift, with M = rotation / scale
    a0, a1, b0, b1 = cos, -sin, sin, cos
    a2 = cx - a0 * cx - a1 * cy + shift_x
    b2 = cy - b0 * cx - b1 * cy + shift_y
    forward = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])
    det = a0 * b1 - a1 * b0
    i0, i1, j0, j1 = b1 / det, -a1 / det, -b0 / det, a0 / det
    i2 = -(i0 * a2 + i1 * b2)
    j2 = -(j0 * a2 + j1 * b2)
    inverse = tf.stack([i0, i1, i2, j0, j1, j2, 0.0, 0.0])
    return forward, inverse


_BORDERS = {"REFLECT": cv2.BORDER_REFLECT, "CONSTANT": cv2.BORDER_CONSTANT}
WARPS = ("opencv", "tensorflow")


def choose_warp(setting: str) -> str:
    """``engine.transform`` resolved: ``auto`` is ``tensorflow`` where TensorFlow sees a GPU."""
    if setting in WARPS:
        return setting
    if setting != "auto":
        raise ValueError(f"engine.transform must be auto, opencv or tensorflow, got {setting!r}")
    return "tensorflow" if tf.config.list_logical_devices("GPU") else "opencv"


def apply_transform(image: tf.Tensor, transform: tf.Tensor, fill: str = "REFLECT", warp: str = "opencv") -> tf.Tensor:
    """``image`` resampled (bilinear) through ``transform``, an 8-vector as
    ``ImageProjectiveTransformV3`` takes it (output pixel -> input pixel).

    ``opencv``: ``warpAffine`` on the host, 2.6x faster than TensorFlow's CPU kernel (6.3
    against 16.5 ms at 640x480, within 0.02 levels of it): the two warps were most of the
    conditioning's cost per step on a CPU. ``tensorflow``: the kernel itself, on whatever
    device the graph runs on. Both mirror the edge pixel (``REFLECT``). No gradient flows
    through either, none is needed.
    """
    if warp == "tensorflow":
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
            fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode=fill)
        return tf.ensure_shape(out[0], image.shape)

    def warp_affine(picture: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        size = (picture.shape[1], picture.shape[0])
        return cv2.warpAffine(picture, matrix[:6].reshape(2, 3), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=_BORDERS[fill])

    out = tf.numpy_function(warp_affine, [image, transform], tf.float32, stateful=False)
    return tf.ensure_shape(out, image.shape)


def transformed_gradient(image: tf.Tensor, gradient_of: Callable[[tf.Tensor], tf.Tensor], rng: tf.random.Generator,
                         jitter: tf.Tensor, cond: Conditioning, warp: str = "opencv") -> tf.Tensor:
    """``gradient_of`` evaluated on a randomly transformed view, mapped back onto ``image``."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    forward, inverse = random_transform(rng, height, width, jitter, cond)
    view = apply_transform(image, forward, warp=warp)
    return apply_transform(gradient_of(view), inverse, fill="CONSTANT", warp=warp)


def tf_resize(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Bilinear, no antialiasing, to a size that may be a tensor (the graph's frame size is open)."""
    return tf.image.resize(image[None], tf.stack([height, width]))[0]


__all__ = ["WARPS", "apply_transform", "choose_warp", "random_transform", "tf_resize", "transformed_gradient"]
