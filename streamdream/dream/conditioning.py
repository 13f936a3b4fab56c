"""The conditioned gradient: what one dream step adds to the picture, in ``keras.ops`` for every backend.

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

Stages 2-5 are written once, here. Stage 1 has two forms: here, for JAX and PyTorch, the
transform's random numbers are drawn on the host with numpy (one ``(steps, 2, 8)`` array
per call, so ``reseed`` repeats them exactly) and applied with
``keras.ops.image.affine_transform`` (output pixel -> input pixel, bilinear, mirrored or
zero-filled edges); TensorFlow's step draws them inside its graph and warps on the host
with OpenCV (``gradient.py``). Resizes are bilinear without antialiasing; TensorFlow's graph
leaves the frame size open, so it passes its own ``resize`` (``tf.image.resize`` takes a
size that is a tensor, ``keras.ops.image.resize`` does not).
``benchmarks/look.py`` measures each measure alone and together; the defaults are what won.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

# lucid's square root of the ImageNet colour correlation (columns: decorrelated axes in RGB)
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
_COLOR_PRECONDITION = COLOR_CORRELATION_SQRT @ COLOR_CORRELATION_SQRT.T
_COLOR_PRECONDITION /= np.linalg.eigvalsh(_COLOR_PRECONDITION).max()


@dataclass(frozen=True)
class Conditioning:
    """The step's conditioning, fixed when the step is compiled."""

    scale: float = 0.05  # random scale within 1 +- scale
    rotate: float = 5.0  # random rotation within +- degrees
    blur: int = 0  # passes of a [1, 2, 1] binomial filter (0: off)
    laplacian_levels: int = 4  # pyramid levels normalised (0: off)
    fine_gain: float = 0.1  # weight of the finest band (periods of 2-4 px) after normalising
    decorrelate: float = 1.0  # 0: plain RGB, 1: fully decorrelated


def color_preconditioner(amount: float) -> np.ndarray:
    """3x3: identity at 0, lucid's decorrelated parametrisation at 1 (largest eigenvalue 1)."""
    return ((1.0 - amount) * np.eye(3) + amount * _COLOR_PRECONDITION).astype(np.float32)


# --- 1. transformation robustness, drawn on the host --------------------------------------------


def random_transforms(rng: np.random.Generator, steps: int, height: int, width: int, jitter: int,
                      cond: Conditioning) -> np.ndarray:
    """``steps`` random similarity transforms about the centre, each with its inverse:
    (steps, 2, 8) float32 as ``affine_transform`` takes them (output pixel -> input pixel)."""
    out = np.zeros((steps, 2, 8), np.float32)
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    for i, (p_scale, p_angle, p_x, p_y) in enumerate(rng.uniform(-1.0, 1.0, (steps, 4))):
        scale = 1.0 + cond.scale * p_scale
        angle = math.radians(cond.rotate) * p_angle
        # input = M (output - c) + c + shift, with M = rotation / scale
        forward = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) / scale
        offset = np.array([cx, cy]) - forward @ np.array([cx, cy]) + jitter * np.array([p_x, p_y])
        inverse = np.linalg.inv(forward)
        out[i, 0, :6] = [*forward[0], offset[0], *forward[1], offset[1]]
        back = -inverse @ offset
        out[i, 1, :6] = [*inverse[0], back[0], *inverse[1], back[1]]
    return out


def apply_transform(image: Any, transform: Any, fill: str = "reflect") -> Any:
    return ops.image.affine_transform(image[None], transform[None], interpolation="bilinear", fill_mode=fill,
                                      data_format="channels_last")[0]


def transformed_gradient(image: Any, transforms: Any, gradient_of: Callable[[Any], Any]) -> Any:
    """``gradient_of`` on the view ``transforms[0]`` shows, mapped back by ``transforms[1]``."""
    view = apply_transform(image, transforms[0])
    return apply_transform(gradient_of(view), transforms[1], fill="constant")


# --- 2-5. conditioning ---------------------------------------------------------------------------


