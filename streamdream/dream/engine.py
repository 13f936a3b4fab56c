"""The dream: gradient ascent on layer activations, over octaves, tiled and jittered.

Images are float32 RGB in [0, 255], HxWx3, numpy in and out. The gradient loop runs
inside one ``tf.function`` whose input signature leaves height and width open, so a
new frame size never retraces (``trace_count`` proves it in the tests).
"""

from __future__ import annotations

import functools
import logging
import cv2
import numpy as np
import tensorflow as tf

from ..config import DreamConfig
from ..images import read_image
from ..models.loader import DreamModel
from .objective import Objective

log = logging.getLogger(__name__)

MIN_OCTAVE_SIDE = 48  # below this the network sees too little to dream anything


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def octave_sizes(width: int, height: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes from the smallest octave up to (width, height), skipping ones too small to dream."""
    sizes = []
    for k in range(octaves - 1, -1, -1):
        w, h = round(width / scale**k), round(height / scale**k)
        if min(w, h) >= MIN_OCTAVE_SIDE or k == 0:
            sizes.append((w, h))
    return sizes


class DreamEngine:
    """Dreams pictures with one model and one set of dream settings."""

    def __init__(self, model: DreamModel, config: DreamConfig) -> None:
        self.model = model
        self.config = config
        self.trace_count = 0
        self.steps_total = 0
        self._rng = tf.random.Generator.from_seed(config.seed) if config.seed is not None else tf.random.Generator.from_non_deterministic_state()
        guide = read_image(config.guide) if config.guide else None
        self.objective = Objective(model, guide)
        self._blend_image = read_image(config.blend_with) if config.blend_with else None
        spec = tf.TensorSpec([None, None, 3], tf.float32)
        scalar_i, scalar_f = tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)
        signature = [spec, scalar_i, scalar_f, scalar_i, scalar_i]
        # two graphs: a frame that fits one tile skips the tile loops, which cost ~20% on CPU
        self._ascend_whole = tf.function(functools.partial(self._ascend_graph, tiled=False), input_signature=signature)
        self._ascend_tiled = tf.function(functools.partial(self._ascend_graph, tiled=True), input_signature=signature)

    # --- the compiled part -----------------------------------------------------------------

    def _whole_gradient(self, image: tf.Tensor, jitter: tf.Tensor) -> tf.Tensor:
        """Gradient of the objective w.r.t. ``image``, on a randomly rolled copy."""
        shift = self._rng.uniform([2], -jitter, jitter + 1, dtype=tf.int32)
        rolled = tf.roll(image, shift=shift, axis=[0, 1])
        with tf.GradientTape() as tape:
            tape.watch(rolled)
            loss = self.objective(rolled)
        return tf.roll(tape.gradient(loss, rolled), shift=-shift, axis=[0, 1])

    def _tiled_gradient(self, image: tf.Tensor, jitter: tf.Tensor, tile: tf.Tensor) -> tf.Tensor:
        """The same, computed tile by tile so a 4K frame needs only one tile's activations at a time."""
        shift = self._rng.uniform([2], -jitter, jitter + 1, dtype=tf.int32)
        rolled = tf.roll(image, shift=shift, axis=[0, 1])
        height, width = tf.shape(rolled)[0], tf.shape(rolled)[1]
        rows = (height + tile - 1) // tile
        cols = (width + tile - 1) // tile
        tile_h = (height + rows - 1) // rows
        tile_w = (width + cols - 1) // cols
        gradients = tf.zeros_like(rolled)
        for r in tf.range(rows):
            for c in tf.range(cols):
                y0, x0 = r * tile_h, c * tile_w
                y1, x1 = tf.minimum(y0 + tile_h, height), tf.minimum(x0 + tile_w, width)
                piece = rolled[y0:y1, x0:x1]
                with tf.GradientTape() as tape:
                    tape.watch(piece)
                    loss = self.objective(piece)
                grad = tape.gradient(loss, piece)
                gradients += tf.pad(grad, [[y0, height - y1], [x0, width - x1], [0, 0]])
        return tf.roll(gradients, shift=-shift, axis=[0, 1])

    def _ascend_graph(
        self, image: tf.Tensor, steps: tf.Tensor, step_size: tf.Tensor, jitter: tf.Tensor, tile: tf.Tensor, tiled: bool
    ) -> tf.Tensor:
        self.trace_count += 1  # runs only while tracing
        for _ in tf.range(steps):
            grad = self._tiled_gradient(image, jitter, tile) if tiled else self._whole_gradient(image, jitter)
            grad /= tf.math.reduce_std(grad) + 1e-8
            image = tf.clip_by_value(image + step_size * grad, 0.0, 255.0)
        return image

    # --- the numpy-facing API ----------------------------------------------------------------

    def ascend(self, image: np.ndarray, steps: int, step_size: float | None = None) -> np.ndarray:
        """``steps`` gradient steps at the image's own size (one octave)."""
        if steps <= 0:
            return image
        cfg = self.config
        fits = max(image.shape[0], image.shape[1]) <= cfg.tile_size
        out = (self._ascend_whole if fits else self._ascend_tiled)(
            tf.convert_to_tensor(image, tf.float32),
            tf.constant(steps, tf.int32),
            tf.constant(step_size if step_size is not None else cfg.step_size, tf.float32),
            tf.constant(cfg.jitter, tf.int32),
            tf.constant(cfg.tile_size, tf.int32),
        )
        self.steps_total += steps
        return out.numpy()

    def blend_source(self, image: np.ndarray) -> np.ndarray:
        """The picture actually dreamed: the input, or its blend with ``blend_with``."""
        if self._blend_image is None or self.config.blend <= 0:
            return image
        other = resize(self._blend_image, image.shape[1], image.shape[0])
        return (1.0 - self.config.blend) * image + self.config.blend * other

    def dream(
        self,
        image: np.ndarray,
        *,
        steps: int | None = None,
        octaves: int | None = None,
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """Dream ``image`` (float32 RGB 0-255) over octaves; returns the dreamed picture.

        Follows Google's original: each octave dreams its own downscaled copy of the
        source plus the upsampled detail found so far, so the source stays sharp.
        ``start`` (same size as ``image``) carries detail from elsewhere (a previous
        frame's dream): its difference to ``image`` seeds the detail.
        """
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        octaves = cfg.octaves if octaves is None else octaves
        if octaves < 1:
            raise ValueError(f"octaves must be >= 1, got {octaves}")
        image = np.asarray(image, np.float32)
        source = self.blend_source(image)
        height, width = source.shape[:2]
        sizes = octave_sizes(width, height, octaves, cfg.octave_scale)
        detail = None if start is None else np.asarray(start, np.float32) - image
        if detail is not None:
            detail = resize(detail, *sizes[0])
        else:
            detail = np.zeros((sizes[0][1], sizes[0][0], 3), np.float32)
        for w, h in sizes:
            base = resize(source, w, h)
            dreamed = self.ascend(np.clip(base + resize(detail, w, h), 0, 255), steps)
            detail = dreamed - base
        return np.clip(source + detail, 0, 255) if steps or start is not None else source

    def layer_activation(self, image: np.ndarray) -> float:
        """The objective's value on ``image``: what the dream maximises."""
        return float(self.objective(tf.convert_to_tensor(image, tf.float32)).numpy())


def zoom_frame(image: np.ndarray, zoom: float) -> np.ndarray:
    """Crop the centre by ``zoom`` and scale back up: one step of the dream-zoom animation."""
    h, w = image.shape[:2]
    cw, ch = w / zoom, h / zoom
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    matrix = np.float32([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def steps_for(config: DreamConfig, width: int, height: int) -> int:
    """Gradient steps a full dream of a (width x height) picture runs."""
    return config.steps * len(octave_sizes(width, height, config.octaves, config.octave_scale))


__all__ = ["DreamEngine", "resize", "octave_sizes", "zoom_frame", "steps_for"]
