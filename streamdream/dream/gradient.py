"""The conditioned gradient: what one dream step adds to the picture, as TensorFlow ops.

The raw gradient of a strided network is a pixel-level dot grid: its energy sits at periods
of 2-4 px, aligned with the network's stride. DeepDream's patterns worth seeing live at
8-64 px. Each step therefore

1. looks at the picture through a random small transformation, a sub-pixel shift plus a
   small scale and rotation, and maps the gradient back (transformation robustness, Olah et
   al. 2017, "Feature Visualization"): the stride grid lands somewhere else every step, so it
   averages out instead of building up;
2. smooths the gradient with a small binomial filter (``gradient_blur``);
3. evens out its energy over a Laplacian pyramid (``laplacian_levels``; the original DeepDream
   notebook's ``lap_normalize``), which lifts the broad shapes the raw gradient underweights;
4. moves it into a decorrelated colour space and back (``decorrelate``; lucid's
   ``color_correlation_svd_sqrt``), so colour follows natural pictures' statistics instead of
   rainbow noise;
5. scales it to unit standard deviation, so ``step_size`` means levels of 255 per step.

``benchmarks/look.py`` measures each measure alone and together; the defaults are what won.
All functions take and return HxWx3 float32 tensors of any size. ``conditioning.py`` has the
same stages in ``keras.ops`` for the other backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import tensorflow as tf

from .conditioning import COLOR_CORRELATION_SQRT, Conditioning, color_preconditioner

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


def apply_transform(image: tf.Tensor, transform: tf.Tensor, fill: str = "REFLECT") -> tf.Tensor:
    """``image`` resampled (bilinear) through ``transform``, an 8-vector as
    ``ImageProjectiveTransformV3`` takes it (output pixel -> input pixel).

    OpenCV's ``warpAffine`` does it on the host, 2.6x faster than TensorFlow's CPU kernel
    (6.3 against 16.5 ms at 640x480, within 0.02 levels of it): the two warps were most of
    the conditioning's cost per step. No gradient flows through it, none is needed.
    """

    def warp(picture: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        size = (picture.shape[1], picture.shape[0])
        return cv2.warpAffine(picture, matrix[:6].reshape(2, 3), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=_BORDERS[fill])

    out = tf.numpy_function(warp, [image, transform], tf.float32, stateful=False)
    return tf.ensure_shape(out, image.shape)


def transformed_gradient(image: tf.Tensor, gradient_of: Callable[[tf.Tensor], tf.Tensor], rng: tf.random.Generator,
                         jitter: tf.Tensor, cond: Conditioning) -> tf.Tensor:
    """``gradient_of`` evaluated on a randomly transformed view, mapped back onto ``image``."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    forward, inverse = random_transform(rng, height, width, jitter, cond)
    view = apply_transform(image, forward)
    return apply_transform(gradient_of(view), inverse, fill="CONSTANT")


# --- 2-5. conditioning ---------------------------------------------------------------------------


def binomial_blur(image: tf.Tensor, passes: int) -> tf.Tensor:
    """``passes`` rounds of the separable [1, 2, 1] / 4 filter (sigma ~0.7 px per pass, edges
    repeated). Written with slices: a convolution this small is far slower on CPU."""
    for _ in range(passes):
        p = tf.concat([image[:1], image, image[-1:]], 0)
        image = (p[:-2] + 2.0 * p[1:-1] + p[2:]) * 0.25
        p = tf.concat([image[:, :1], image, image[:, -1:]], 1)
        image = (p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]) * 0.25
    return image


def _half(image: tf.Tensor) -> tf.Tensor:
    # bilinear at exactly half size samples between pixels: a 2x2 box average, and cheap
    shape = tf.shape(image)
    return tf.image.resize(image, [(shape[1] + 1) // 2, (shape[2] + 1) // 2])


def _unit_rms(x: tf.Tensor) -> tf.Tensor:
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x)) + 1e-20)


def laplacian_normalize(image: tf.Tensor, levels: int, fine_gain: float = 1.0) -> tf.Tensor:
    """Every band of a ``levels``-level Laplacian pyramid scaled to unit RMS, merged again.

    The finest band (periods of 2-4 px) is weighted by ``fine_gain``: below 1 it smooths the
    gradient like a blur, at a fraction of a convolution's cost on CPU.
    """
    low, bands = image[None], []
    for _ in range(levels):
        small = _half(low)
        bands.append(low - tf.image.resize(small, tf.shape(low)[1:3]))
        low = small
    out = _unit_rms(low)
    for i in range(levels - 1, -1, -1):
        gain = fine_gain if i == 0 else 1.0
        out = tf.image.resize(out, tf.shape(bands[i])[1:3]) + gain * _unit_rms(bands[i])
    return out[0]


def decorrelate_colors(gradient: tf.Tensor, amount: float = 1.0) -> tf.Tensor:
    """The gradient of a picture parametrised in lucid's decorrelated colour space, in RGB."""
    return tf.tensordot(gradient, tf.constant(color_preconditioner(amount)), axes=[[2], [1]])


def condition(gradient: tf.Tensor, cond: Conditioning) -> tf.Tensor:
    """Steps 2-5 on a raw gradient."""
    if cond.blur > 0:
        gradient = binomial_blur(gradient, cond.blur)
    if cond.laplacian_levels > 0:
        gradient = laplacian_normalize(gradient, cond.laplacian_levels, cond.fine_gain)
    if cond.decorrelate > 0:
        gradient = decorrelate_colors(gradient, cond.decorrelate)
    return gradient / (tf.math.reduce_std(gradient) + 1e-8)


__all__ = [
    "COLOR_CORRELATION_SQRT",
    "Conditioning",
    "apply_transform",
    "condition",
    "color_preconditioner",
    "decorrelate_colors",
    "binomial_blur",
    "laplacian_normalize",
    "random_transform",
    "transformed_gradient",
]
