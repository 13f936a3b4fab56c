"""The gradient loop on Keras' TensorFlow backend: one ``tf.function`` per tiling mode.

Its input signature leaves height and width open, so a new frame size never retraces
(``trace_count`` proves it in the tests). The switches of ``engine:`` that concern
TensorFlow alone live here: ``jit_compile`` (XLA for the network's gradient; the random
transform, ``ImageProjectiveTransformV3``, has no XLA kernel, so the loop around it stays
a graph), ``batch_tiles`` (a tiled frame's tiles as one batch) and ``transform`` (who
warps the random transform: OpenCV on the host, or TensorFlow's kernel on the device,
``gradient.choose_warp``). With TensorFlow's warp every stage of a step is in the graph,
so on a GPU the picture stays there for all the steps of an ``ascend`` and, through
``ascend_tensor``, for all the octaves of a dream.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from ..config import EngineConfig
from .conditioning import Conditioning, condition
from .gradient import choose_warp, tf_resize, transformed_gradient
from .objective import Objective, loss_scale


def _grid(height: tf.Tensor, width: tf.Tensor, tile: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Rows, columns and the tile size that splits height x width into near-equal tiles."""
    rows = (height + tile - 1) // tile
    cols = (width + tile - 1) // tile
    return rows, cols, (height + rows - 1) // rows, (width + cols - 1) // cols


class TFStep:
    """``steps`` conditioned gradient steps on one picture, on TensorFlow."""

    def __init__(self, objective: Objective, conditioning: Conditioning, engine: EngineConfig, seed: int | None) -> None:
        self.objective = objective
        self.conditioning = conditioning
        self.trace_count = 0
        self.warp = choose_warp(engine.transform)
        self.device_resident = self.warp == "tensorflow"  # OpenCV's warp is a host round trip per step
        self._loss_scale = loss_scale(engine.precision)
        self._rng = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.Generator.from_non_deterministic_state()
        gradient = self._objective_gradient
        # XLA compiles the network's forward and backward pass alone, once per tile shape
        self._gradient = tf.function(gradient, jit_compile=True) if engine.jit_compile else gradient
        tiled = self._batched_tile_gradient if engine.batch_tiles else self._tiled_objective_gradient
        spec = tf.TensorSpec([None, None, 3], tf.float32)
        scalar_i, scalar_f = tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)
        signature = [spec, scalar_i, scalar_f, scalar_i, scalar_i]
        # two graphs: a frame that fits one tile skips the tile loops, which cost ~20% on CPU
        self._ascend_whole = tf.function(functools.partial(self._ascend_graph, gradient_of=None), input_signature=signature)
        self._ascend_tiled = tf.function(functools.partial(self._ascend_graph, gradient_of=tiled), input_signature=signature)

    # --- the compiled part -----------------------------------------------------------------

    def _objective_gradient(self, view: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(view)
            loss = self._scaled(self.objective(view))
        return tape.gradient(loss, view)

    def _scaled(self, loss: tf.Tensor) -> tf.Tensor:
        """float16's loss scale (``objective.loss_scale``); no op at all otherwise."""
        return loss * self._loss_scale if self._loss_scale != 1.0 else loss

    def _tiled_objective_gradient(self, view: tf.Tensor, tile: tf.Tensor) -> tf.Tensor:
        """The same, tile by tile, so a 4K frame needs only one tile's activations at a time.
        The view is randomly shifted every step, so the tile borders never stay put: no seams."""
        height, width = tf.shape(view)[0], tf.shape(view)[1]
        rows, cols, tile_h, tile_w = _grid(height, width, tile)
        gradients = tf.zeros_like(view)
        for r in tf.range(rows):
            for c in tf.range(cols):
                y0, x0 = r * tile_h, c * tile_w
                y1, x1 = tf.minimum(y0 + tile_h, height), tf.minimum(x0 + tile_w, width)
                grad = self._gradient(view[y0:y1, x0:x1])
                gradients += tf.pad(grad, [[y0, height - y1], [x0, width - x1], [0, 0]])
        return gradients

    def _batched_tile_gradient(self, view: tf.Tensor, tile: tf.Tensor) -> tf.Tensor:
        """All tiles in one batch: the view is mirrored out to a whole number of equal
        tiles, cut into a (tiles, h, w, 3) batch, and the gradient cut back."""
        height, width = tf.shape(view)[0], tf.shape(view)[1]
        rows, cols, tile_h, tile_w = _grid(height, width, tile)
        padded = tf.pad(view, [[0, rows * tile_h - height], [0, cols * tile_w - width], [0, 0]], mode="SYMMETRIC")
        batch = tf.reshape(tf.transpose(tf.reshape(padded, [rows, tile_h, cols, tile_w, 3]), [0, 2, 1, 3, 4]),
                           [rows * cols, tile_h, tile_w, 3])
        with tf.GradientTape() as tape:
            tape.watch(batch)
            loss = self._scaled(self.objective.of_batch(batch))
        grad = tape.gradient(loss, batch)
        grad = tf.reshape(tf.transpose(tf.reshape(grad, [rows, cols, tile_h, tile_w, 3]), [0, 2, 1, 3, 4]),
                          [rows * tile_h, cols * tile_w, 3])
        return grad[:height, :width]

    def _ascend_graph(self, image: tf.Tensor, steps: tf.Tensor, step_size: tf.Tensor, jitter: tf.Tensor,
                      tile: tf.Tensor, gradient_of) -> tf.Tensor:
        self.trace_count += 1  # runs only while tracing
        gradient_of = functools.partial(gradient_of, tile=tile) if gradient_of else self._gradient
        for _ in tf.range(steps):
            grad = transformed_gradient(image, gradient_of, self._rng, jitter, self.conditioning, self.warp)
            image = tf.clip_by_value(image + step_size * condition(grad, self.conditioning, tf_resize), 0.0, 255.0)
        return image

    # --- numpy in, numpy out -----------------------------------------------------------------

    def ascend(self, image: np.ndarray, steps: int, step_size: float, jitter: int, tile: int) -> np.ndarray:
        return self.ascend_tensor(tf.convert_to_tensor(image, tf.float32), steps, step_size, jitter, tile).numpy()

    def ascend_tensor(self, image: Any, steps: int, step_size: float, jitter: int, tile: int) -> Any:
        fits = max(int(image.shape[0]), int(image.shape[1])) <= tile
        return (self._ascend_whole if fits else self._ascend_tiled)(
            image, tf.constant(steps, tf.int32), tf.constant(step_size, tf.float32),
            tf.constant(jitter, tf.int32), tf.constant(tile, tf.int32),
        )

    def reseed(self, seed: int) -> None:
        self._rng.reset_from_seed(seed)

    def objective_value(self, image: np.ndarray) -> float:
        return float(self.objective(tf.convert_to_tensor(image, tf.float32)).numpy())


__all__ = ["TFStep"]