def binomial_blur(image: Any, passes: int) -> Any:
    """``passes`` rounds of the separable [1, 2, 1] / 4 filter (sigma ~0.7 px per pass, edges
    repeated). Written with slices: a convolution this small is far slower on CPU."""
    for _ in range(passes):
        p = ops.concatenate([image[:1], image, image[-1:]], 0)
        image = (p[:-2] + 2.0 * p[1:-1] + p[2:]) * 0.25
        p = ops.concatenate([image[:, :1], image, image[:, -1:]], 1)
        image = (p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]) * 0.25
    return image


Resize = Callable[[Any, Any, Any], Any]  # (HxWx3 image, height, width) -> resized, bilinear


def keras_resize(image: Any, height: int, width: int) -> Any:
    """Bilinear, no antialiasing: ``tf.image.resize``'s default, on every backend (static sizes)."""
    return ops.image.resize(image, (height, width), interpolation="bilinear", antialias=False,
                            data_format="channels_last")


def _unit_rms(x: Any) -> Any:
    return x * ops.rsqrt(ops.mean(ops.square(x)) + 1e-20)


def laplacian_normalize(image: Any, levels: int, fine_gain: float = 1.0, resize: Resize = keras_resize) -> Any:
    """Every band of a ``levels``-level Laplacian pyramid scaled to unit RMS, merged again.

    The finest band (periods of 2-4 px) is weighted by ``fine_gain``: below 1 it smooths the
    gradient like a blur, at a fraction of a convolution's cost on CPU. Bilinear at exactly
    half size samples between pixels: a 2x2 box average, and cheap.
    """
    low, bands = image, []
    for _ in range(levels):
        height, width = ops.shape(low)[0], ops.shape(low)[1]
        small = resize(low, (height + 1) // 2, (width + 1) // 2)
        bands.append(low - resize(small, height, width))
        low = small
    out = _unit_rms(low)
    for i in range(levels - 1, -1, -1):
        gain = fine_gain if i == 0 else 1.0
        out = resize(out, ops.shape(bands[i])[0], ops.shape(bands[i])[1]) + gain * _unit_rms(bands[i])
    return out


def decorrelate_colors(gradient: Any, amount: float = 1.0, matrix: Any = None) -> Any:
    """The gradient of a picture parametrised in lucid's decorrelated colour space, in RGB.
    ``matrix``: ``color_preconditioner(amount).T`` already on the device (an eager backend
    would otherwise copy it there on every step)."""
    if matrix is None:
        matrix = ops.convert_to_tensor(color_preconditioner(amount).T)
    return ops.tensordot(gradient, matrix, axes=1)


def condition(gradient: Any, cond: Conditioning, resize: Resize = keras_resize, colors: Any = None) -> Any:
    """Stages 2-5 on a raw gradient (``colors``: see ``decorrelate_colors``' ``matrix``)."""
    if cond.blur > 0:
        gradient = binomial_blur(gradient, cond.blur)
    if cond.laplacian_levels > 0:
        gradient = laplacian_normalize(gradient, cond.laplacian_levels, cond.fine_gain, resize)
    if cond.decorrelate > 0:
        gradient = decorrelate_colors(gradient, cond.decorrelate, colors)
    return gradient / (ops.std(gradient) + 1e-8)


def tile_bounds(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of near-equal tiles no larger than ``tile``, as TensorFlow's step cuts them."""
    rows, cols = -(-height // tile), -(-width // tile)
    tile_h, tile_w = -(-height // rows), -(-width // cols)
    return [(r * tile_h, min((r + 1) * tile_h, height), c * tile_w, min((c + 1) * tile_w, width))
            for r in range(rows) for c in range(cols)]


__all__ = [
    "COLOR_CORRELATION_SQRT",
    "Conditioning",
    "Resize",
    "apply_transform",
    "binomial_blur",
    "color_preconditioner",
    "condition",
    "decorrelate_colors",
    "keras_resize",
    "laplacian_normalize",
    "random_transforms",
    "tile_bounds",
    "transformed_gradient",
]
